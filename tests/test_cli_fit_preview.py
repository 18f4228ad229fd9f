"""`latentbridge fit-preview` as a user types it: fit on a folder of photos, store per VAE, used by preview."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.photos import load_photo
from latentbridge.previews import default_fits_dir, list_fits

runner = CliRunner()


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensor ops on a shared 2-core machine run ~100× faster on one intra-op thread; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def taef2(shared_weights):
    pytest.importorskip("latentbridge.weights", reason="latentbridge.weights (load_vae) not in this build")
    return [str(shared_weights / "taef2" / f"taef2_{h}.pth") for h in ("encoder", "decoder")]


def _photo_folder(path, names=("coffee", "rocket", "china")):
    path.mkdir()
    for name in names:
        Image.fromarray(load_photo(name)).resize((150, 100)).save(path / f"{name}.png")  # not multiples of 16
    (path / "notes.txt").write_text("not an image")
    return path


def test_fit_on_a_folder_is_stored_and_used_by_preview(taef2, tmp_path):
    photos = _photo_folder(tmp_path / "photos")
    home = tmp_path / "home"
    args = ["fit-preview", "--vae", taef2[0], "--vae", taef2[1], "--images", str(photos), "--home", str(home)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fitted 32×3 factors + bias on 3 images" in result.output and "published factors" in result.output
    (fit,) = list_fits(default_fits_dir(home))
    assert fit.format == "flux2" and fit.images == ("china.png", "coffee.png", "rocket.png")
    assert fit.cells == 3 * (96 // 8) * (144 // 8)  # 100×150 centre-cropped to multiples of 16: 96×144
    stored = json.loads(next(default_fits_dir(home).glob("*.json")).read_text())
    assert np.isfinite(np.asarray(stored["factors"])).all() and len(stored["factors"]) == 32


def test_fit_on_the_bundled_photos_with_comma_joined_halves(taef2, tmp_path):
    home = tmp_path / "home"
    result = runner.invoke(
        app, ["fit-preview", "--vae", ",".join(taef2), "--photos", "--max-side", "64", "--home", str(home)]
    )
    assert result.exit_code == 0, result.output
    (fit,) = list_fits(default_fits_dir(home))
    assert len(fit.images) == 16 and fit.cells == 16 * 8 * 8
    assert fit.published_psnr is not None and fit.fit_psnr > fit.published_psnr  # least squares on its own data


def test_fit_preview_errors(taef2, tmp_path, shared_weights):
    home = ["--home", str(tmp_path / "home")]
    result = runner.invoke(app, ["fit-preview", "--vae", taef2[0], *home])
    assert result.exit_code == 2 and "pass exactly one of --images DIR or --photos" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["fit-preview", "--vae", ",".join(taef2), "--images", str(empty), *home])
    assert result.exit_code == 1 and "no .png, .jpg, .jpeg, .webp files in" in result.output
    approx = str(shared_weights / "vaeapprox" / "vaeapprox-sd1.pt")
    result = runner.invoke(app, ["fit-preview", "--vae", approx, "--photos", "--max-side", "64", *home])
    assert result.exit_code == 1 and "has no encoder" in result.output
    assert list_fits(default_fits_dir(tmp_path / "home")) == []
