"""`latentbridge check` as a user types it, with real-world paths (the pairing logic is tested in test_check.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from latentbridge import codec, zoo
from latentbridge.cli import app
from latentbridge.cli.check import load_vae_for_check
from latentbridge.files import write_latent
from latentbridge.photos import photo_tensor
from latentbridge.weights import load_vae

runner = CliRunner()


def test_vae_path_with_commas_is_one_file(tmp_path):
    """A file named like "vae (v1, fp16).safetensors" is one VAE, not an ENCODER,DECODER pair."""
    if not zoo.zoo_path("zoo-a").is_file():
        pytest.skip(f"zoo VAE zoo-a is not built in this checkout ({zoo.zoo_path('zoo-a')} missing)")
    vae = tmp_path / "VAE (v1, fp16) ü.safetensors"
    vae.write_bytes(Path(zoo.zoo_path("zoo-a")).read_bytes())
    encoded = codec.encode(load_vae("zoo-a", part="encoder"), photo_tensor("astronaut", 64))
    latent = write_latent(encoded, tmp_path / "a, b.latent")
    result = runner.invoke(app, ["check", str(latent), "--vae", str(vae)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("OK ") and f"VAE {vae} (zoo-a, 4 ch / 8×, raw)" in result.output
    loaded = load_vae_for_check(str(vae), None, preflight=True)  # what --preflight decodes with
    assert loaded.format.name == "zoo-a" and loaded.encode is not None and loaded.decode is not None
