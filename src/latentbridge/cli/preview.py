"""`latentbridge preview LATENT -o p.png [--method auto|rgb|fitted|tiny] [--vae FILE]`: a picture in milliseconds.

Methods: ``rgb`` (the format's published latent→RGB factors), ``fitted`` (factors fitted for a VAE with
``latentbridge fit-preview``, found by the latent's provenance or format), ``tiny`` (a small decoder given with
``--vae``: TAESD family incl. TAEF2, VAEApprox), ``auto`` (with ``--vae``: that VAE's stored fit, else the VAE
as a tiny decoder; without: a stored fit for the latent's VAE or format, else the published factors — it says
which). Video latents are written as one grid: a row per batch item, a column per latent frame.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from latentbridge.cli._app import app
from latentbridge.cli._common import FITS_HOME_HELP, GRID_HELP, fail_on_error, load_vae_option, refuse_output

METHODS: tuple[str, ...] = ("auto", "rgb", "fitted", "tiny")  # latentbridge.previews.METHODS, without torch


@app.command("preview")
@fail_on_error
def preview_command(
    latent: Path = typer.Argument(..., help="Latent file (.latent, safetensors, .pt, .npy/.npz, kohya cache)."),
    output: Path = typer.Option(..., "-o", "--output", help="PNG file to write."),
    method: str = typer.Option("auto", "--method", help=f"One of {', '.join(METHODS)}."),
    vae: str = typer.Option(None, "--vae", help="Decoder for --method tiny (TAESD family, TAEF2, VAEApprox)."),
    format: str = typer.Option(None, "--format", help="Latent format when the file does not record it."),
    layout: str = typer.Option(None, "--layout", help="Dimension letters of the stored tensor, e.g. NTCHW, NHWC."),
    space: str = typer.Option(None, "--space", help="raw or model, when the file does not record it."),
    key: str = typer.Option(None, "--key", help="Which array holds the latent, when several could."),
    grid: str = typer.Option(None, "--grid", help=GRID_HELP),
    upscale: int = typer.Option(1, "--upscale", min=1, help="Enlarge each preview by this factor (nearest)."),
    home: Path = typer.Option(None, "--home", envvar="LATENTBRIDGE_HOME", help=FITS_HOME_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing PNG file."),
) -> None:
    """Write a quick preview of a latent as a PNG (published, fitted or tiny-decoder preview)."""
    from latentbridge import read_latent
    from latentbridge.previews import (
        check_values,
        choose_previewer,
        default_fits_dir,
        frames_per_item,
        preview_grid,
        write_png,
    )

    if method not in METHODS:
        raise typer.BadParameter(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if output.suffix.lower() != ".png":
        raise typer.BadParameter(f"{output} is not a .png file; previews are written as PNG: name it e.g. p.png")
    refuse_output(output, [latent], overwrite=overwrite)
    lat = read_latent(latent, key=key, format=format, space=space, grid=grid, layout=layout)
    check_values(lat, str(latent))
    decoder = load_vae_option(vae, part="decoder", format=format) if vae else None
    if decoder is not None and decoder.stats is not None and lat.stats is None:
        lat = lat.replace(stats=decoder.stats)  # FLUX.2 raw latents convert with the VAE's BatchNorm statistics
    previewer, why = choose_previewer(lat, method, vae=decoder, fits_dir=default_fits_dir(home))
    images = previewer(lat)
    path = write_png(preview_grid(images, frames_per_item(lat), upscale=upscale), output)
    h, w = images.shape[-2:]
    Console(stderr=True, highlight=False).print(f"wrote {path} ({images.shape[0]} × {w}×{h}) — {why}", markup=False)
