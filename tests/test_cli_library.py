"""`latentbridge library …` and `--vae auto` as a user runs them: scan a models folder holding a real zoo VAE, then
a ComfyUI-style .latent and PNGs whose metadata name it (ComfyUI graph, A1111 "VAE hash"), and `--vae auto` on
decode, check and transfer picks it (the issue's measurement)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from latentbridge import codec, photos
from latentbridge.cli import app
from latentbridge.images import read_png_metadata
from latentbridge.weights import load_vae
from latentbridge.weights.hashes import file_hashes
from latentbridge.zoo import zoo_path

runner = CliRunner()


def _env(home: Path) -> dict[str, str]:
    return {"COLUMNS": "200", "LATENTBRIDGE_HOME": str(home)}


def _prompt(vae_name: str) -> dict:
    """ComfyUI API graph (nodes.py): LoadImage -> VAEEncode(VAELoader) -> SaveLatent, and a VAEDecode -> SaveImage."""
    return {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": vae_name}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "astronaut.png"}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 0]}},
        "4": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "latents/ComfyUI"}},
        "5": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["1", 0]}},
        "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "ComfyUI"}},
    }


def _workflow(vae_name: str) -> dict:
    """The frontend's UI-format workflow (schema 0.4) of the same graph's decode half."""
    return {
        "last_node_id": 6,
        "last_link_id": 3,
        "nodes": [
            {"id": 1, "type": "VAELoader", "mode": 0, "inputs": [], "outputs": [{"name": "VAE", "type": "VAE", "links": [2]}], "widgets_values": [vae_name]},  # noqa: E501
            {"id": 3, "type": "VAEEncode", "mode": 0, "inputs": [{"name": "pixels", "type": "IMAGE", "link": None}, {"name": "vae", "type": "VAE", "link": None}], "outputs": [{"name": "LATENT", "type": "LATENT", "links": [1]}]},  # noqa: E501
            {"id": 5, "type": "VAEDecode", "mode": 0, "inputs": [{"name": "samples", "type": "LATENT", "link": 1}, {"name": "vae", "type": "VAE", "link": 2}], "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [3]}]},  # noqa: E501
            {"id": 6, "type": "SaveImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 3}], "outputs": [], "widgets_values": ["ComfyUI"]},  # noqa: E501
        ],
        "links": [[1, 3, 0, 5, 0, "LATENT"], [2, 1, 0, 5, 1, "VAE"], [3, 5, 0, 6, 0, "IMAGE"]],
        "groups": [],
        "version": 0.4,
    }  # fmt: skip


@pytest.fixture(scope="module")
def zoo_latent(tmp_path_factory) -> torch.Tensor:
    """A real zoo-a latent of a real photo (raw space, as a ComfyUI LATENT holds it)."""
    torch.set_num_threads(1)
    return codec.encode(load_vae("zoo-a"), photos.photo_tensor("astronaut", 64)).tensor


@pytest.fixture
def setup(tmp_path, zoo_latent):
    """A scanned ComfyUI models folder holding zoo-a's weights as models/vae/zoo-a.safetensors, and a .latent as
    ComfyUI's SaveLatent writes it (nodes.py: latent_tensor + latent_format_version_0, prompt/workflow JSON)."""
    models = tmp_path / "ComfyUI" / "models"
    (models / "vae").mkdir(parents=True)
    shutil.copy(zoo_path("zoo-a"), models / "vae" / "zoo-a.safetensors")
    shutil.copy(zoo_path("zoo-b"), models / "vae" / "zoo-b.safetensors")  # a wrong VAE beside it
    home = tmp_path / "home"
    result = runner.invoke(app, ["library", "scan", str(models)], env=_env(home))
    assert result.exit_code == 0, result.output
    assert "2 found, 2 added" in result.output
    latent = tmp_path / "ComfyUI_00001_.latent"
    safetensors.torch.save_file(
        {"latent_tensor": zoo_latent.contiguous(), "latent_format_version_0": torch.tensor([])},
        str(latent),
        metadata={
            "prompt": json.dumps(_prompt("zoo-a.safetensors")),
            "workflow": json.dumps(_workflow("zoo-a.safetensors")),
        },
    )
    return models, home, latent


def _png(path: Path, **texts: str) -> Path:
    info = PngInfo()
    for k, v in texts.items():
        info.add_text(k, v)
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(path, pnginfo=info, compress_level=4)
    return path


