"""Draw docs/t2i_samples.png: what the zoo's text-to-image models make, next to the photos they memorised.

One row per photo: the training photo, then for each model (t2i-a, t2i-c) three samples of the photo's held-out
caption (never trained on) with seeds 0, 1, 2, 20 DDIM steps, guidance 4, through ``latentbridge.generate`` and the
model's own zoo VAE. Usage: ``python scripts/t2i_samples.py [--out docs/t2i_samples.png]`` (about a minute on one
CPU thread).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from latentbridge.codec import decode  # noqa: E402
from latentbridge.generate import empty_latent, load_model, noise, sample  # noqa: E402
from latentbridge.photos import photo_tensor  # noqa: E402
from latentbridge.weights.load import load_vae  # noqa: E402
from latentbridge.zoo.t2i import HELDOUT_CAPTIONS, T2I_NAMES, T2I_PHOTOS, t2i_model  # noqa: E402

TILE = 128
SEEDS = (0, 1, 2)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [0, 1] -> [N, TILE, TILE, 3] uint8."""
    small = torch.nn.functional.interpolate(images, size=(TILE, TILE), mode="area")
    return (small.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "t2i_samples.png")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    models = {name: (load_model(name), load_vae(t2i_model(name).vae)) for name in T2I_NAMES}
    label_h = 16
    columns = 1 + len(models) * len(SEEDS)
    sheet = Image.new("RGB", (columns * TILE, label_h + len(T2I_PHOTOS) * TILE), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), "photo", fill="black")
    for m, name in enumerate(models):
        draw.text(((1 + m * len(SEEDS)) * TILE + 4, 2), f"{name}: held-out caption, seeds 0-2", fill="black")
    for row, photo in enumerate(T2I_PHOTOS):
        tiles = [to_uint8((photo_tensor(photo, 256) + 1) / 2)[0]]
        for model, vae in models.values():
            lat = noise(empty_latent(model.format, 256, 256, batch=len(SEEDS)), list(SEEDS))
            out = sample(model, HELDOUT_CAPTIONS[photo], lat, steps=20, guidance=4.0)
            tiles.extend(to_uint8(decode(vae, out, progress=False)))
        for col, tile in enumerate(tiles):
            sheet.paste(Image.fromarray(tile), (col * TILE, label_h + row * TILE))
        y = label_h + row * TILE + TILE - 14
        draw.rectangle((0, y, TILE - 1, y + 13), fill="black")
        draw.text((2, y), HELDOUT_CAPTIONS[photo][:22], fill="white")
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    args.out.write_bytes(buffer.getvalue())
    print(f"wrote {args.out} ({len(buffer.getvalue()) / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
