"""`latentbridge inspect` as a user types it: latent files, weight files, errors and usage errors."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.files import latent_stats, read_latent, write_latent
from latentbridge.formats import get_format
from latentbridge.latent import Latent, Provenance

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


@pytest.fixture
def comfy_file(tmp_path):
    """A .latent written the way ComfyUI's SaveLatent writes it (raw, family not recorded)."""
    samples = torch.randn(1, 4, 6, 6) * 5
    samples[0, 2, 0, 0] = float("nan")
    path = tmp_path / "ComfyUI_00001_.latent"
    safetensors.torch.save_file(
        {"latent_tensor": samples, "latent_format_version_0": torch.tensor([])},
        str(path),
        metadata={"prompt": json.dumps({"3": {"class_type": "KSampler"}})},
    )
    return path


def test_inspect_comfyui_latent(comfy_file):
    result = runner.invoke(app, ["inspect", str(comfy_file)], env=WIDE)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "latent (ComfyUI SaveLatent)" in out and "[1, 4, 6, 6]  (NCHW)" in out and "float32" in out
    assert "unknown — run `latentbridge identify`" in out
    assert "metadata.prompt" in out and "KSampler" in out
    assert "NaN / inf" in out and "1 / 0" in out
    rows = [line for line in out.splitlines() if line.strip().startswith(("│       ", "│     all"))]
    assert len(rows) == 5  # 4 channels + the overall row


