"""Fixtures for the tests that run a real ComfyUI (inside ComfyUI's own venv: scripts/comfy_env.sh).

In any other environment, or without ../shared/comfyui, every test here skips with the reason.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

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
    """One headless ComfyUI for the session, with the probe packs in tests/comfy/packs and latentbridge's own pack
    loaded — the repository's custom_nodes/latentbridge linked into ComfyUI's custom_nodes, as the README says."""
    reason = harness.missing_reason()
    if reason:
        pytest.skip(reason)
    torch.set_num_threads(1)  # small convolutions on a shared 2-core machine: one thread is much faster
    base = tmp_path_factory.mktemp("comfy-base")
    pack = base / "custom_nodes" / "latentbridge"
    pack.parent.mkdir(parents=True, exist_ok=True)
    pack.symlink_to(harness.REPO / "custom_nodes" / "latentbridge", target_is_directory=True)
    return harness.start(base, packs=[PACKS / "lb_probe_v1.py", PACKS / "lb_probe_v3", pack])


# --- VAEs ComfyUI can load, and an input photo (shared by the node-pack tests) ---------------------------------


@pytest.fixture(scope="session")
def sd_vae(comfy: harness.Comfy) -> Path:
    """models/vae/sd_random.safetensors: an SD-class (4-channel, quant convs) KL VAE at SD's widths, random weights."""
    from test_comfy_smoke import _kl_file

    return _kl_file(comfy.models_dir("vae") / "sd_random.safetensors", 4, quant=True, seed=1)


@pytest.fixture(scope="session")
def kl16_vae(comfy: harness.Comfy) -> Path:
    """models/vae/kl16_random.safetensors: a 16-channel KL VAE (SD3/FLUX.1 layout) at SD's widths, random weights."""
    from test_comfy_smoke import _kl_file

    return _kl_file(comfy.models_dir("vae") / "kl16_random.safetensors", 16, quant=False, seed=2)


@pytest.fixture(scope="session")
def taesd_vae(comfy: harness.Comfy) -> Path:
    """models/vae/taesd_combined.safetensors: a TAESD in the combined layout ComfyUI's VAESave writes (taesd_encoder.*,
    taesd_decoder.*, vae_scale/vae_shift of SD1), random weights; ComfyUI's VAELoader loads it as a TAESD."""
    from safetensors.torch import save_file

    from latentbridge.models.taesd import TAESD, TAESDConfig

    path = comfy.models_dir("vae") / "taesd_combined.safetensors"
    if not path.exists():
        torch.manual_seed(6)
        model = TAESD(TAESDConfig(4, ""))
        state = {f"taesd_{k}": v.contiguous() for k, v in model.state_dict().items()}
        state |= {"vae_scale": torch.tensor(0.18215), "vae_shift": torch.tensor(0.0)}
        save_file(state, str(path))
    return path


@pytest.fixture(scope="session")
def photo(comfy: harness.Comfy) -> str:
    """input/astronaut64.png: a real photo (skimage's astronaut), 64×64, for LoadImage."""
    from PIL import Image

    from latentbridge.photos import load_photo

    name = "astronaut64.png"
    Image.fromarray(load_photo("astronaut")).resize((64, 64), Image.Resampling.BICUBIC).save(comfy.input_dir / name)
    return name
