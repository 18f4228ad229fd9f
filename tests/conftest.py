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
