"""metrics: PSNR and SSIM against known values and against scikit-image, on real photos."""

from __future__ import annotations

import math

import pytest
import torch
from skimage.metrics import structural_similarity

from latentbridge.errors import ShapeError
from latentbridge.metrics import LPIPS_NOTE, fidelity, median_time, psnr, ssim
from latentbridge.photos import photo_tensor


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """Two real held-out photos, [2, 3, 64, 64] in [0, 1]."""
    return torch.cat([photo_tensor("astronaut", 64), photo_tensor("chelsea", 64)]).add(1).div(2)


def _signs(shape: tuple[int, ...]) -> torch.Tensor:
    """A ±1 pattern (no zeros), so `x + s * sigma` has an MSE of exactly sigma²."""
    return torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(0)).float() * 2 - 1


@pytest.mark.parametrize("sigma", [0.1, 0.01, 0.001])
def test_psnr_of_a_known_noise_level(sigma: float) -> None:
    grey = torch.full((2, 3, 16, 16), 0.5, dtype=torch.float64)
    noisy = grey + sigma * _signs(grey.shape).double()
    # MSE is exactly sigma², so PSNR = 20 log10(1 / sigma); 1e-9 dB covers float64 rounding of 0.5 ± sigma.
    assert psnr(noisy, grey).tolist() == pytest.approx([20 * math.log10(1 / sigma)] * 2, abs=1e-9)


def test_psnr_honours_data_range() -> None:
    grey = torch.full((1, 3, 8, 8), 128.0)
    noisy = grey + 2.55 * _signs(grey.shape)
    # sigma/peak = 2.55/255 = 0.01 -> 40 dB; 1e-4 dB for float32 rounding.
    assert psnr(noisy, grey, data_range=255.0).item() == pytest.approx(40.0, abs=1e-4)


def test_psnr_of_identical_images_is_infinite(photos: torch.Tensor) -> None:
    assert torch.isinf(psnr(photos, photos)).all()
    assert fidelity(photos, photos).to_dict()["psnr_db"] == "inf"


def test_ssim_of_identical_images_is_one(photos: torch.Tensor) -> None:
    # Exactly 1 up to float64 rounding of (a+c)/(a+c).
    assert ssim(photos, photos).tolist() == pytest.approx([1.0, 1.0], abs=1e-12)


@pytest.mark.parametrize("sigma", [0.02, 0.1])
def test_ssim_matches_scikit_image(photos: torch.Tensor, sigma: float) -> None:
    noisy = (photos + sigma * torch.randn(photos.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    ours = ssim(noisy, photos)
    ref = [
        structural_similarity(
            noisy[i].double().numpy(),
            photos[i].double().numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=0,
        )
        for i in range(len(photos))
    ]
    # Same window and constants in float64; the two differ only in summation order (~1e-15).
    assert ours.tolist() == pytest.approx(ref, abs=1e-9)
    assert (ours < 1).all()


def test_ssim_falls_as_noise_grows(photos: torch.Tensor) -> None:
    gen = torch.Generator().manual_seed(2)
    noise = torch.randn(photos.shape, generator=gen)
    scores = [ssim((photos + s * noise).clamp(0, 1), photos).mean().item() for s in (0.01, 0.05, 0.2)]
    assert scores[0] > scores[1] > scores[2]


def test_fidelity_means_over_the_batch(photos: torch.Tensor) -> None:
    noisy = photos + 0.01 * _signs(photos.shape)
    fid = fidelity(noisy, photos)
    assert fid.images == 2
    assert fid.psnr == pytest.approx(40.0, abs=1e-4)  # exact ±0.01 noise, float32 rounding
    assert 0.5 < fid.ssim < 1.0


def test_shape_mismatch_is_refused(photos: torch.Tensor) -> None:
    with pytest.raises(ShapeError, match=r"one shape, got \(2, 3, 64, 64\) and \(2, 3, 64, 32\)"):
        psnr(photos, photos[..., :32])
    with pytest.raises(ShapeError, match=r"ssim takes image batches \[N, C, H, W\], got shape \(3, 64, 64\)"):
        ssim(photos[0], photos[1])
    with pytest.raises(ShapeError, match="ssim needs images of at least 11×11 pixels, got 8×8"):
        ssim(photos[..., :8, :8], photos[..., :8, :8])


def test_median_time_returns_the_result_and_a_median() -> None:
    calls = []
    result, seconds = median_time(lambda: calls.append(1) or len(calls), repeats=3)
    assert result == 3 and len(calls) == 3 and seconds >= 0
    with pytest.raises(ValueError, match="repeats must be at least 1, got 0"):
        median_time(lambda: None, repeats=0)


def test_lpips_note_says_why() -> None:
    assert "LPIPS not measured" in LPIPS_NOTE and "offline" in LPIPS_NOTE
