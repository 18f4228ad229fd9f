"""Shared fixtures: the real weights folder, small real photos, a fresh registry view."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = REPO.parent / "shared" / "weights"


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    """../shared/weights, or a skip naming the missing folder (CI always has it)."""
    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"real test weights not found at {SHARED_WEIGHTS} (CI places ../shared beside the repo)")
    return SHARED_WEIGHTS


@pytest.fixture
def one_thread():
    """Small tensor ops on a shared 2-core machine run ~100× faster on one intra-op thread; restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def vaelight_files(shared_weights: Path) -> list[Path]:
    """VAElight SD1 [encoder, decoder] ONNX files (raw SD1 latents) from ../shared/weights."""
    return [shared_weights / "vaelight-sd1" / n for n in ("VAEencoder.onnx", "VAEpreview.onnx")]
