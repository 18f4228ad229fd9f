"""What every command shares: errors as one red line with exit code 1, loading what ``--vae`` names, the
execution options that build one :class:`latentbridge.Run` (and the progress bar drawn from its callback),
warnings as yellow lines, output checks.

Shells import only the public face (``latentbridge`` and the ``__all__`` of its public modules); the library
never draws, prints or reads the environment — this module does that for the command line.
"""

from __future__ import annotations

import functools
import inspect
import os
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, overload

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as RichProgress

from latentbridge import LatentBridgeError, LatentBridgeWarning

F = TypeVar("F", bound=Callable[..., Any])

_err = Console(stderr=True, highlight=False, soft_wrap=True)

VAE_HELP = "VAE: a weight file, a diffusers folder, a zoo name (zoo-a), or ENCODER,DECODER files joined by a comma."
AUTO_VAE_HELP = (
    "VAE: a weight file, a diffusers folder, a zoo name (zoo-a), ENCODER,DECODER files joined by a comma, or auto "
    "(the file the latent's provenance names, from `latentbridge library`)."
)
FITS_HOME_HELP = "Per-user latentbridge folder; fitted factors live in HOME/previews (default ~/.cache/latentbridge)."
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp")


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


@overload
def auto_vae(spec: str, latent: str | os.PathLike[str], *, option: str = ...) -> str: ...
@overload
def auto_vae(spec: None, latent: str | os.PathLike[str], *, option: str = ...) -> None: ...
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


def load_vae_option(
    spec: str,
    *,
    part: str,
    format: str | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
    option: str = "--vae",
) -> Any:
    """Load the VAE a ``--vae`` (``--from-vae``, ``--to-vae`` …) value names: the one loader of every command.

    ``part``: the half the command needs ("encoder", "decoder", "both" or "available"); a file holding only the
    other half is refused, naming ``option`` and what to pass instead. Weights load in ``dtype`` (fp32 by
    default: the codec runs reduced precision on a cast copy).
    """
    from latentbridge import MissingPartError, load_vae  # loading weights pulls in diffusers: only when needed

    try:
        return load_vae(vae_spec(spec), format=format, device=device, dtype=dtype, part=part)
    except MissingPartError as exc:
        raise MissingPartError(
            f"{option} {spec} holds only the {' and '.join(exc.held)} of that VAE, but this command needs its "
            f"{' and '.join(exc.lacking)}: pass {option} ENCODER_FILE,DECODER_FILE (both halves, comma-separated)",
            held=exc.held,
            lacking=exc.lacking,
        ) from exc


def load_reference(path: Path) -> Any:
    """A reference image file (``--reference``) as [1, 3, H, W] in [0, 1]."""
    from latentbridge import load_images, to_unit

    return to_unit(load_images([path]).tensor)


