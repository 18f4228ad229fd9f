"""Fixtures for the tests that run a real ComfyUI (inside ComfyUI's own venv: scripts/comfy_env.sh).

In any other environment, or without ../shared/comfyui, every test here skips with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import harness  # this folder holds the harness module

PACKS = Path(__file__).parent / "packs"


# ComfyUI and the libraries it imports warn at import time; the project's "error" filter is for our code, so these
# tests (only these) ignore the categories third-party imports raise.
_IGNORED = ("DeprecationWarning", "FutureWarning", "UserWarning", "PendingDeprecationWarning")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            for category in _IGNORED:
                item.add_marker(pytest.mark.filterwarnings(f"ignore::{category}"))


@pytest.fixture(scope="session")
def comfy(tmp_path_factory: pytest.TempPathFactory) -> harness.Comfy:
    """One headless ComfyUI for the session, with the probe packs in tests/comfy/packs loaded."""
    reason = harness.missing_reason()
    if reason:
        pytest.skip(reason)
    import torch

    torch.set_num_threads(1)  # small convolutions on a shared 2-core machine: one thread is much faster
    base = tmp_path_factory.mktemp("comfy-base")
    return harness.start(base, packs=[PACKS / "lb_probe_v1.py", PACKS / "lb_probe_v3"])
