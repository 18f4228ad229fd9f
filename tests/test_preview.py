"""Previews: published factors over the registry, least-squares fits, the fits folder, tiny decoders, grids."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from latentbridge import previews as P
from latentbridge.errors import FileFormatError, IncompatibleError, LatentBridgeError, ShapeError
from latentbridge.formats import NormStats, formats, get_format, latent_shape
from latentbridge.latent import Latent, Provenance
from latentbridge.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, photo_tensor

WITH_RGB = [f for f in formats().values() if f.rgb_factors]
WITHOUT_RGB = [f for f in formats().values() if not f.rgb_factors]
SHA_A = "a" * 64
SHA_B = "b" * 64


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensor ops on a shared 2-core machine run ~100× faster on one intra-op thread; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _stats(fmt, seed: int = 0) -> NormStats | None:
    if fmt.norm_source != "vae":
        return None
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(fmt.model_channels, generator=g) * 0.5
    var = torch.rand(fmt.model_channels, generator=g) * 2 + 0.5
    return NormStats.from_running(mean, var, fmt.norm_eps, "test statistics")


def _model_latent(fmt, size: int = 64, batch: int = 2, seed: int = 0) -> Latent:
    frames = None if fmt.dims == 2 else 2 * fmt.temporal_ratio + 1  # three latent frames
    shape = latent_shape(fmt, size, size, batch=batch, frames=frames, space="model")
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    return Latent(x, fmt, "model", fmt.layout, stats=_stats(fmt, seed))


# --- published factors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", WITH_RGB, ids=lambda f: f.name)
def test_rgb_preview_shape_range_and_numbers(fmt):
    size = max(64, 4 * fmt.model_spatial_ratio)  # at least 4×4 latent cells, also for the 32× formats
    lat = _model_latent(fmt, size=size)
    out = P.rgb_preview(lat)
    frames = lat.dim("T")
    side = size // fmt.spatial_ratio  # unpacked resolution, also for FLUX.2's packed model space
    assert out.shape == (2 * frames, 3, side, side)
    assert out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float(out.std()) > 0.01  # not a flat picture
    # one cell by hand: rgb = z @ F + bias, then [-1, 1] -> [0, 1]
    z = P.preview_space_latent(lat)[0, :, 1, 2].double()
    by_hand = ((z @ torch.tensor(fmt.rgb_factors).double() + torch.tensor(fmt.rgb_bias).double() + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(out[0, :, 1, 2].double(), by_hand, atol=1e-5, rtol=0)  # float32 einsum vs float64


@pytest.mark.parametrize("fmt", WITH_RGB, ids=lambda f: f.name)
def test_rgb_preview_is_the_same_from_raw_space(fmt):
    lat = _model_latent(fmt)
    raw = lat.to_space("raw")
    # raw -> model in float32 (scale, shift, per-channel mean/std) loses ~1e-6 relative; previews are in [0, 1]
    torch.testing.assert_close(P.rgb_preview(raw), P.rgb_preview(lat), atol=2e-5, rtol=0)


@pytest.mark.parametrize("fmt", WITHOUT_RGB, ids=lambda f: f.name)
def test_formats_without_published_factors_say_how_to_get_some(fmt):
    lat = _model_latent(fmt, size=fmt.size_multiple * 2, batch=1)
    with pytest.raises(
        LatentBridgeError, match=rf"format '{fmt.name}' has no published latent→RGB factors.*fit-preview"
    ):
        P.rgb_preview(lat)


def test_preview_needs_format_and_space():
    with pytest.raises(ValueError, match=r"format is unknown.*--format NAME"):
        P.rgb_preview(Latent(torch.zeros(1, 4, 8, 8), space="raw"))
    with pytest.raises(ValueError, match=r"space is unknown.*--space raw\|model"):
        P.rgb_preview(Latent(torch.zeros(1, 4, 8, 8), get_format("sd1")))


def test_flux2_raw_preview_needs_the_vae_statistics():
    fmt = get_format("flux2")
    raw = _model_latent(fmt).to_space("raw").replace(stats=None)
    with pytest.raises(ValueError, match="pass stats=NormStats"):
        P.rgb_preview(raw)


def test_video_frames_are_folded_batch_major():
    fmt = get_format("wan21")
    lat = _model_latent(fmt, batch=2)
    out = P.rgb_preview(lat)
    frames = lat.dim("T")
    for b in range(2):
        for t in range(frames):
            one = lat.replace(tensor=lat.tensor[b : b + 1, :, t : t + 1])
            torch.testing.assert_close(out[b * frames + t], P.rgb_preview(one)[0])  # same arithmetic: exact


# --- least squares --------------------------------------------------------------------------------------


def test_fit_linear_recovers_known_factors():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 6, 16, 16, generator=g)
    factors = torch.randn(6, 3, generator=g) * 0.05
    bias = torch.tensor([0.1, -0.2, 0.05])
    rgb = torch.einsum("nchw,ck->nkhw", z, factors) + bias.view(1, 3, 1, 1)
    assert float(rgb.abs().max()) < 1  # inside [-1, 1]: no clamping, so the map is exactly linear
    images = F.interpolate((rgb + 1) / 2, scale_factor=8, mode="nearest")  # area-downsampling undoes this exactly
    got_f, got_b, quality, cells = P.fit_linear([z], [images])
    assert cells == 2 * 16 * 16
    # the images are float32: the solution is exact up to float32 rounding of the targets (~1e-7)
    torch.testing.assert_close(got_f, factors, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_b, bias, atol=1e-5, rtol=0)
    assert quality > 80  # float32 rounding only


def test_fit_linear_refuses_bad_input():
    z = torch.randn(1, 4, 2, 2)
    with pytest.raises(ValueError, match=r"only 4 latent cells for 5 unknowns"):
        P.fit_linear([z], [torch.rand(1, 3, 16, 16)])
    with pytest.raises(ShapeError, match=r"fit_linear needs latents \[N, 4, h, w\] and images \[N, 3, H, W\]"):
        P.fit_linear([torch.randn(1, 4, 8, 8)], [torch.rand(1, 4, 64, 64)])
    bad = torch.randn(1, 4, 8, 8)
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        P.fit_linear([bad], [torch.rand(1, 3, 64, 64)])
    with pytest.raises(ValueError, match="one image batch per latent batch"):
        P.fit_linear([z], [])


def _codec():
    return pytest.importorskip("latentbridge.codec", reason="latentbridge.codec (encode/decode) not in this build")


def _taef2(shared_weights: Path):
    weights = pytest.importorskip("latentbridge.weights", reason="latentbridge.weights (load_vae) not in this build")
    folder = shared_weights / "taef2"
    return weights.load_vae([folder / "taef2_encoder.pth", folder / "taef2_decoder.pth"])


def test_fitted_factors_beat_published_ones_on_taef2(shared_weights):
    """FLUX.2 (TAEF2): fitted vs ComfyUI's factors, PSNR against the TAEF2 decode of held-out photos."""
    codec = _codec()
    vae = _taef2(shared_weights)
    size = 128
    names = TRAIN_PHOTOS[:6]
    fit = P.fit_preview(vae, [(photo_tensor(n, size) + 1) / 2 for n in names], names)
    assert fit.format == "flux2" and fit.space == "model" and fit.channels == 32
    assert fit.images == names and fit.cells == 6 * (size // 8) ** 2
    assert fit.published_psnr is not None and fit.fit_psnr > fit.published_psnr  # least squares wins on its own data
    fitted, published = [], []
    for name in HELDOUT_PHOTOS:
        lat = codec.encode(vae, photo_tensor(name, size))
        truth = F.interpolate(codec.decode(vae, lat), scale_factor=1 / 8, mode="area")
        fitted.append(P._pooled_psnr(P.fitted_previewer(fit)(lat), truth))
        published.append(P._pooled_psnr(P.rgb_preview(lat), truth))
    # measured: fitted 18.0 dB vs published 16.7 dB mean over astronaut/chelsea/flower at 128 px
    assert sum(fitted) / 3 >= sum(published) / 3


def test_fitted_factors_beat_or_match_the_zoo_factors():
    from latentbridge import zoo

    if not zoo.zoo_info():
        pytest.skip("the zoo is not trained yet (src/latentbridge/zoo/zoo.json missing)")
    codec = _codec()
    load_vae = pytest.importorskip("latentbridge.weights", reason="latentbridge.weights not in this build").load_vae

    size = 128
    for name in zoo.ZOO_NAMES:
        vae = load_vae(name)
        names = TRAIN_PHOTOS[:6]
        fit = P.fit_preview(vae, [(photo_tensor(n, size) + 1) / 2 for n in names], names)
        fitted, published = [], []
        for photo in HELDOUT_PHOTOS:
            lat = codec.encode(vae, photo_tensor(photo, size))
            truth = F.interpolate(codec.decode(vae, lat), scale_factor=1 / 8, mode="area")
            fitted.append(P._pooled_psnr(P.fitted_previewer(fit)(lat), truth))
            published.append(P._pooled_psnr(P.rgb_preview(lat), truth))
        # the zoo's own factors are a least-squares fit too (on more crops): matching within 0.5 dB counts
        assert sum(fitted) / 3 >= sum(published) / 3 - 0.5, name


# --- the fits folder ------------------------------------------------------------------------------------


def _fit(sha: str = SHA_A, fmt: str = "sd1", created: str = "2026-01-01T00:00:00+00:00", scale: float = 1.0):
    fmt_obj = get_format(fmt)
    rows = tuple((0.1 * scale * (i + 1), -0.05 * scale, 0.02 * scale) for i in range(fmt_obj.channels))
    return P.PreviewFit(sha, f"vae-{sha[:4]}", fmt, "model", rows, (0.0, 0.1, -0.1), ("x",), 100, 20.0, None, created)


def test_fit_round_trips_through_the_folder_atomically(tmp_path):
    fit = _fit()
    path = P.save_fit(fit, tmp_path / "previews")
    assert path == tmp_path / "previews" / f"{SHA_A}.json"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    assert P.load_fit(path) == fit
    assert json.loads(path.read_text())["kind"] == "latentbridge-preview-fit"
    assert P.list_fits(tmp_path / "previews") == [fit]
    assert P.list_fits(tmp_path / "missing") == []


def test_fits_are_found_by_provenance_then_format(tmp_path):
    older, newer = _fit(SHA_A, created="2026-01-01T00:00:00+00:00"), _fit(SHA_B, created="2026-02-01T00:00:00+00:00")
    P.save_fit(older, tmp_path)
    P.save_fit(newer, tmp_path)
    z = torch.zeros(1, 4, 8, 8)
    by_prov = Latent(z, get_format("sd1"), "raw", provenance=Provenance(vae_sha256=SHA_A))
    fit, why = P.find_fit(by_prov, tmp_path)
    assert fit == older and "provenance" in why
    fit, why = P.find_fit(Latent(z, get_format("sd1"), "raw"), tmp_path)
    assert fit == newer and "the newest of 2 fits" in why
    assert P.find_fit(Latent(z, get_format("sdxl"), "raw"), tmp_path) is None
    assert P.find_fit(Latent(z, space="raw"), tmp_path) is None


def test_a_fit_of_both_halves_is_found_from_either_half(tmp_path):
    P.save_fit(_fit(f"{SHA_B}+{SHA_A}"), tmp_path)
    assert (tmp_path / f"{SHA_A}+{SHA_B}.json").is_file()  # parts sorted: one name per pair
    assert P.fit_for_vae(tmp_path, SHA_B).vae_sha256 == f"{SHA_B}+{SHA_A}"
    assert P.fit_for_vae(tmp_path, "c" * 64) is None
    assert P.fit_for_vae(tmp_path, "not-a-hash") is None


def test_fit_folder_errors(tmp_path):
    with pytest.raises(ValueError, match=r"stored under the VAE file's sha256.*got ''"):
        P.save_fit(_fit(""), tmp_path)
    bad = tmp_path / f"{SHA_A}.json"
    bad.write_text("{not json")
    with pytest.raises(
        FileFormatError, match=r"not a preview fit \(not valid JSON.*run `latentbridge fit-preview` again"
    ):
        P.load_fit(bad)
    bad.write_text(json.dumps({"kind": "something else"}))
    with pytest.raises(FileFormatError, match="is not a latentbridge preview fit"):
        P.load_fit(bad)
    data = _fit().to_dict()
    bad.write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(FileFormatError, match="of version 99, this latentbridge reads version 1"):
        P.load_fit(bad)
    bad.write_text(json.dumps({**data, "factors": [[1, 2]]}))
    with pytest.raises(FileFormatError, match="is a damaged preview fit"):
        P.load_fit(bad)
    P.save_fit(_fit(SHA_A, fmt="sdxl"), tmp_path)
    lat = Latent(torch.zeros(1, 4, 8, 8), get_format("sd1"), "raw", provenance=Provenance(vae_sha256=SHA_A))
    with pytest.raises(IncompatibleError, match="whose preview fit reads sdxl latents, but the latent is labelled sd1"):
        P.find_fit(lat, tmp_path)


def test_fitted_previewer_applies_the_factors_and_checks_the_format():
    fit = _fit(scale=2.0)
    lat = _model_latent(get_format("sd1"), batch=1)
    out = P.fitted_previewer(fit)(lat)
    expect = P.apply_linear(lat.tensor, torch.tensor(fit.factors), torch.tensor(fit.bias))
    torch.testing.assert_close(out, expect)  # same arithmetic: exact
    with pytest.raises(IncompatibleError, match="reads sd1 latents, this latent is sdxl"):
        P.fitted_previewer(fit)(lat.replace(format="sdxl"))


# --- choosing -------------------------------------------------------------------------------------------


def test_choose_previewer_auto_prefers_a_fit_then_published_factors(tmp_path):
    lat = _model_latent(get_format("sd1"), batch=1)
    previewer, why = P.choose_previewer(lat, "auto", fits_dir=tmp_path)
    assert previewer is P.rgb_preview and why.startswith("published factors for sd1")
    P.save_fit(_fit(), tmp_path)
    previewer, why = P.choose_previewer(lat, "auto", fits_dir=tmp_path)
    assert why.startswith("fitted factors") and not torch.equal(previewer(lat), P.rgb_preview(lat))
    previewer, why = P.choose_previewer(lat, "rgb", fits_dir=tmp_path)
    assert previewer is P.rgb_preview


def test_choose_previewer_auto_with_a_vae_prefers_its_fit_then_the_decoder(tmp_path):
    from latentbridge.vae import VAE

    lat = _model_latent(get_format("sd1"), batch=1)
    decoder = VAE("toy.pt", SHA_B, "toy", get_format("sd1"), "model", 4, 8, 2, None, lambda z: z[:, :3].tanh())
    P.save_fit(_fit(SHA_A), tmp_path)  # a fit for another sd1 VAE: not this decoder's
    _, why = P.choose_previewer(lat, "auto", vae=decoder, fits_dir=tmp_path)
    assert why == "decoder toy.pt (toy)"
    P.save_fit(_fit(SHA_B), tmp_path)
    _, why = P.choose_previewer(lat, "auto", vae=decoder, fits_dir=tmp_path)
    assert why == f"fitted factors: fit for VAE vae-{SHA_B[:4]}"


def test_choose_previewer_errors(tmp_path):
    lat = _model_latent(get_format("sd1"), batch=1)
    with pytest.raises(ValueError, match="unknown preview method 'fast'"):
        P.choose_previewer(lat, "fast")
    with pytest.raises(LatentBridgeError, match=r"no fitted preview factors.*run `latentbridge fit-preview"):
        P.choose_previewer(lat, "fitted", fits_dir=tmp_path)
    with pytest.raises(ValueError, match="--method tiny needs --vae FILE"):
        P.choose_previewer(lat, "tiny")
    sana = _model_latent(get_format("sana"), batch=1)
    with pytest.raises(LatentBridgeError, match="no preview for this sana latent"):
        P.choose_previewer(sana, "auto", fits_dir=tmp_path)


# --- tiny decoders --------------------------------------------------------------------------------------


def test_tiny_preview_with_taef2_reproduces_the_photo(shared_weights):
    codec = _codec()
    vae = _taef2(shared_weights)
    photo = photo_tensor("astronaut", 128)
    lat = codec.encode(vae, photo)
    previewer, why = P.choose_previewer(lat, "tiny", vae=vae)
    out = previewer(lat)
    assert out.shape == (1, 3, 128, 128) and "taesd" in why
    # TAEF2 round trip: ~29.5 dB at 256 px (FACTS.md); 128 px photos are busier, 24 dB is a safe floor
    assert P._pooled_psnr(out, (photo + 1) / 2) > 24


def test_tiny_preview_with_vaeapprox_is_twice_the_latent_size(shared_weights):
    weights = pytest.importorskip("latentbridge.weights", reason="latentbridge.weights (load_vae) not in this build")
    vae = weights.load_vae(shared_weights / "vaeapprox" / "vaeapprox-sd1.pt")
    lat = Latent(torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), get_format("sd1"), "model")
    out = P.tiny_previewer(vae)(lat)
    assert out.shape == (2, 3, 16, 16) and float(out.min()) >= 0 and float(out.max()) <= 1
    with pytest.raises(IncompatibleError, match=r"the latent is sdxl but VAE .* reads sd1 latents"):
        P.tiny_previewer(vae)(lat.replace(format="sdxl"))


# --- pictures -------------------------------------------------------------------------------------------


def test_image_grid_places_each_image_and_upscales_exactly():
    images = torch.rand(5, 3, 4, 6, generator=torch.Generator().manual_seed(0))
    grid = P.image_grid(images, columns=2, upscale=3, gap=2)
    assert grid.size == (2 * 18 + 2, 3 * 12 + 2 * 2)
    tile = P.to_pil(images[3]).resize((18, 12), 0)  # nearest
    assert grid.crop((20, 14, 38, 26)).tobytes() == tile.tobytes()
    assert grid.getpixel((30, 35)) == (255, 255, 255)  # the empty sixth cell stays white
    assert P.preview_grid(images, frames=5).size == (5 * 6 + 4 * 2, 4)
    with pytest.raises(ShapeError, match=r"image_grid takes \[N, 3, H, W\] images"):
        P.image_grid(torch.rand(3, 4, 4), 1)


def test_to_pil_rounds_and_writes_atomically(tmp_path):
    image = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1)
    assert P.to_pil(image).getpixel((0, 0)) == (0, 128, 255)
    path = P.write_png(P.to_pil(image), tmp_path / "a" / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["p.png"]
