"""Comparisons: metrics, the compatible vs incompatible decode on real SD1 weights, and the grid picture."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import pytest
import torch
from PIL import Image

from latentbridge import comparison as C
from latentbridge.errors import ShapeError
from latentbridge.formats import get_format
from latentbridge.latent import Latent
from latentbridge.photos import photo_tensor
from latentbridge.previews import to_pil


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensor ops on a shared 2-core machine run ~100× faster on one intra-op thread; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_colourfulness_of_known_images():
    assert C.colourfulness(torch.full((3, 8, 8), 0.5)) == 0.0
    red = torch.zeros(3, 8, 8)
    red[0] = 1.0
    # rg = 255, yb = 127.5, no spread: M = 0.3·sqrt(255² + 127.5²)
    assert C.colourfulness(red) == pytest.approx(0.3 * math.hypot(255, 127.5), rel=1e-12)
    with pytest.raises(ShapeError, match=r"colourfulness takes one RGB image \[3, H, W\]"):
        C.colourfulness(torch.zeros(1, 3, 8, 8))


def test_dynamic_range_of_known_images():
    assert C.dynamic_range(torch.full((3, 8, 8), 0.3)) == pytest.approx(0.0, abs=1e-12)
    half = torch.zeros(3, 8, 8)
    half[:, :4] = 1.0
    assert C.dynamic_range(half) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ShapeError, match=r"dynamic_range takes one RGB image \[3, H, W\]"):
        C.dynamic_range(torch.zeros(8, 8))


@pytest.fixture(scope="module")
def sd1_setup(shared_weights):
    weights = pytest.importorskip("latentbridge.weights", reason="latentbridge.weights (load_vae) not in this build")
    codec = pytest.importorskip("latentbridge.codec", reason="latentbridge.codec not in this build")
    torch.set_num_threads(1)
    light = weights.load_vae([shared_weights / "vaelight-sd1" / n for n in ("VAEencoder.onnx", "VAEpreview.onnx")])
    approx = {k: weights.load_vae(shared_weights / "vaeapprox" / f"vaeapprox-{k}.pt") for k in ("sd1", "sdxl", "sd3")}
    photo = photo_tensor("chelsea", 128)
    latent = codec.encode(light, photo)  # raw SD1, provenance names VAElight
    return light, approx, latent, (photo + 1) / 2


def test_the_right_decoder_wins_and_the_wrong_ones_say_why(sd1_setup):
    light, approx, latent, _ = sd1_setup
    result = C.compare(latent, [approx["sd1"], approx["sdxl"], approx["sd3"], light])
    sd1, sdxl, sd3, own = result.candidates
    assert result.reference.startswith(f"decode of {light.name} (named in the latent's provenance)")
    assert math.isinf(own.psnr) and own.error == ""
    assert sd1.image.shape == (3, 32, 32) and not sd1.relabelled  # VAEApprox decodes at 2× the latent
    assert sdxl.relabelled and sdxl.format == "sdxl"
    # measured on chelsea at 256 px: VAEApprox-SD1 24.1 dB vs VAEApprox-SDXL (wrong latent space) 16.6 dB
    assert sd1.psnr > sdxl.psnr + 3
    assert sd1.colourfulness > sdxl.colourfulness  # the wrong space washes the colours out
    assert sd3.image is None and "cannot even be fed to this decoder" in sd3.error and sd3.psnr is None
    if sd1.verdict:  # latentbridge.checks is available: it calls the mix-ups
        assert (sd1.verdict, sdxl.verdict, sd3.verdict) == ("ok", "error", "error")


def test_reference_image_and_first_candidate_references(sd1_setup):
    light, approx, latent, photo = sd1_setup
    result = C.compare(latent, [light, approx["sd1"]], reference=photo, reference_name="chelsea")
    assert result.reference.startswith("chelsea (resized to each decode's size")
    # VAElight round trip of a 128 px photo: ~22 dB; a broken decode would be < 12 dB
    assert 18 < result.candidates[0].psnr < 40
    anonymous = latent.replace(provenance=dataclasses.replace(latent.provenance, vae_sha256=""))
    first = C.compare(anonymous, [approx["sd1"], light])
    assert first.reference.startswith(f"decode of {approx['sd1'].name} (the first candidate that decoded)")


def test_compare_argument_errors(sd1_setup):
    light, _, latent, _ = sd1_setup
    with pytest.raises(ValueError, match="compare needs at least one VAE"):
        C.compare(latent, [])
    with pytest.raises(ShapeError, match="item 3 / frame 0 out of range: the latent has 1 items and 1 frames"):
        C.compare(latent, [light], item=3)
    with pytest.raises(ShapeError, match=r"the reference image must be \[3, H, W\]"):
        C.compare(latent, [light], reference=torch.zeros(4, 8, 8))


def _fake_comparison() -> C.Comparison:
    g = torch.Generator().manual_seed(0)
    good = C.Candidate("a/good.pt", "", "sd1", torch.rand(3, 140, 160, generator=g), math.inf, 40.0, 0.8, False,
                       "ok", (), "")  # fmt: skip
    bad = C.Candidate("bad.pt", "", "sdxl", torch.rand(3, 140, 160, generator=g), 14.2, 12.0, 0.5, True, "error",
                      ("error: family-mismatch",), "")  # fmt: skip
    none = C.Candidate("sd3.pt", "", "sd3", None, None, None, None, True, "error", (), "reads 16-channel latents")
    return C.Comparison((good, bad, none), "decode of a/good.pt (the first candidate that decoded)", 0, 0)


def test_grid_holds_each_decode_its_caption_and_the_numbers():
    comp = _fake_comparison()
    grid = C.comparison_grid(comp, gap=6)
    column = max(160, C._MIN_COLUMN)
    assert grid.size == (3 * column + 2 * 6, 140 + C.CAPTION_LINES * C._LINE + 4)
    for i, cand in enumerate(comp.candidates[:2]):
        x0 = i * (column + 6)
        assert grid.crop((x0, 0, x0 + 160, 140)).tobytes() == to_pil(cand.image).tobytes()  # pasted as decoded
    grey = grid.crop((2 * (column + 6), 0, 2 * (column + 6) + 160, 140))
    assert grey.getextrema() == ((128, 128), (128, 128), (128, 128))  # the undecodable one: a grey tile
    caption = grid.crop((0, 140, column, grid.size[1])).convert("L")
    assert caption.getextrema()[0] < 100  # text was drawn under the tile
    assert C.caption_lines(comp.candidates[0], comp)[:2] == ["good.pt", "the reference"]
    assert C.caption_lines(comp.candidates[1], comp)[1] == "latent read as sdxl"
    assert C.caption_lines(comp.candidates[2], comp)[1].startswith("cannot decode: reads 16-channel")
    png = C.grid_png(grid)
    with Image.open(io.BytesIO(png)) as back:
        data = json.loads(back.text["latentbridge"])
    assert [c["name"] for c in data["candidates"]] == ["a/good.pt", "bad.pt", "sd3.pt"]
    assert data["candidates"][0]["psnr_db"] == "inf" and data["candidates"][1]["psnr_db"] == 14.2


def test_small_decodes_are_enlarged_by_whole_multiples():
    comp = _fake_comparison()
    small = dataclasses.replace(comp.candidates[0], image=torch.rand(3, 32, 40))
    grid = C.comparison_grid(dataclasses.replace(comp, candidates=(small,)), tile=128)
    tile = grid.crop((0, 0, 160, 128))
    assert tile.tobytes() == to_pil(small.image).resize((160, 128), Image.Resampling.NEAREST).tobytes()


def test_compare_a_video_frame_with_a_tiny_random_decoder():
    from latentbridge.vae import VAE

    fmt = get_format("wan21")

    def decode(z: torch.Tensor) -> torch.Tensor:  # a 'decoder' that shows channel 0 as grey, 8× nearest
        return z[:, :1].repeat(1, 3, 1, 1, 1).repeat_interleave(8, -1).repeat_interleave(8, -2).tanh()

    vae = VAE("toy", "", "toy", fmt, "model", 16, 8, 3, None, decode)
    x = torch.zeros(1, 16, 3, 4, 4)
    x[:, 0, 1] = 1.0  # only frame 1 is bright
    result = C.compare(Latent(x, fmt, "model", "NCTHW"), [vae], frame=1)
    assert result.frame == 1 and float(result.candidates[0].image.min()) > 0.8
