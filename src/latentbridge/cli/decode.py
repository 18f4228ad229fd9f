"""`latentbridge decode LATENT --vae VAE -o out.png`: a latent file to PNG images, with the right VAE and space.

One PNG per batch item (``out.png``, or ``out-0.png``, ``out-1.png``, … for a batch); a video latent gives one
animated PNG per item with every frame (APNG: lossless, and the provenance chunk survives). Each PNG carries
a ``latentbridge`` text chunk with the latent's provenance and how it was decoded.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from latentbridge.cli._app import app
from latentbridge.cli._common import GRID_HELP, auto_vae, fail_on_error, parse_bytes, vae_spec
from latentbridge.errors import LatentBridgeError, LatentBridgeWarning

_err = Console(stderr=True, highlight=False, soft_wrap=True)

VAE_HELP = (
    "VAE: a weight file, a diffusers folder, a zoo name (zoo-a), ENCODER,DECODER files joined by a comma, or auto "
    "(the file the latent's provenance names, from `latentbridge library`)."
)


def load_vae_spec(spec: str, vae_format: str | None, device: str, part: str) -> Any:
    """Load what a ``--vae`` value names (fp32 weights; the codec casts for reduced precision)."""
    from latentbridge.weights import load_vae  # local: loading weights pulls in diffusers

    return load_vae(vae_spec(spec), format=vae_format, device=device, part=part)


def memory_budget(text: str, device: str) -> int | None:
    """``--max-memory``: "auto" (75 % of the memory available now), "none", or a size such as 2GB."""
    if text.strip().lower() == "none":
        return None
    if text.strip().lower() != "auto":
        return parse_bytes(text)
    if device.startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free * 0.75)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(int(info["MemAvailable"].split()[0]) * 1024 * 0.75)
    except (OSError, KeyError, ValueError):
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
        return int(pages * os.sysconf("SC_PAGE_SIZE") * 0.75) if pages > 0 else None


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


def preflight_check(latent: Any, model: Any, force: bool) -> None:
    """Run `latentbridge check` first: its warnings as yellow lines; an error refuses (one line) unless ``force``."""
    from latentbridge.check import check

    report = check(latent, model)
    for f in report.findings:
        if f.severity == "warn" or (f.severity == "error" and force):
            fix = f" Fix: {f.fix}" if f.fix else ""
            _err.print(f"[yellow]warning:[/yellow] check {escape(f.code)}: {escape(f.message)}.{escape(fix)}")
    if report.verdict == "error" and not force:
        found = "; ".join(f"{f.code}: {f.message} (fix: {f.fix})" for f in report.findings if f.severity == "error")
        raise LatentBridgeError(
            f"refusing to decode, `latentbridge check` found {found}. Pass --force to decode anyway"
        )


@app.command("decode")
@fail_on_error
def decode_command(
    latent_file: Path = typer.Argument(
        ..., help="Latent file (.latent, safetensors, pt, npy/npz, kohya cache).", show_default=False
    ),
    vae: str = typer.Option(..., "--vae", help=VAE_HELP, show_default=False),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output .png (a batch writes out-0.png, out-1.png, …).", show_default=False
    ),
    format: str = typer.Option(None, "--format", help="The latent's format, when the file does not record it."),
    layout: str = typer.Option(None, "--layout", help="Dimension letters of the stored tensor, e.g. NTCHW, NHWC."),
    space: str = typer.Option(None, "--space", help="raw|model: the latent's space, when the file does not record it."),
    key: str = typer.Option(None, "--key", help="Which array of the file holds the latent."),
    grid: str = typer.Option(None, "--grid", help=GRID_HELP),
    vae_format: str = typer.Option(None, "--vae-format", help="The format the VAE serves, when its file cannot tell."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps …"),
    dtype: str = typer.Option(
        "fp32", "--dtype", help="fp32 (exact), bf16 or fp16; NaN/inf samples are redone in fp32."
    ),
    channels_last: bool = typer.Option(
        False, "--channels-last", help="Channels-last convolutions (fast with bf16 on CPU)."
    ),
    tile: int = typer.Option(None, "--tile", help="Decode in overlapping tiles of this many pixels."),
    overlap: int = typer.Option(None, "--overlap", help="Tile overlap in pixels (default: a quarter of the tile)."),
    tile_passes: int = typer.Option(
        2, "--tile-passes", help="Passes over the tiles for GroupNorm VAEs: 1 = per-tile statistics (fastest)."
    ),
    max_memory: str = typer.Option(
        "auto", "--max-memory", help="Tile when the estimated peak passes this (2GB, auto = 75 % of free memory, none)."
    ),
    batch_size: int = typer.Option(1, "--batch-size", help="Samples (or tiles) per network call."),
    no_crop: bool = typer.Option(False, "--no-crop", help="Keep the padding `encode --pad` added."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    force: bool = typer.Option(False, "--force", help="Decode even when `latentbridge check` finds an error."),
) -> None:
    """Decode a latent to PNG images with the right VAE, converting raw/model space as its format says."""
    from latentbridge import __version__, codec
    from latentbridge.files import read_latent
    from latentbridge.images import output_paths, save_images

    if output.suffix.lower() != ".png":
        raise LatentBridgeError(
            f"-o {output}: images are written as PNG; name the output e.g. {output.with_suffix('.png').name}"
        )
    latent = read_latent(latent_file, key=key, format=format, space=space, grid=grid, layout=layout)
    # before any work; a video latent's file count depends on the VAE (one PNG per frame for an image VAE)
    video = "T" in latent.layout
    refuse_existing(output_paths(output, latent.dim("N")), overwrite, folders_only=video)
    model = load_vae_spec(auto_vae(vae, latent_file), vae_format, device, "decoder")
    framewise = video and model.dims == 2  # frames of an image VAE's latents (AnimateDiff, SVD)
    if video:
        refuse_existing(output_paths(output, latent.dim("N") * (latent.dim("T") if framewise else 1)), overwrite)
    preflight_check(latent, model, force)
    if framewise:
        latent = latent.frames_as_batch()
    budget = memory_budget(max_memory, device) if tile is None else None
    with warnings_as_lines():
        images = codec.decode(
            model,
            latent,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            tile=tile,
            overlap=overlap,
            max_memory=budget,
            tile_passes=tile_passes,
            channels_last=channels_last,
            crop_padding=not no_crop,
        )
    fmt = latent.format or model.format
    metadata = {
        "tool": f"latentbridge {__version__} decode",
        "latent_file": latent_file.name,
        "format": fmt.name if fmt is not None else "",
        "space": latent.space,
        "vae_name": model.name,
        "vae_sha256": model.sha256,
        "dtype": dtype,
        "tile": tile,
        "provenance": latent.provenance.to_dict(),
    }
    for path in save_images(images.cpu(), output, metadata=metadata):
        typer.echo(str(path))
