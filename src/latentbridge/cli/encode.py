"""`latentbridge encode IMAGE [IMAGE…] --vae VAE -o out.latent [--pad|--crop]`: images to a labelled latent file.

The latent is written with :func:`latentbridge.files.write_latent` and records its format, space, and the
VAE's name and sha256; ``--pad`` records the padding so `latentbridge decode` crops it off again.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from latentbridge import IncompatibleError
from latentbridge.cli._app import app
from latentbridge.cli._common import (
    VAE_HELP,
    fail_on_error,
    load_vae_option,
    refuse_existing,
    run_options,
    warnings_as_lines,
)

if TYPE_CHECKING:
    from latentbridge import Run


@app.command("encode")
@fail_on_error
@run_options(batch_size="Images (or tiles) per network call.", tile="Encode in overlapping tiles of this many pixels.")
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
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
    *,
    run: Run,
) -> None:
    """Encode images into one latent file that records its format, space and VAE."""
    from latentbridge import Provenance, as_vae, encode, get_format, load_images, write_latent
    from latentbridge.files import container_for
    from latentbridge.images import PADDING_KEY

    container = container_for(output, container)  # before any work: `-o x.npy` must be a NumPy file
    refuse_existing([output], overwrite)
    model = load_vae_option(vae, part="encoder", format=vae_format, device=str(run.device))
    if model.format is None:
        if vae_format is None:
            raise IncompatibleError(
                f"VAE {vae!r} does not say which latent format it serves (its file cannot tell, e.g. SD1 and SDXL "
                "VAEs look alike), so the latent could not be labelled: pass --format NAME (see `latentbridge formats`)"
            )
        model = as_vae(model, format=get_format(vae_format))
    with warnings_as_lines():
        loaded = load_images(images, multiple=model.format.size_multiple, pad=pad, crop=crop)
        extra = () if loaded.padding.is_zero else ((PADDING_KEY, loaded.padding.to_text()),)
        prov = Provenance(source_image=", ".join(p.name for p in loaded.paths), extra=extra)
        latent = encode(model, loaded.tensor, run, provenance=prov)
    path = write_latent(latent, output, container=container, overwrite=overwrite)
    shape = "×".join(str(s) for s in latent.shape)
    typer.echo(f"{path}: {latent.format_name} {latent.space}-space latent {shape} from {len(loaded.paths)} image(s)")
