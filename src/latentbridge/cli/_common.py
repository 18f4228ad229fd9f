"""What every command shares: errors as one red line with exit code 1, option parsing helpers."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from latentbridge.errors import LatentBridgeError

F = TypeVar("F", bound=Callable[..., Any])

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(message: str) -> None:
    """One red ``error:`` line on stderr (the message is data, never rich markup)."""
    _err.print(f"[red]error:[/red] {escape(message)}", markup=True)


def fail_on_error(fn: F) -> F:
    """Turn a LatentBridgeError (and ValueError/FileNotFoundError from user input) into a red line + exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (LatentBridgeError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            print_error(str(exc))
            raise typer.Exit(1) from exc

    return wrapper  # type: ignore[return-value]


def refuse_output(output: Path, inputs: list[Path] | tuple[Path, ...], *, overwrite: bool) -> None:
    """Refuse an output path that is one of the inputs (never, even with --overwrite), or exists without --overwrite.

    Raises:
        LatentBridgeError: naming the file and the fix.
    """
    for src in inputs:
        try:
            same = output.exists() and src.exists() and os.path.samefile(output, src)
        except OSError:
            same = False
        if same or output.resolve() == src.resolve():
            raise LatentBridgeError(
                f"-o {output} is the input file {src}: writing there would destroy the input; choose another -o"
            )
    if output.exists() and not overwrite:
        raise LatentBridgeError(f"{output} already exists; pass --overwrite to replace it, or choose another -o")


_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30}


GRID_HELP = (
    "For a diffusers token sequence [N, L, D] (FLUX.1/FLUX.2 output_type='latent'): its grid ROWSxCOLUMNS "
    "in 16-px tokens, e.g. 64x64 for a 1024×1024 image."
)


def parse_bytes(text: str) -> int:
    """'1.5GB' / '800MB' / '1234' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?[bB]?)\s*", text)
    if not m:
        raise typer.BadParameter(f"{text!r} is not a memory size: expected e.g. 1.5GB, 800MB or 1234")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def vae_spec(spec: str) -> str | list[str]:
    """What a ``--vae`` value names: one file, folder or zoo name, or ENCODER,DECODER files joined by a comma.

    A value naming an existing file or folder is kept whole, commas and all ("vae (v1, fp16).safetensors").
    """
    if spec.strip() and Path(spec.strip()).expanduser().exists():
        return spec.strip()
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    if not parts:
        raise typer.BadParameter(f"--vae {spec!r} names no file: expected FILE, a zoo name, or ENCODER,DECODER")
    return parts[0] if len(parts) == 1 else parts


HOME_ENV = "LATENTBRIDGE_HOME"  # the library's home; read here, by the CLI only
DEFAULT_HOME = "~/.latentbridge"
HOME_HELP = f"The model library's folder (default: ${HOME_ENV}, else {DEFAULT_HOME})."


def library_home(home: str | os.PathLike[str] | None = None) -> Path:
    """``--home``, else ``$LATENTBRIDGE_HOME``, else ``~/.latentbridge``."""
    return Path(home or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def auto_vae(spec: str | None, latent: str | os.PathLike[str], *, option: str = "--vae") -> str | None:
    """``--vae auto``: the VAE the library resolves from the latent's provenance (its reasons on stderr); any other
    value is returned unchanged. The one place the CLI turns "auto" into a file."""
    if spec is None or spec.strip().lower() != "auto" or Path(spec).exists():
        return spec
    from latentbridge.library import Library, resolve_vae

    if Path(latent).is_dir():
        raise LatentBridgeError(
            f"{option} auto reads one latent file's provenance, and {latent} is a folder: pass {option} FILE"
        )
    resolved = resolve_vae(latent, Library(library_home()))
    for line in resolved.reasons:
        _err.print(f"[cyan]{option} auto:[/cyan] {escape(line)}", markup=True)
    return resolved.spec