def test_inspect_json_is_one_object_matching_the_library(comfy_file):
    result = runner.invoke(app, ["inspect", str(comfy_file), "--json", "--format", "sdxl"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["kind"], data["container"], data["format"], data["space"]) == ("latent", "latent", "sdxl", "raw")
    assert data["shape"] == [1, 4, 6, 6] and data["layout"] == "NCHW" and data["dtype"] == "float32"
    expected = latent_stats(read_latent(comfy_file, format="sdxl"))
    assert data["stats"]["channels"] == expected["channels"] and data["stats"]["overall"]["nan"] == 1


def test_inspect_shows_provenance_and_recorded_format(tmp_path):
    lat = Latent(torch.randn(1, 16, 2, 4, 4), get_format("wan21"), "model", "NCTHW", Provenance(seed=42))
    path = write_latent(lat, tmp_path / "v.npz", container="npz")
    result = runner.invoke(app, ["inspect", str(path)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "wan21" in result.output and "model" in result.output and "provenance.seed" in result.output
    assert "42" in result.output and "NCTHW" in result.output


def test_inspect_kohya_cache_needs_key_then_works(tmp_path):
    import numpy as np

    path = tmp_path / "img_sdxl.npz"
    np.savez(
        path,
        latents_8x8=np.zeros((4, 8, 8), np.float32),
        original_size_8x8=np.array([64, 64]),
        crop_ltrb_8x8=np.array([0, 0, 64, 64]),
        latents_4x4=np.ones((4, 4, 4), np.float32),
        original_size_4x4=np.array([32, 32]),
        crop_ltrb_4x4=np.array([0, 0, 32, 32]),
    )
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 1
    assert "holds 2 resolutions" in result.stderr and "--key NAME" in result.stderr
    result = runner.invoke(app, ["inspect", str(path), "--key", "latents_4x4", "--format", "sdxl", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["space"] == "raw" and data["provenance"]["extra"]["kohya.original_size"] == "[32, 32]"


def test_library_errors_are_one_red_line(tmp_path):
    page = tmp_path / "vae.safetensors"
    page.write_text("<!doctype html><html><body>Rate limit exceeded</body></html>")
    result = runner.invoke(app, ["inspect", str(page)])
    assert result.exit_code == 1
    assert "HTML page" in result.stderr and "re-download" in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_missing_file_exits_1(tmp_path):
    result = runner.invoke(app, ["inspect", str(tmp_path / "nope.latent")])
    assert result.exit_code == 1 and "does not exist" in result.stderr


def test_conflict_with_the_record_exits_1_and_override_reads_it(tmp_path):
    path = write_latent(Latent(torch.randn(1, 4, 2, 2), get_format("sd1"), "raw"), tmp_path / "a.latent")
    result = runner.invoke(app, ["inspect", str(path), "--format", "sdxl"])
    assert result.exit_code == 1 and "records format 'sd1'" in result.stderr
    result = runner.invoke(app, ["inspect", str(path), "--format", "sdxl", "--override", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["format"] == "sdxl"


@pytest.mark.parametrize(
    "args",
    [["--space", "latent"], ["--no-such-option"], []],
    ids=["bad-space", "unknown-option", "no-file"],
)
def test_usage_errors_exit_2(comfy_file, args):
    argv = ["inspect", *([str(comfy_file)] if args else []), *args]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output


def test_unknown_format_name_exits_1_with_suggestion(comfy_file):
    result = runner.invoke(app, ["inspect", str(comfy_file), "--format", "sdx1"])
    assert result.exit_code == 1 and "Did you mean" in result.stderr


def test_weight_file_is_described(shared_weights):
    path = shared_weights / "taef2" / "taef2_decoder.pth"
    result = runner.invoke(app, ["inspect", str(path)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "TAEF2" in result.output and "flux2 (from sha256)" in result.output
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "weights" and data["file"] == str(path)


def _tiny_kl(scaling: float):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(32,) * 4,  # four levels: 8×, the SD-family geometry
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        norm_num_groups=32,
        scaling_factor=scaling,
    )


def test_inspect_diffusers_folders(tmp_path):
    """A pipeline folder (model_index.json + vae/) and a sharded VAE folder, as save_pretrained writes them."""
    _tiny_kl(0.13025).save_pretrained(tmp_path / "sdxl pipeline" / "vae")
    (tmp_path / "sdxl pipeline" / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    result = runner.invoke(app, ["inspect", str(tmp_path / "sdxl pipeline")], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "vae/diffusion_pytorch_model.safetensors (safetensors" in result.output
    assert "format        sdxl (from config.json)" in result.output
    _tiny_kl(0.18215).save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    result = runner.invoke(app, ["inspect", str(tmp_path / "sharded"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "weights" and data["file"].endswith("diffusion_pytorch_model.safetensors.index.json")
    assert (data["architecture"], data["format"], data["format_source"]) == ("autoencoder_kl", "sd1", "config.json")
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 1 and "is not a diffusers VAE folder" in result.stderr


def test_inspect_hash_option_for_big_weight_files(tmp_path, monkeypatch):
    """The note for files above the automatic hashing limit names an option that exists: --hash."""
    from latentbridge.weights import info as info_mod
    from latentbridge.weights import sha256_file

    _tiny_kl(0.18215).save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    monkeypatch.setattr(info_mod, "AUTO_HASH_LIMIT", 1000)  # as for a 335 MB ae.safetensors
    result = runner.invoke(app, ["inspect", str(weights)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "sha256        not computed" in result.output and "pass hash=True (inspect --hash)" in result.output
    result = runner.invoke(app, ["inspect", str(weights), "--hash"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert f"sha256        {sha256_file(weights)}" in result.output


def test_inspect_a_diffusers_token_sequence(tmp_path):
    """FluxPipeline(output_type="latent") hands out [N, L, 64]: refused with the grids that fit, read with --grid."""
    tokens = torch.randn(1, 64 * 48, 64)
    path = tmp_path / "flux_latents.pt"
    torch.save(tokens, path)
    refused = runner.invoke(app, ["inspect", str(path)], env=WIDE)
    assert refused.exit_code == 1 and "pass --grid ROWSxCOLUMNS" in refused.output
    assert "64x48 (1024 px high, 768 wide), 48x64 (768 px high, 1024 wide)" in refused.output
    assert "--format flux1|wan21" in refused.output  # Qwen-Image's tokens have the same shape
    result = runner.invoke(app, ["inspect", str(path), "--grid", "48x64", "--format", "flux1"], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "[1, 16, 96, 128]  (NCHW)" in result.output and "flux1" in result.output
    assert "unpacked a diffusers flux1 token sequence on a 48x64 grid" in result.output
