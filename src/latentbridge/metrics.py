"""Image fidelity metrics for transfers: PSNR and SSIM on decoded images, and a median timer.

All metrics take images [N, 3, H, W] (any channel count works) in [0, 1] — what
``latentbridge.codec.decode`` returns — and answer one value per image.

LPIPS is not offered: its backbone weights (AlexNet/VGG from torchvision) must be downloaded and
torchvision cannot be installed beside this torch build, so it cannot run offline here.
:data:`LPIPS_NOTE` says so wherever a report would show it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F

from latentbridge.errors import ShapeError

__all__ = [
    "LPIPS_NOTE",
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_RADIUS",
    "SSIM_SIGMA",
    "Fidelity",
    "T",
    "fidelity",
    "median_time",
    "psnr",
    "ssim",
]

T = TypeVar("T")

LPIPS_NOTE = (
    "LPIPS not measured: its AlexNet/VGG backbone weights download from the internet and torchvision "
    "cannot be installed beside this torch build, so it cannot run offline"
)

# SSIM constants of Wang et al. 2004 ("Image quality assessment: from error visibility to structural
# similarity"), with the 11-tap Gaussian window (sigma 1.5) they use; the same settings as
# skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False).
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # skimage/scipy: int(truncate 3.5 * sigma 1.5 + 0.5)
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(test: torch.Tensor, reference: torch.Tensor, what: str) -> None:
    if test.shape != reference.shape:
        raise ShapeError(
            f"{what} compares images of one shape, got {tuple(test.shape)} and {tuple(reference.shape)}; "
            "decode both latents at the same size (crop or resize one of them)"
        )
    if test.ndim != 4:
        raise ShapeError(
            f"{what} takes image batches [N, C, H, W], got shape {tuple(test.shape)}; "
            "add the batch dimension with x[None]"
        )


def psnr(test: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio, per image.

    Args:
        test: images [N, C, H, W], values in [0, ``data_range``].
        reference: images of the same shape and range.
        data_range: the peak value (1 for [0, 1] images).

    Returns:
        float64 tensor [N] in dB; ``inf`` where the images are identical.
    """
    _check_pair(test, reference, "psnr")
    mse = (test.double() - reference.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(device: torch.device) -> torch.Tensor:
    x = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter without padding ("valid"): [B, 1, H, W] -> [B, 1, H-10, W-10]."""
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return F.conv2d(x, g.view(1, 1, 1, -1))


def ssim(test: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), per image, averaged over channels and positions.

    Gaussian window (sigma 1.5, 11 taps), K1 = 0.01, K2 = 0.03, population covariances, and the border
    (5 px) left out — numerically the same as ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=data_range, channel_axis=0)``.

    Args:
        test: images [N, C, H, W], values in [0, ``data_range``]; H and W at least 11.
        reference: images of the same shape and range.
        data_range: the peak value (1 for [0, 1] images).

    Returns:
        float64 tensor [N] in [-1, 1]; exactly 1 for identical images.
    """
    _check_pair(test, reference, "ssim")
    n, c, h, w = test.shape
    side = 2 * SSIM_RADIUS + 1
    if h < side or w < side:
        raise ShapeError(f"ssim needs images of at least {side}×{side} pixels, got {h}×{w}; compare larger images")
    g = _gaussian_window(test.device)
    x = test.double().reshape(n * c, 1, h, w)
    y = reference.double().reshape(n * c, 1, h, w)
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    var_x = _blur(x * x, g) - mu_x**2
    var_y = _blur(y * y, g) - mu_y**2
    cov = _blur(x * y, g) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.reshape(n, -1).mean(1)


@dataclass(frozen=True, slots=True)
class Fidelity:
    """How closely one decoded image batch matches another (means over the batch).

    Attributes:
        psnr: mean PSNR in dB (``inf`` when identical).
        ssim: mean SSIM in [-1, 1].
        images: how many images were compared.
    """

    psnr: float
    ssim: float
    images: int

    def to_dict(self) -> dict[str, float | int | str]:
        """JSON-ready dict (``inf`` PSNR becomes the string "inf")."""
        return {"psnr_db": self.psnr if math.isfinite(self.psnr) else "inf", "ssim": self.ssim, "images": self.images}


def fidelity(test: torch.Tensor, reference: torch.Tensor) -> Fidelity:
    """PSNR and SSIM of ``test`` against ``reference``, both images [N, 3, H, W] in [0, 1]."""
    p = psnr(test, reference)
    return Fidelity(psnr=float(p.mean()), ssim=float(ssim(test, reference).mean()), images=int(p.numel()))


def median_time(fn: Callable[[], T], repeats: int = 3) -> tuple[T, float]:
    """Run ``fn`` ``repeats`` times; return its last result and the median wall time in seconds."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    times = []
    result: T
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)
