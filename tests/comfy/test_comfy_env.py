"""ComfyUI's environment as scripts/comfy_env.sh made it: installing latentbridge left ComfyUI's torch as it was."""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import json
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

RECORDS = Path(sys.prefix)


def _build() -> dict:
    """What comfy_env.sh records: version and RECORD sha256 of torch/torchvision/torchaudio, torch's CUDA build."""
    import torch

    out = {}
    for name in ("torch", "torchvision", "torchaudio"):
        dist = md.distribution(name)
        record = dist.read_text("RECORD") or ""
        out[name] = {"version": dist.version, "record_sha256": hashlib.sha256(record.encode()).hexdigest()}
    out["torch"].update(cuda=torch.version.cuda, git=torch.version.git_version)
    return out


def test_installing_latentbridge_left_comfyuis_torch_unchanged(comfy):
    before = RECORDS / "torch-before.json"
    if not before.is_file():
        pytest.skip(f"{sys.prefix} was not made by scripts/comfy_env.sh (no torch-before.json)")
    recorded = json.loads(before.read_text())
    assert json.loads((RECORDS / "torch-after.json").read_text()) == recorded
    assert _build() == recorded  # and nothing changed it since
    assert md.version("latentbridge")


def test_latentbridge_does_not_pin_torch(comfy):
    """The package admits whatever torch a ComfyUI user already has: torch is listed without any version bound
    (a lower bound would upgrade, and so replace the CUDA build of, an older ComfyUI environment)."""
    (torch,) = [r for r in map(Requirement, md.requires("latentbridge") or []) if r.name == "torch"]
    assert str(torch.specifier) == "" and torch.marker is None
