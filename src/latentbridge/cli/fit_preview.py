"""`latentbridge fit-preview --vae FILE (--images DIR | --photos)`: latent→RGB factors fitted for your VAE.

Encodes the images, area-downsamples each to its latent's size and solves least squares with a bias column
(:func:`latentbridge.previews.fit_preview`). The fit is stored as ``HOME/previews/<vae sha256>.json`` (atomic
write) and used from then on by ``latentbridge preview`` for latents whose provenance names that VAE or whose
format matches.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from latentbridge.cli._app import app
from latentbridge.cli._common import FITS_HOME_HELP, IMAGE_SUFFIXES, fail_on_error, vae_spec

if TYPE_CHECKING:
    import torch


def _folder_images(folder: Path, multiple: int, max_side: int) -> tuple[list[torch.Tensor], list[str]]:
    """Every PNG/JPEG/WebP in ``folder`` as [1, 3, H, W] in [0, 1]: shrunk to ``max_side``, cropped to ``multiple``."""
    import torch.nn.functional as F

    from latentbridge import load_images, to_unit
    from latentbridge.images import fit_size

    if not folder.is_dir():
        raise FileNotFoundError(f"--images {str(folder)!r} is not a folder; pass a folder of PNG/JPEG/WebP files")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no {', '.join(IMAGE_SUFFIXES)} files in {folder}; put the photos to fit on there")
    images, names = [], []
    for path in files:
        x = to_unit(load_images([path]).tensor)
        h, w = x.shape[-2:]
        if max(h, w) > max_side:
            s = max_side / max(h, w)
            x = F.interpolate(x, size=(max(multiple, round(h * s)), max(multiple, round(w * s))), mode="area")
        x, _ = fit_size(x, multiple, crop=True, what=f"image {path.name}")
        images.append(x.clamp(0, 1))
        names.append(path.name)
    return images, names


def _bundled_photos(size: int) -> tuple[list[torch.Tensor], list[str]]:
    from latentbridge import to_unit
    from latentbridge.photos import TRAIN_PHOTOS, photo_tensor

    return [to_unit(photo_tensor(name, size)) for name in TRAIN_PHOTOS], list(TRAIN_PHOTOS)


@app.command("fit-preview")
@fail_on_error
def fit_preview_command(
    vae: list[str] = typer.Option(..., "--vae", help="VAE file(s) with an encoder (repeat or comma-join halves)."),
    images: Path = typer.Option(None, "--images", help="Folder of PNG/JPEG/WebP photos to fit on."),
    photos: bool = typer.Option(False, "--photos", help="Fit on latentbridge's bundled training photos instead."),
    max_side: int = typer.Option(512, "--max-side", min=16, help="Shrink larger images to this many pixels."),
    format: str = typer.Option(None, "--format", help="The VAE's latent format when the file cannot tell."),
    home: Path = typer.Option(None, "--home", envvar="LATENTBRIDGE_HOME", help=FITS_HOME_HELP),
) -> None:
    """Fit latent→RGB preview factors for a VAE by least squares and store them for `latentbridge preview`."""
    from latentbridge import load_vae
    from latentbridge.previews import default_fits_dir, fit_preview, save_fit

    if (images is None) == (not photos):
        raise typer.BadParameter("pass exactly one of --images DIR or --photos")
    files: list[str] = []
    for spec in vae:
        one = vae_spec(spec)
        files.extend([one] if isinstance(one, str) else one)
    model = load_vae(files[0] if len(files) == 1 else files, format=format, part="both")
    multiple = model.size_multiple
    if photos:
        pictures, names = _bundled_photos(max(multiple, min(256, max_side - max_side % multiple)))
    else:
        pictures, names = _folder_images(images, multiple, max_side)
    fit = fit_preview(model, pictures, names)
    path = save_fit(fit, default_fits_dir(home))
    published = "" if fit.published_psnr is None else f"; published factors {fit.published_psnr:.2f} dB"
    Console(stderr=True, highlight=False).print(
        f"fitted {fit.channels}×3 factors + bias on {len(names)} images ({fit.cells} latent cells): "
        f"{fit.fit_psnr:.2f} dB against the downsampled images{published}; stored {path}",
        markup=False,
    )
