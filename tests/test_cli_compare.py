"""`latentbridge compare` as a user types it: one SD1 latent through the right and the wrong decoders."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.files import write_latent
from latentbridge.photos import load_photo, photo_tensor

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def sd1(shared_weights, vaelight_files, tmp_path_factory):
    """chelsea encoded by VAElight (raw SD1) as a ComfyUI-loadable .latent, and the candidate decoder files."""
    from latentbridge import codec, weights

    torch.set_num_threads(1)
    light = vaelight_files
    latent = codec.encode(weights.load_vae(light), photo_tensor("chelsea", 128))
    folder = tmp_path_factory.mktemp("cmp")
    path = write_latent(latent, folder / "chelsea.latent")
    approx = {k: str(shared_weights / "vaeapprox" / f"vaeapprox-{k}.pt") for k in ("sd1", "sdxl", "sd3")}
    return path, str(light[1]), approx


def test_compare_writes_the_grid_and_prints_the_numbers(sd1, tmp_path):
    path, light, approx = sd1
    out = tmp_path / "grid.png"
    args = [
        "compare",
        str(path),
        "--vae",
        light,
        "--vae",
        approx["sd1"],
        "--vae",
        approx["sdxl"],
        "--vae",
        approx["sd3"],
    ]
    result = runner.invoke(app, [*args, "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    names = [c["name"].rsplit("/", 1)[-1] for c in data["candidates"]]
    assert names == ["VAEpreview.onnx", "vaeapprox-sd1.pt", "vaeapprox-sdxl.pt", "vaeapprox-sd3.pt"]
    own, right, wrong, unfit = data["candidates"]
    assert own["psnr_db"] == "inf" and right["psnr_db"] > wrong["psnr_db"] + 3  # measured 24.1 vs 16.6 dB at 256 px
    assert wrong["relabelled"] and unfit["error"] and unfit["psnr_db"] is None
    with Image.open(out) as grid:
        assert grid.width >= 4 * 240 and json.loads(grid.text["latentbridge"]) == data


def test_compare_against_a_reference_image(sd1, tmp_path):
    path, light, _ = sd1
    ref = tmp_path / "chelsea.png"
    Image.fromarray(load_photo("chelsea")).save(ref)
    out = tmp_path / "grid.png"
    result = runner.invoke(
        app, ["compare", str(path), "--vae", light, "--reference", str(ref), "-o", str(out)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "PSNR against chelsea.png" in result.output and out.is_file()


def test_compare_needs_a_vae(sd1, tmp_path):
    path, _, _ = sd1
    result = runner.invoke(app, ["compare", str(path), "-o", str(tmp_path / "g.png")])
    assert result.exit_code == 2 and "--vae" in result.output
    result = runner.invoke(
        app, ["compare", str(path), "--vae", str(tmp_path / "none.pt"), "-o", str(tmp_path / "g.png")]
    )
    assert result.exit_code == 1 and "none.pt" in result.output
    assert not (tmp_path / "g.png").exists()
