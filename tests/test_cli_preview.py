"""`latentbridge preview` as a user types it: published, fitted and tiny-decoder previews of latent files."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.files import write_latent
from latentbridge.formats import get_format
from latentbridge.latent import Latent
from latentbridge.photos import photo_tensor
from latentbridge.previews import PreviewFit, default_fits_dir, save_fit

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def files(shared_weights, tmp_path_factory):
    """A FLUX.2 latent of a photo (TAEF2, safetensors), a Wan 2.1 video latent and a Sana latent."""
    from latentbridge import codec, weights

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("latents")
    taef2 = weights.load_vae([shared_weights / "taef2" / f"taef2_{h}.pth" for h in ("encoder", "decoder")])
    flux2 = codec.encode(taef2, photo_tensor("astronaut", 128))
    write_latent(flux2, folder / "astronaut_flux2.safetensors", container="safetensors")
    g = torch.Generator().manual_seed(0)
    video = Latent(torch.randn(1, 16, 3, 8, 8, generator=g), get_format("wan21"), "model", "NCTHW")
    write_latent(video, folder / "video.safetensors", container="safetensors")
    sana = Latent(torch.randn(1, 32, 4, 4, generator=g), get_format("sana"), "model")
    write_latent(sana, folder / "sana.safetensors", container="safetensors")
    return folder, taef2


def test_published_preview_of_a_flux2_latent(files, tmp_path):
    folder, _ = files
    out = tmp_path / "p.png"
    args = ["preview", str(folder / "astronaut_flux2.safetensors"), "-o", str(out), "--upscale", "2"]
    result = runner.invoke(app, [*args, "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    assert "published factors for flux2" in result.output
    with Image.open(out) as image:
        assert image.size == (32, 32)  # 128 px / 8 (unpacked) × 2
        lo, hi = zip(*image.getextrema(), strict=True)
        assert max(hi) - min(lo) > 50  # a picture, not a flat square


def test_video_preview_is_a_grid_of_frames(files, tmp_path):
    folder, _ = files
    out = tmp_path / "v.png"
    result = runner.invoke(app, ["preview", str(folder / "video.safetensors"), "-o", str(out), "--method", "rgb"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.size == (3 * 8 + 2 * 2, 8)  # three latent frames side by side, 2 px apart


def test_tiny_preview_with_the_taef2_decoder_file(files, tmp_path, shared_weights):
    folder, _ = files
    out = tmp_path / "t.png"
    decoder = shared_weights / "taef2" / "taef2_decoder.pth"
    args = ["preview", str(folder / "astronaut_flux2.safetensors"), "-o", str(out), "--method", "tiny"]
    result = runner.invoke(app, [*args, "--vae", str(decoder)])
    assert result.exit_code == 0, result.output
    assert "taef2_decoder.pth" in result.output
    with Image.open(out) as image:
        assert image.size == (128, 128)


def test_auto_uses_a_stored_fit_for_the_latents_vae(files, tmp_path):
    folder, taef2 = files
    rows = tuple((0.1, 0.1, 0.1) for _ in range(32))
    fit = PreviewFit(taef2.sha256, taef2.name, "flux2", "model", rows, (0.0, 0.0, 0.0), (), 0, 0.0, None, "now")
    save_fit(fit, default_fits_dir(tmp_path / "home"))
    out = tmp_path / "f.png"
    result = runner.invoke(
        app,
        ["preview", str(folder / "astronaut_flux2.safetensors"), "-o", str(out)],
        env={"LATENTBRIDGE_HOME": str(tmp_path / "home")},
    )
    assert result.exit_code == 0, result.output
    assert "fitted factors: fit for the VAE named in the latent's provenance" in result.output


def test_preview_errors(files, tmp_path):
    folder, _ = files
    out = str(tmp_path / "x.png")
    home = ["--home", str(tmp_path / "home")]
    result = runner.invoke(app, ["preview", str(folder / "video.safetensors"), "-o", out, "--method", "fast"])
    assert result.exit_code == 2 and "expected one of auto, rgb, fitted, tiny" in result.output
    result = runner.invoke(app, ["preview", str(folder / "video.safetensors"), "-o", out, "--method", "tiny"])
    assert result.exit_code == 1 and "--method tiny needs --vae FILE" in result.output
    result = runner.invoke(app, ["preview", str(folder / "sana.safetensors"), "-o", out, *home])
    assert result.exit_code == 1 and "no preview for this sana latent" in result.output
    result = runner.invoke(app, ["preview", str(folder / "missing.latent"), "-o", out])
    assert result.exit_code == 1 and "missing.latent" in result.output
    assert not (tmp_path / "x.png").exists()