def test_vae_auto_picks_the_workflows_vae(setup, tmp_path):
    models, home, latent = setup
    target = models / "vae" / "zoo-a.safetensors"
    sha = file_hashes(target).sha256
    result = runner.invoke(
        app, ["decode", str(latent), "--vae", "auto", "-o", str(tmp_path / "out.png")], env=_env(home)
    )
    assert result.exit_code == 0, result.output
    assert (
        f"--vae auto: the ComfyUI prompt decoded it with vae 'zoo-a.safetensors' (VAELoader #1); found at {target}"
        in result.output
    )
    assert f"sha256 {sha}" in result.output
    meta = read_png_metadata(tmp_path / "out.png")
    assert meta["vae_sha256"] == sha and meta["vae_name"] == str(target)
    check = runner.invoke(app, ["check", str(latent), "--vae", "auto"], env=_env(home))
    assert check.exit_code == 0 and f"found at {target}" in check.output, check.output
    moved = runner.invoke(
        app,
        ["transfer", str(latent), "--from-vae", "auto", "--to-vae", "zoo-b", "-o", str(tmp_path / "moved.latent")],
        env=_env(home),
    )
    assert (
        moved.exit_code == 0
        and "--from-vae auto: the ComfyUI prompt decoded it with vae 'zoo-a.safetensors'" in moved.output
    ), moved.output


def test_which_png_workflow_and_a1111_vae_hash(setup, tmp_path):
    models, home, _ = setup
    target = models / "vae" / "zoo-a.safetensors"
    png = _png(
        tmp_path / "ComfyUI_00001_.png",
        prompt=json.dumps(_prompt("zoo-a.safetensors")),
        workflow=json.dumps(_workflow("zoo-a.safetensors")),
    )
    result = runner.invoke(app, ["library", "which", str(png)], env=_env(home))
    assert result.exit_code == 0, result.output
    assert (
        f"--vae auto: {target}" in result.output
        and "the ComfyUI prompt decoded it with vae 'zoo-a.safetensors'" in result.output
    )
    only_ui = _png(tmp_path / "ComfyUI_00002_.png", workflow=json.dumps(_workflow("zoo-a.safetensors")))
    out = json.loads(runner.invoke(app, ["library", "which", str(only_ui), "--json"], env=_env(home)).output)
    assert out["vae_auto"]["path"] == str(target) and out["vae_auto"]["evidence"]["source"] == "ComfyUI workflow"
    # A1111 names the VAE by a file name this machine does not have, and its "VAE hash" (sha256[:10])
    short = file_hashes(target).autov2
    params = (
        "an astronaut\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 64x64, "
        f"VAE hash: {short}, VAE: my-renamed-vae.safetensors, Version: v1.10.1"
    )
    a1111 = _png(tmp_path / "00001-1.png", parameters=params)
    out = json.loads(runner.invoke(app, ["library", "which", str(a1111), "--json"], env=_env(home)).output)
    assert out["vae_auto"]["path"] == str(target) and f"matched by sha256 {short}" in out["vae_auto"]["reasons"][0]
    nothing = _png(tmp_path / "plain.png")
    result = runner.invoke(app, ["library", "which", str(nothing)], env=_env(home))
    assert result.exit_code == 1 and "names no VAE or checkpoint" in result.output


def test_vae_auto_refuses_when_nothing_matches(setup, tmp_path, zoo_latent):
    _, home, _ = setup
    latent = tmp_path / "other_00001_.latent"
    safetensors.torch.save_file(
        {"latent_tensor": zoo_latent.contiguous(), "latent_format_version_0": torch.tensor([])},
        str(latent),
        metadata={"prompt": json.dumps(_prompt("sdxl_vae.safetensors"))},
    )
    result = runner.invoke(app, ["decode", str(latent), "--vae", "auto", "-o", str(tmp_path / "x.png")], env=_env(home))
    assert result.exit_code == 1
    assert (
        "no usable local file" in result.output
        and "looked for vae 'sdxl_vae.safetensors' (ComfyUI prompt, decoded, encoded)" in result.output
    )
    assert not (tmp_path / "x.png").exists()
    check = runner.invoke(app, ["check", str(latent), "--vae", "auto"], env=_env(home))
    assert check.exit_code == 2 and "could not check" in check.output


def test_library_list_find_json(setup):
    models, home, _ = setup
    listed = json.loads(runner.invoke(app, ["library", "list", "--json"], env=_env(home)).output)
    assert sorted(e["name"] for e in listed["entries"]) == ["zoo-a.safetensors", "zoo-b.safetensors"]
    sha = file_hashes(models / "vae" / "zoo-b.safetensors").sha256
    found = runner.invoke(app, ["library", "find", sha[:10]], env=_env(home))
    assert found.exit_code == 0 and "zoo-b.safetensors" in found.output and "zoo-a.safetensors" not in found.output
    missing = runner.invoke(app, ["library", "find", "nothing-like-this"], env=_env(home))
    assert missing.exit_code == 1 and "nothing in" in missing.output
    rescan = json.loads(runner.invoke(app, ["library", "scan", str(models), "--json"], env=_env(home)).output)
    assert (rescan["unchanged"], rescan["hashed"]) == (2, 0)
    explicit = runner.invoke(app, ["library", "list", "--home", str(home)], env={"COLUMNS": "200"})
    assert explicit.exit_code == 0 and "2 files in" in explicit.output
