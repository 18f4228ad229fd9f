"""The built-in zoo: small KL VAEs trained by ``scripts/train_zoo.py``, shipped as fp16 safetensors.

Each is addressable by name wherever a VAE file is accepted (``--vae zoo-a``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

__all__ = ["ZOO_NAMES", "is_zoo_name", "zoo_info", "zoo_path"]

ZOO_NAMES: tuple[str, ...] = ("zoo-a", "zoo-b", "zoo-c")


@cache
def zoo_info() -> dict[str, dict]:
    """Numbers the training script wrote for each zoo VAE (config, scale, stats, rgb factors, PSNR).

    Returns an empty dict only when zoo.json is absent (a source checkout before training);
    the test suite asserts it is present.
    """
    path = resources.files(__package__).joinpath("zoo.json")
    if not path.is_file():
        return {}
    vaes = json.loads(path.read_text())["vaes"]
    return {name: vaes[name] for name in ZOO_NAMES if name in vaes}


def zoo_path(name: str) -> Path:
    """Path of a zoo VAE's weight file."""
    return Path(str(resources.files(__package__).joinpath(f"{name}.safetensors")))


def is_zoo_name(name: str) -> bool:
    """True when ``name`` names a zoo VAE ("zoo-a")."""
    return name in ZOO_NAMES
