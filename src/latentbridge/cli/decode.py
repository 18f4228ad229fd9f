"""`latentbridge decode LATENT --vae VAE -o out.png`: a latent file to PNG images, with the right VAE and space.

One PNG per batch item (``out.png``, or ``out-0.png``, ``out-1.png``, … for a batch); a video latent gives one
animated PNG per item with every frame (APNG: lossless, and the provenance chunk survives). Each PNG carries
a ``latentbridge`` text chunk with the latent's provenance and how it was decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

from latentbridge import LatentBridgeError
from latentbridge.cli._app import app
from latentbridge.cli._common import (
    AUTO_VAE_HELP,
    GRID_HELP,
    auto_vae,
    fail_on_error,
    load_vae_option,
    refuse_existing,
    run_options,
    warnings_as_lines,
)

if TYPE_CHECKING:
    from latentbridge import Run

_err = Console(stderr=True, highlight=False, soft_wrap=True)


def preflight_check(latent: Any, model: Any, force: bool) -> None:
    """Run `latentbridge check` first: its warnings as yellow lines; an error refuses (one line) unless ``force``."""
    from latentbridge import check

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
@run_options(tile="Decode in overlapping tiles of this many pixels.")
def decode_command(
    latent_file: Path = typer.Argument(
        ..., help="Latent file (.latent, safetensors, pt, npy/npz, kohya cache).", show_default=False
    ),
    vae: str = typer.Option(..., "--vae", help=AUTO_VAE_HELP, show_default=False),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output .png (a batch writes out-0.png, out-1.png, …).", show_default=False
    ),
    format: str = typer.Option(None, "--format", help="The latent's format, when the file does not record it."),
    layout: str = typer.Option(None, "--layout", help="Dimension letters of the stored tensor, e.g. NTCHW, NHWC."),
    space: str = typer.Option(None, "--space", help="raw|model: the latent's space, when the file does not record it."),
    key: str = typer.Option(None, "--key", help="Which array of the file holds the latent."),
    grid: str = typer.Option(None, "--grid", help=GRID_HELP),
    vae_format: str = typer.Option(None, "--vae-format", help="The format the VAE serves, when its file cannot tell."),
    no_crop: bool = typer.Option(False, "--no-crop", help="Keep the padding `encode --pad` added."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
    force: bool = typer.Option(False, "--force", help="Decode even when `latentbridge check` finds an error."),
    *,
    run: Run,
) -> None:
    """Decode a latent to PNG images with the right VAE, converting raw/model space as its format says."""
    from latentbridge import __version__, decode, read_latent, save_images
    from latentbridge.images import output_paths

    if output.suffix.lower() != ".png":
        raise LatentBridgeError(
            f"-o {output}: images are written as PNG; name the output e.g. {output.with_suffix('.png').name}"
        )
    latent = read_latent(latent_file, key=key, format=format, space=space, grid=grid, layout=layout)
    # before any work; a video latent's file count depends on the VAE (one PNG per frame for an image VAE)
    video = "T" in latent.layout
    refuse_existing(output_paths(output, latent.dim("N")), overwrite, folders_only=video)
    model = load_vae_option(auto_vae(vae, latent_file), part="decoder", format=vae_format, device=str(run.device))
    framewise = video and model.dims == 2  # frames of an image VAE's latents (AnimateDiff, SVD)
    if video:
        refuse_existing(output_paths(output, latent.dim("N") * (latent.dim("T") if framewise else 1)), overwrite)
    preflight_check(latent, model, force)
    if framewise:
        latent = latent.frames_as_batch()
    with warnings_as_lines():
        images = decode(model, latent, run, crop_padding=not no_crop)
    fmt = latent.format or model.format
    metadata = {
        "tool": f"latentbridge {__version__} decode",
        "latent_file": latent_file.name,
        "format": fmt.name if fmt is not None else "",
        "space": latent.space,
        "vae_name": model.name,
        "vae_sha256": model.sha256,
        "dtype": run.dtype,
        "tile": run.tiling.tile,
        "provenance": latent.provenance.to_dict(),
    }
    for path in save_images(images.cpu(), output, metadata=metadata):
        typer.echo(str(path))