@contextmanager
def warnings_as_lines() -> Iterator[None]:
    """Show latentbridge's warnings (automatic tiling, fp32 redo, dropped alpha) as yellow lines on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LatentBridgeWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, LatentBridgeWarning):
                    _err.print(f"[yellow]warning:[/yellow] {w.message}", markup=True)
                else:
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def refuse_existing(paths: list[Path], overwrite: bool, *, folders_only: bool = False) -> None:
    """Fail before any work when an output exists and --overwrite was not given, or cannot be written at all
    (``folders_only``: only the folders, when the file names are not known yet)."""
    existing = [] if folders_only else [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise LatentBridgeError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace, or choose -o")
    for folder in dict.fromkeys(p.parent for p in paths):
        if not folder.is_dir():
            raise FileNotFoundError(f"output folder {folder} does not exist: create it first, or choose another -o")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write into folder {folder} (permission denied): choose another -o")


# --- the execution options: one group, one Run -----------------------------------------------------------


class ProgressBar:
    """A progress callback for :class:`latentbridge.Run` that draws a rich bar on stderr (only on a terminal).

    Each task (a decode, a refinement …) gets its own transient bar: description, bar, done/total, elapsed and
    remaining time — the bar the codec drew itself before the library learned to report through callbacks.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.bar: RichProgress | None = None
        self.task_name = ""
        self.task_id: Any = None

    def __call__(self, event: Any) -> None:
        if not self.console.is_terminal:
            return
        if self.bar is None or event.task != self.task_name:
            self.close()
            self.bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=True,
            )
            self.bar.start()
            self.task_name = event.task
            self.task_id = self.bar.add_task(event.task, total=event.total or None)
        self.bar.update(self.task_id, completed=event.done, total=event.total or None)
        if event.total and event.done >= event.total:
            self.close()

    def close(self) -> None:
        """Stop the bar on screen (it is transient: it disappears)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


_RUN_OPTIONS: dict[str, tuple[type, Any, str]] = {
    "device": (str, "cpu", "Where the networks run: cpu, cuda, cuda:1, mps …"),
    "dtype": (str, "fp32", "fp32 (exact), bf16 or fp16; NaN/inf samples are redone in fp32."),
    "batch_size": (int, 1, "Samples (or tiles) per network call."),
    "tile": (int, None, "Run the networks in overlapping tiles of this many pixels."),
    "overlap": (int, None, "Tile overlap in pixels (default: a quarter of the tile)."),
    "tile_passes": (int, 2, "Passes over the tiles for GroupNorm VAEs: 1 = per-tile statistics (fastest)."),
    "max_memory": (str, "auto", "Tile when the estimated peak passes this (2GB, auto = 75 % of free memory, none)."),
    "channels_last": (bool, False, "Channels-last convolutions (fast with bf16 on CPU)."),
}


def build_run(
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    batch_size: int = 1,
    tile: int | None = None,
    overlap: int | None = None,
    tile_passes: int = 2,
    max_memory: str = "none",
    channels_last: bool = False,
    progress: Callable[[Any], None] | None = None,
) -> Any:
    """The :class:`latentbridge.Run` the execution options describe (``--max-memory`` auto / none / 2GB)."""
    from latentbridge import Run, Tiling

    text = max_memory.strip().lower()
    budget: int | str | None = None if text == "none" else "auto" if text == "auto" else parse_bytes(max_memory)
    return Run(
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        tiling=Tiling(tile=tile, overlap=overlap, passes=tile_passes),
        max_memory=budget,  # type: ignore[arg-type]
        channels_last=channels_last,
        progress=progress,
    )


def _resolved_annotations(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s annotations as objects, ``run`` (a type-checking-only name) and ``return`` left out."""
    out = {}
    for name, value in inspect.get_annotations(fn).items():
        if name not in ("run", "return"):
            out[name] = eval(value, fn.__globals__) if isinstance(value, str) else value
    return out


def run_options(*names: str, max_memory: str = "auto", **help_overrides: str) -> Callable[[F], F]:
    """Add the shared execution options (``names``, default all of them) to a command; it gets ``run: Run``.

    The command declares a ``run`` parameter and no execution options of its own; the decorator adds the
    ``--device``, ``--dtype``, ``--batch-size``, ``--tile``, ``--overlap``, ``--tile-passes``, ``--max-memory``
    and ``--channels-last`` options (the ones named), builds one Run from them with a :class:`ProgressBar`, and
    closes the bar when the command ends. ``max_memory``: the ``--max-memory`` default ("auto" or "none").
    """
    chosen = names or tuple(_RUN_OPTIONS)
    unknown = set(chosen) - set(_RUN_OPTIONS)
    if unknown:
        raise ValueError(f"unknown run options {sorted(unknown)}: expected some of {sorted(_RUN_OPTIONS)}")

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn)
        hints = _resolved_annotations(fn)
        params = [p for name, p in sig.parameters.items() if name != "run"]
        added = []
        for name in chosen:
            kind, default, text = _RUN_OPTIONS[name]
            if name == "max_memory":
                default = max_memory
            flag = "--" + name.replace("_", "-")
            option = typer.Option(default, flag, help=help_overrides.get(name, text))
            added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind))
            hints[name] = kind

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            options = {name: kwargs.pop(name) for name in chosen}
            if "max_memory" not in options:
                options["max_memory"] = "none"
            bar = ProgressBar()
            try:
                kwargs["run"] = build_run(**options, progress=bar)
                return fn(*args, **kwargs)
            finally:
                bar.close()

        wrapper.__signature__ = sig.replace(parameters=[*params, *added])  # type: ignore[attr-defined]
        wrapper.__annotations__ = hints
        return wrapper  # type: ignore[return-value]

    return decorate
