"""`latentbridge encode IMAGE [IMAGE…] --vae VAE -o out.latent [--pad|--crop]`: images to a labelled latent file.

The latent is written with :func:`latentbridge.files.write_latent` and records its format, space, and the
VAE's name and sha256; ``--pad`` records the padding so `latentbridge decode` crops it off again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import typer

from latentbridge.cli._app import app
from latentbridge.cli._common import fail_on_error
from latentbridge.cli.decode import VAE_HELP, load_vae_spec, memory_budget, refuse_existing, warnings_as_lines
from latentbridge.errors import IncompatibleError


@app.command("encode")
@fail_on_error
def encode_command(
    images: list[Path] = typer.Argument(
        ..., help="PNG, JPEG or WebP files of one size (one batch).", show_default=False
    ),
    vae: str = typer.Option(..., "--vae", help=VAE_HELP, show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Output latent file.", show_default=False),
    pad: bool = typer.Option(False, "--pad", help="Reflect-pad sizes the format cannot take (decode crops it off)."),
    crop: bool = typer.Option(False, "--crop", help="Centre-crop sizes the format cannot take."),
    vae_format: str = typer.Option(None, "--format", help="The format the VAE serves, when its file cannot tell."),
    container: str = typer.Option(
        None,
        "--container",
        help="latent (ComfyUI-loadable), safetensors, pt, npy or npz (default: from the -o suffix, else latent).",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps …"),
    dtype: str = typer.Option(
        "fp32", "--dtype", help="fp32 (exact), bf16 or fp16; NaN/inf samples are redone in fp32."
    ),
    channels_last: bool = typer.Option(
        False, "--channels-last", help="Channels-last convolutions (fast with bf16 on CPU)."
    ),
    tile: int = typer.Option(None, "--tile", help="Encode in overlapping tiles of this many pixels."),
    overlap: int = typer.Option(None, "--overlap", help="Tile overlap in pixels (default: a quarter of the tile)."),
    tile_passes: int = typer.Option(
        2, "--tile-passes", help="Passes over the tiles for GroupNorm VAEs: 1 = per-tile statistics (fastest)."
    ),
    max_memory: str = typer.Option(
        "auto", "--max-memory", help="Tile when the estimated peak passes this (2GB, auto = 75 % of free memory, none)."
    ),
    batch_size: int = typer.Option(1, "--batch-size", help="Images (or tiles) per network call."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Encode images into one latent file that records its format, space and VAE."""
    from latentbridge import codec
    from latentbridge.files import container_for, write_latent
    from latentbridge.formats import get_format
    from latentbridge.images import PADDING_KEY, load_images
    from latentbridge.latent import Provenance

    container = container_for(output, container)  # before any work: `-o x.npy` must be a NumPy file
    refuse_existing([output], overwrite)
    model = load_vae_spec(vae, vae_format, device, "encoder")
    if model.format is None:
        if vae_format is None:
            raise IncompatibleError(
                f"VAE {vae!r} does not say which latent format it serves (its file cannot tell, e.g. SD1 and SDXL "
                "VAEs look alike), so the latent could not be labelled: pass --format NAME (see `latentbridge formats`)"
            )
        model = dataclasses.replace(model, format=get_format(vae_format))
    with warnings_as_lines():
        loaded = load_images(images, multiple=model.format.size_multiple, pad=pad, crop=crop)
        extra = () if loaded.padding.is_zero else ((PADDING_KEY, loaded.padding.to_text()),)
        prov = Provenance(source_image=", ".join(p.name for p in loaded.paths), extra=extra)
        budget = memory_budget(max_memory, device) if tile is None else None
        latent = codec.encode(
            model,
            loaded.tensor,
            batch_size=batch_size,
            device=device,
            dtype=dtype,
            tile=tile,
            overlap=overlap,
            max_memory=budget,
            tile_passes=tile_passes,
            channels_last=channels_last,
            provenance=prov,
        )
    path = write_latent(latent, output, container=container, overwrite=overwrite)
    shape = "×".join(str(s) for s in latent.shape)
    typer.echo(f"{path}: {latent.format_name} {latent.space}-space latent {shape} from {len(loaded.paths)} image(s)")
