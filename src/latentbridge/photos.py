"""Real photos that ship inside pip packages, so demos, tests and the zoo training run offline.

Sources: scikit-image ``skimage.data`` (bundled files only; the ones it would download are left out),
scikit-learn ``load_sample_images()`` (china.jpg, flower.jpg) and matplotlib's sample data
(grace_hopper.jpg). Every photo loads as uint8 RGB, whatever its stored mode (grey, RGBA, bool).

The zoo VAEs are trained on ``TRAIN_PHOTOS`` and validated on ``HELDOUT_PHOTOS``; the demo encodes
held-out photos (astronaut, chelsea) so that what it shows was never seen in training.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from latentbridge.errors import LatentBridgeError, did_you_mean

__all__ = [
    "HELDOUT_PHOTOS",
    "PHOTOS",
    "TRAIN_PHOTOS",
    "load_photo",
    "photo_tensor",
]


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        data = importlib.import_module("skimage.data")
        image = getattr(data, name)()
        return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle -> (left, right, disparity)

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        try:
            datasets = importlib.import_module("sklearn.datasets")
        except ImportError as exc:
            raise LatentBridgeError(
                f"Photo {filename.removesuffix('.jpg')!r} ships with scikit-learn, which is not installed. "
                "Install it with `pip install scikit-learn` (or `pip install latentbridge[dev]`)."
            ) from exc
        images = datasets.load_sample_images()
        names = [path.replace("\\", "/").rsplit("/", 1)[-1] for path in images.filenames]
        return images.images[names.index(filename)]

    return load


def _matplotlib(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        cbook = importlib.import_module("matplotlib.cbook")
        with cbook.get_sample_data(filename) as file, Image.open(file) as image:
            return np.asarray(image.convert("RGB"))

    return load


# name -> loader. Colour photos first, then greyscale ones (they add texture: grass, gravel, text).
# Left out on purpose: skimage's `cat` (the same picture as `chelsea`), the synthetic colorwheel,
# checkerboard, logo and binary images, and the files skimage would download (eagle, lily, brain ...).
_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),  # 512x512
    "chelsea": _skimage("chelsea"),  # 300x451
    "coffee": _skimage("coffee"),  # 400x600
    "rocket": _skimage("rocket"),  # 427x640
    "hubble_deep_field": _skimage("hubble_deep_field"),  # 872x1000
    "immunohistochemistry": _skimage("immunohistochemistry"),  # 512x512
    "retina": _skimage("retina"),  # 1411x1411
    "stereo_motorcycle": _skimage("stereo_motorcycle"),  # 500x741, left view
    "china": _sklearn("china.jpg"),  # 427x640
    "flower": _sklearn("flower.jpg"),  # 427x640
    "grace_hopper": _matplotlib("grace_hopper.jpg"),  # 600x512
    "camera": _skimage("camera"),  # 512x512 grey
    "coins": _skimage("coins"),  # 303x384 grey
    "moon": _skimage("moon"),  # 512x512 grey
    "clock": _skimage("clock"),  # 300x400 grey
    "grass": _skimage("grass"),  # 512x512 grey
    "gravel": _skimage("gravel"),  # 512x512 grey
    "brick": _skimage("brick"),  # 512x512 grey
    "text": _skimage("text"),  # 172x448 grey
}

PHOTOS: tuple[str, ...] = tuple(_LOADERS)
"""Every photo name :func:`load_photo` knows."""

HELDOUT_PHOTOS: tuple[str, ...] = ("astronaut", "chelsea", "flower")
"""Validation photos, never used to train the zoo (the demo encodes astronaut and chelsea)."""

TRAIN_PHOTOS: tuple[str, ...] = tuple(name for name in PHOTOS if name not in HELDOUT_PHOTOS)
"""Photos the zoo VAEs are trained on."""


def load_photo(name: str) -> np.ndarray:
    """Load a bundled photo by name.

    Args:
        name: one of :data:`PHOTOS`.

    Returns:
        uint8 array [H, W, 3], RGB in [0, 255]. Greyscale photos are repeated over the three channels,
        RGBA ones lose their alpha channel.

    Raises:
        LatentBridgeError: unknown name, or the package that ships the photo is not installed.
    """
    if name not in _LOADERS:
        raise LatentBridgeError(
            f"Unknown photo {name!r}.{did_you_mean(name, PHOTOS)} Known photos: {', '.join(PHOTOS)}."
        )
    image = np.asarray(_LOADERS[name]())
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float64) * (255.0 if image.max() <= 1.0 else 1.0)), 0, 255)
        image = image.astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image)


def photo_tensor(name: str, size: int) -> torch.Tensor:
    """Load a bundled photo as a square model input.

    The largest centred square is cut out, then resized to ``size`` x ``size`` with PIL bicubic.

    Args:
        name: one of :data:`PHOTOS`.
        size: output side in pixels.

    Returns:
        float32 tensor [1, 3, size, size] in [-1, 1].
    """
    if size < 1:
        raise LatentBridgeError(f"photo size must be a positive number of pixels, got {size}.")
    image = load_photo(name)
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(image[top : top + side, left : left + side])
    if side != size:
        square = square.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(square, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()
