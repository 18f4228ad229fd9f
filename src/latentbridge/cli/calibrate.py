"""`latentbridge calibrate --vae FILE --images DIR [--format NAME] [--sizes 128,256,384] [--crops 2] [--json]`.

Encodes random crops of the images with the VAE's encoder and stores the latent space's profile in
``$LATENTBRIDGE_HOME/profiles`` (default ``~/.cache/latentbridge/profiles``); `identify` and `check` use it
from then on.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from latentbridge import LatentBridgeError
from latentbridge.cli._app import app
from latentbridge.cli._common import IMAGE_SUFFIXES, fail_on_error, load_vae_option


def _images(folder: Path) -> list:
    from latentbridge import load_images

    if not folder.is_dir():
        raise FileNotFoundError(f"--images {folder}: not a folder; pass a folder of PNG/JPEG/WebP photos")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LatentBridgeError(f"--images {folder}: no PNG, JPEG or WebP files in it; add at least 8 photos")
    return [load_images([p]).tensor for p in files]


@app.command("calibrate")
@fail_on_error
def calibrate_command(
    vae: str = typer.Option(..., "--vae", help="The VAE (with its encoder): weight file, diffusers folder, zoo name."),
    images: Path = typer.Option(..., "--images", help="A folder of photos (PNG/JPEG/WebP), ideally 8 or more."),
    format: str = typer.Option(None, "--format", help="Registry format the VAE writes, or a new name for its space."),
    sizes: str = typer.Option("128,256,384", "--sizes", help="Crop sides in pixels, comma-separated."),
    crops: int = typer.Option(2, "--crops", min=1, help="Random crops per image and size."),
    as_json: bool = typer.Option(False, "--json", help="Print the stored profile as JSON."),
) -> None:
    """Build a reference profile for a VAE from photos; `identify` and `check` use it from then on."""
    from latentbridge import list_formats
    from latentbridge.profiles import calibrate, save_user_profile, user_profile_dir

    try:
        side = tuple(int(s) for s in sizes.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"--sizes {sizes!r}: expected comma-separated integers like 128,256,384") from exc
    known = format if format in list_formats() else None
    loaded = load_vae_option(vae, part="encoder", format=known)
    profile = calibrate(loaded, _images(images), format=format, sizes=side, crops=crops)
    path = save_user_profile(profile, user_profile_dir())
    if as_json:
        typer.echo(json.dumps({"path": str(path), "profile": profile.to_dict()}, indent=1))
        return
    typer.echo(
        f"profile {profile.label}: {profile.samples} latents ({profile.source}); overall std "
        f"{profile.overall_std:.4g}; saved to {path}"
    )
