"""bridge: closed-form linear map, conv bridge training, files, and refusal of latents of the wrong family.

Fast tests use tiny random-weight diffusers AutoencoderKLs (a fixed function of the image is all a bridge needs
to learn); the quality test uses the zoo VAEs and skips, naming what is missing, until they exist.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentbridge.bridge import (
    Bridge,
    BridgeConfig,
    BridgeNet,
    FitResult,
    NamedImage,
    check_bridge_tensor,
    fit_bridge,
    load_bridge,
    load_images,
    plot_curve,
    random_views,
    save_bridge,
    solve_linear,
)
from latentbridge.errors import FileFormatError, IncompatibleError, LatentBridgeError, ShapeError
from latentbridge.formats import get_format
from latentbridge.latent import Latent, Provenance
from latentbridge.photos import TRAIN_PHOTOS, load_photo
from latentbridge.vae import VAE, from_autoencoder_kl

# --- tiny random-weight VAEs ----------------------------------------------------------------------------


def tiny_kl(channels: int, levels: int, seed: int, name: str, fmt: str | None, sha: str) -> VAE:
    """A random-weight AutoencoderKL with 2**(levels-1)× downsampling, wrapped as a VAE value."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=["DownEncoderBlock2D"] * levels,
            up_block_types=["UpDecoderBlock2D"] * levels,
            block_out_channels=[8] * levels,
            layers_per_block=1,
            latent_channels=channels,
            norm_num_groups=4,
            mid_block_add_attention=False,
        )
    return from_autoencoder_kl(model, name=name, fmt=get_format(fmt) if fmt else None, sha256=sha)


def derived(src: VAE, name: str, fmt: str | None, channels: int, ratio_factor: int = 1, seed: int = 0) -> VAE:
    """A VAE whose latents are a known nonlinear, spatial function of ``src``'s: what a bridge must learn.

    ``encode(x) = cat(A·z, tanh(conv3x3(z)))`` on ``z = src.encode(x)`` (pixel-unshuffled by ``ratio_factor``
    first), with fixed random ``A`` (invertible) and conv; ``decode`` inverts the linear part, so the target
    decodes back to real images.
    """
    gen = torch.Generator().manual_seed(seed)
    cin = src.channels * ratio_factor**2
    a = torch.linalg.qr(torch.randn(cin, cin, generator=gen))[0]  # orthogonal: A⁻¹ = Aᵀ
    conv = torch.randn(channels - cin, cin, 3, 3, generator=gen) / (3 * cin**0.5)

    def encode(x: torch.Tensor) -> torch.Tensor:
        z = src.encode(x)
        z = torch.nn.functional.pixel_unshuffle(z, ratio_factor) if ratio_factor > 1 else z
        lin = torch.einsum("oc,nchw->nohw", a, z)
        if channels == cin:
            return lin
        return torch.cat([lin, torch.tanh(torch.nn.functional.conv2d(z, conv, padding=1))], 1)

    def decode(z: torch.Tensor) -> torch.Tensor:
        lin = torch.einsum("oc,nchw->nohw", a.T, z[:, :cin])
        return src.decode(torch.nn.functional.pixel_shuffle(lin, ratio_factor) if ratio_factor > 1 else lin)

    return dataclasses.replace(
        src,
        name=name,
        sha256=name[-1] * 64,
        architecture="synthetic",
        format=get_format(fmt) if fmt else None,
        channels=channels,
        spatial_ratio=src.spatial_ratio * ratio_factor,
        encode=encode,
        decode=decode,
    )


@pytest.fixture(scope="module")
def vae_a() -> VAE:
    return tiny_kl(4, 4, 1, "tiny-a", "sd1", "a" * 64)


@pytest.fixture(scope="module")
def vae_c(vae_a: VAE) -> VAE:
    return derived(vae_a, "tiny-c", "sd3", 16)


def small_photo(name: str, short_side: int = 96) -> np.ndarray:
    """A bundled photo resized so its short side is ``short_side`` (keeps the fast tests fast)."""
    image = Image.fromarray(load_photo(name))
    scale = short_side / min(image.size)
    return np.asarray(image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC))


@pytest.fixture(scope="module")
def images() -> tuple[NamedImage, ...]:
    return tuple(NamedImage(n, small_photo(n)) for n in TRAIN_PHOTOS[:3])


# target="image": the target latents are a known function of the source latents of the same views.
TINY = {"view_size": 48, "views_per_image": 2, "crop": 32, "windows_per_view": 6, "epochs": 6, "patience": 3}
TINY.update(hidden=16, blocks=1, batch_size=6, target="image", weighting="uniform")


@pytest.fixture(scope="module")
def fitted(vae_a: VAE, vae_c: VAE, images: tuple[NamedImage, ...]) -> FitResult:
    return fit_bridge(vae_a, vae_c, images, **TINY)


# --- the linear solve and the network -------------------------------------------------------------------


def test_solve_linear_recovers_a_known_affine_map() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, 6, 7, generator=gen)
    w, b = torch.randn(4, 3, generator=gen), torch.randn(4, generator=gen)
    y = torch.einsum("oc,nchw->nohw", w, x) + b.view(1, -1, 1, 1)
    w_fit, b_fit = solve_linear(x, y)
    # Exact data: only the 1e-6 relative ridge and float32 rounding separate the fit from the truth.
    assert torch.allclose(w_fit, w, atol=1e-4) and torch.allclose(b_fit, b, atol=1e-4)


@pytest.mark.parametrize(
    ("src_ratio", "dst_ratio", "in_hw", "out_hw"),
    [(8, 8, (6, 10), (6, 10)), (8, 16, (6, 10), (3, 5)), (16, 8, (3, 5), (6, 10)), (8, 32, (8, 4), (2, 1))],
    ids=["same", "finer-to-coarser", "coarser-to-finer", "x4"],
)
@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_bridge_net_maps_any_ratio(src_ratio: int, dst_ratio: int, in_hw: tuple, out_hw: tuple, kind: str) -> None:
    net = BridgeNet(BridgeConfig(4, 32, src_ratio, dst_ratio, hidden=8, blocks=1, kind=kind))
    assert net(torch.randn(2, 4, *in_hw)).shape == (2, 32, *out_hw)


@pytest.mark.parametrize(
    ("cfg", "fine", "body_in", "body_out"),
    [
        (BridgeConfig(4, 128, 8, 16), True, 4, 32),  # zoo -> FLUX.2 model space: predict 32 ch per 8× cell, pack
        (BridgeConfig(128, 4, 16, 8), True, 32, 4),  # FLUX.2 -> zoo: unpack to 32 ch / 8× first
        (BridgeConfig(4, 6, 8, 16), False, 16, 6),  # 6 is no multiple of 4: the body runs on the coarse grid
        (BridgeConfig(4, 16, 8, 8), False, 4, 16),
    ],
)
def test_the_body_runs_on_the_fine_grid_when_it_can(cfg: BridgeConfig, fine: bool, body_in: int, body_out: int) -> None:
    net = BridgeNet(cfg)
    assert cfg.fine_body is fine
    assert (net.body[0].in_channels, net.body[-1].out_channels) == (body_in, body_out)
    h = 4 * max(cfg.src_ratio, cfg.dst_ratio) // cfg.src_ratio
    assert net(torch.randn(1, cfg.src_channels, h, h)).shape[1] == cfg.dst_channels


def test_conv_bridge_starts_at_its_linear_map() -> None:
    net = BridgeNet(BridgeConfig(4, 16, 8, 8, hidden=8, blocks=2))
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(net.normalised(x), net.linear(x))  # the body's output layer is zero-initialised


def test_config_refuses_ratios_that_do_not_divide() -> None:
    with pytest.raises(IncompatibleError, match=r"ratios that divide one another, got 8× \(source\) and 12×"):
        BridgeConfig(4, 16, 8, 12)
    with pytest.raises(ValueError, match="bridge kind must be one of"):
        BridgeConfig(4, 16, 8, 8, kind="mlp")


# --- data -----------------------------------------------------------------------------------------------


def test_random_views_are_reproducible_and_in_range() -> None:
    image = load_photo("coffee")  # 400×600
    a = random_views(image, 3, 64, 16, torch.Generator().manual_seed(7))
    b = random_views(image, 3, 64, 16, torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert a[0].shape == (1, 3, 64, 96)  # the first view: short side 64, long side cut to 1.5×, no flip
    for v in a:
        h, w = v.shape[-2:]
        assert h % 16 == 0 and w % 16 == 0 and 64 <= min(h, w) <= 96 and max(h, w) <= 1.5 * min(h, w)
        assert v.min() >= -1 and v.max() <= 1 and v.std() > 0.05  # real photo content, not a blank


def test_random_views_upscale_small_images() -> None:
    small = np.full((20, 30, 3), 128, dtype=np.uint8)
    assert random_views(small, 1, 32, 8, torch.Generator().manual_seed(0))[0].shape == (1, 3, 32, 48)


def test_load_images_builtin_and_folders(tmp_path: Path) -> None:
    train = load_images("builtin:train")
    assert [i.name for i in train] == list(TRAIN_PHOTOS)
    Image.fromarray(load_photo("coins")).save(tmp_path / "b.png")
    Image.fromarray(load_photo("coffee")).save(tmp_path / "a.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    got = load_images(tmp_path)
    assert [i.name for i in got] == ["a.JPG", "b.png"]
    assert got[1].pixels.shape == (*load_photo("coins").shape[:2], 3)


def test_load_images_errors(tmp_path: Path) -> None:
    with pytest.raises(LatentBridgeError, match="unknown built-in image set 'builtin:tran': expected one of"):
        load_images("builtin:tran")
    with pytest.raises(LatentBridgeError, match=r"no PNG/JPEG files in .* \(found 0 other entries\)"):
        load_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="is not a folder: expected a folder of PNG/JPEG files"):
        load_images(tmp_path / "missing")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(FileFormatError, match=r"cannot read image .*broken\.png"):
        load_images(tmp_path)


# --- fitting --------------------------------------------------------------------------------------------


def test_fit_beats_the_zero_baseline(fitted: FitResult) -> None:
    s = fitted.scores
    # nmse_zero is the variance of the normalised validation targets: about 1 by construction (train stats).
    assert 0.5 < s["nmse_zero"] < 2
    assert s["nmse_linear"] < 0.8 * s["nmse_zero"]
    assert s["nmse_conv"] < 0.8 * s["nmse_zero"]
    assert math.isnan(s["nmse_identity"])  # 4 -> 16 channels: no identity baseline
    assert set(s) >= {"psnr_linear", "ssim_linear", "psnr_conv", "ssim_conv"}
    assert 1 <= len(fitted.curve) <= TINY["epochs"]


def test_fit_between_same_shaped_vaes_beats_identity(vae_a: VAE, images: tuple[NamedImage, ...]) -> None:
    other = derived(vae_a, "tiny-b", "sdxl", 4)  # a pure channel rotation: the identity is wrong, linear is exact
    result = fit_bridge(vae_a, other, images, **{**TINY, "epochs": 3})
    assert result.scores["nmse_linear"] < result.scores["nmse_identity"]
    assert result.scores["nmse_conv"] < result.scores["nmse_identity"]


def test_fit_across_spatial_ratios(vae_a: VAE, images: tuple[NamedImage, ...]) -> None:
    coarse = derived(vae_a, "tiny-16x", None, 24, ratio_factor=2)  # 16× downsampling
    result = fit_bridge(vae_a, coarse, images, **{**TINY, "epochs": 2})
    assert result.conv.config.unshuffle == 2
    assert result.conv.map(torch.randn(1, 4, 4, 6)).shape == (1, 24, 2, 3)
    assert result.scores["nmse_linear"] < result.scores["nmse_zero"]


def test_fit_records_progress_and_validation_split(vae_a: VAE, vae_c: VAE, images: tuple[NamedImage, ...]) -> None:
    events = []
    result = fit_bridge(vae_a, vae_c, images, **{**TINY, "epochs": 2}, on_event=events.append)
    assert [e.stage for e in events] == ["encode"] * 6 + ["train"] * 2
    assert events[5].done == events[5].total == 6
    data = result.conv.meta["data"]
    assert data["val_split_by"] == "image" and data["val_views"] == 2 and data["train_views"] == 4


def test_fit_targets_image_or_reencode(vae_a: VAE, images: tuple[NamedImage, ...]) -> None:
    """From a VAE to itself: its own latents of the views (identity map) vs its latents of its decodes."""
    same = fit_bridge(vae_a, vae_a, images, **{**TINY, "epochs": 1})
    again = fit_bridge(vae_a, vae_a, images, **{**TINY, "epochs": 1, "target": "reencode"})
    assert same.scores["nmse_identity"] == 0 and same.scores["nmse_linear"] < 1e-6  # exact up to float32 rounding
    assert again.scores["nmse_identity"] > 0.01  # a random-weight VAE does not reproduce its own latents
    assert same.conv.meta["data"]["target"] == "image" and again.conv.meta["data"]["target"] == "reencode"
    with pytest.raises(IncompatibleError, match="tiny-a has no decoder, so target='reencode' cannot decode"):
        fit_bridge(dataclasses.replace(vae_a, decode=None), vae_a, images, **{**TINY, "target": "reencode"})
    with pytest.raises(ValueError, match=r"target must be one of \('reencode', 'image'\), got 'pixels'"):
        fit_bridge(vae_a, vae_a, images, target="pixels")


def test_decoder_weights_follow_what_the_decoder_sees(vae_a: VAE, vae_c: VAE) -> None:
    """tiny-c decodes only its first 4 channels (the rotated tiny-a latent): the 12 others get the floor."""
    from latentbridge.bridge import decoder_weights

    z = vae_c.encode(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    w = decoder_weights(vae_c, z, z.flatten(2)[0].std(1))
    assert w.shape == (16,) and w.mean().item() == pytest.approx(1.0, abs=1e-5)  # normalised to mean 1
    # Ignored channels (zero gain) sit at the clip floor, 1/20 of the mean before renormalising.
    assert (w[4:] == w[4:].min()).all() and w[:4].min() > 5 * w[4:].max()
    assert decoder_weights(dataclasses.replace(vae_c, decode=None), z, torch.ones(16)) is None
    fitted = fit_bridge(vae_a, vae_c, [NamedImage("coffee", small_photo("coffee"))], **{**TINY, "epochs": 1,
                        "weighting": "decoder"})  # fmt: skip
    weights = fitted.conv.meta["training"]["channel_weights"]
    assert len(weights) == 16 and min(weights[:4]) > max(weights[4:])
    assert fitted.scores["wnmse_conv"] <= fitted.scores["wnmse_linear"]  # selection uses the weighted loss
    with pytest.raises(ValueError, match=r"weighting must be one of \('decoder', 'uniform'\), got 'pixel'"):
        fit_bridge(vae_a, vae_c, [NamedImage("coffee", small_photo("coffee"))], weighting="pixel")


def test_fit_argument_errors(vae_a: VAE, vae_c: VAE, images: tuple[NamedImage, ...]) -> None:
    with pytest.raises(ShapeError, match=r"crop must be a multiple of 8 px .* got 30; use 24 or 32"):
        fit_bridge(vae_a, vae_c, images, crop=30)
    with pytest.raises(ValueError, match=r"val_split must be between 0 and 1 .* got 0"):
        fit_bridge(vae_a, vae_c, images, val_split=0, crop=32)
    decoder_only = dataclasses.replace(vae_c, encode=None)
    with pytest.raises(IncompatibleError, match="tiny-c has no encoder"):
        fit_bridge(vae_a, decoder_only, images, **TINY)


# --- files ----------------------------------------------------------------------------------------------


def test_save_and_load_give_identical_outputs(fitted: FitResult, tmp_path: Path) -> None:
    path = save_bridge(fitted, tmp_path / "a2c.safetensors")
    x = torch.randn(2, 4, 5, 7, generator=torch.Generator().manual_seed(3))
    for kind, fresh in (("conv", fitted.conv), ("linear", fitted.linear)):
        loaded = load_bridge(path, kind=kind)
        assert torch.equal(loaded.map(x), fresh.map(x))
        assert loaded.kind == kind and len(loaded.sha256) == 64 and loaded.path == str(path)
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        save_bridge(fitted, path)


def test_bridge_file_metadata(fitted: FitResult, tmp_path: Path) -> None:
    from safetensors import safe_open

    path = save_bridge(fitted, tmp_path / "a2c.safetensors")
    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["latentbridge.bridge"])
        keys = set(f.keys())
    assert meta["src"] == {
        "vae_name": "tiny-a",
        "vae_sha256": "a" * 64,
        "format": "sd1",
        "space": "raw",
        "channels": 4,
        "spatial_ratio": 8,
    }
    assert meta["dst"]["vae_name"] == "tiny-c" and meta["dst"]["format"] == "sd3" and meta["dst"]["channels"] == 16
    assert meta["spaces"] == {"src": "raw", "dst": "raw"}
    assert meta["data"]["images"] == 3 and meta["data"]["crop_px"] == 32
    assert set(meta["scores"]) >= {"nmse_linear", "nmse_conv", "psnr_linear", "psnr_conv"}
    assert meta["configs"]["conv"]["hidden"] == 16 and meta["configs"]["linear"]["kind"] == "linear"
    assert "linear.linear.weight" in keys and "conv.body.0.weight" in keys and "conv.src_mean" in keys
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic write left no temp file


def test_load_refuses_files_that_are_not_bridges(fitted: FitResult, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(FileFormatError, match=r"without 'latentbridge\.bridge' metadata, so it is not"):
        load_bridge(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(FileFormatError, match=r"truncated safetensors header.*; expected a bridge from fit-bridge"):
        load_bridge(junk)
    good = save_bridge(fitted, tmp_path / "good.safetensors")
    from safetensors import safe_open

    with safe_open(str(good), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(good))
    del tensors["conv.body.0.weight"]
    damaged = tmp_path / "damaged.safetensors"
    save_file(tensors, str(damaged), metadata=meta)
    with pytest.raises(FileFormatError, match=r"missing \['body.0.weight'\], unexpected \[\]"):
        load_bridge(damaged, kind="conv")
    assert load_bridge(damaged, kind="linear").kind == "linear"  # the other converter is intact


def test_plot_curve_writes_a_png(fitted: FitResult, tmp_path: Path) -> None:
    path = plot_curve(fitted, tmp_path / "curve.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (600, 360)


# --- refusing the wrong family --------------------------------------------------------------------------


def _latent(fmt: str, channels: int = 4, sha: str = "a" * 64) -> Latent:
    return Latent(torch.randn(1, channels, 4, 4), get_format(fmt), "raw", "NCHW", Provenance(vae_sha256=sha))


def test_wrong_family_is_refused(fitted: FitResult) -> None:
    from latentbridge.bridge import check_bridge_input

    bridge = fitted.conv
    check_bridge_input(_latent("sd1"), bridge)  # the right family passes
    with pytest.raises(IncompatibleError, match="this latent is a sdxl latent but the bridge maps latents of tiny-a"):
        check_bridge_input(_latent("sdxl"), bridge)
    with pytest.raises(IncompatibleError, match=r"made by another VAE \(sha256 ffffffffffff\) but the bridge"):
        check_bridge_input(_latent("sd1", sha="f" * 64), bridge)
    unknown = Latent(torch.randn(1, 16, 4, 4), None, "raw", "NCHW")
    with pytest.raises(IncompatibleError, match="has 16 channels in raw space but the bridge reads 4-channel"):
        check_bridge_input(unknown, bridge)
    with pytest.raises(IncompatibleError, match="has 16 channels in raw space but the bridge reads 4-channel"):
        bridge.map(torch.randn(1, 16, 4, 4))
    with pytest.raises(ShapeError, match=r"a bridge maps image latents \[N, C, h, w\], got shape \(1, 4, 2, 4, 4\)"):
        check_bridge_tensor(torch.randn(1, 4, 2, 4, 4), bridge)


def test_endpoint_describes_the_vae(vae_a: VAE) -> None:
    assert vae_a.identity.describe() == "tiny-a (format sd1, raw, 4 ch / 8×, sha256 aaaaaaaaaaaa)"
    assert isinstance(Bridge, type)


# --- real VAEs ------------------------------------------------------------------------------------------


def test_zoo_bridge_quality() -> None:
    """zoo-a -> zoo-c on a tiny budget: the conv bridge beats the linear map, which beats predicting the mean."""
    from latentbridge import zoo
    from latentbridge.weights import load_vae

    for name in ("zoo-a", "zoo-c"):
        if name not in zoo.zoo_info() or not zoo.zoo_path(name).exists():
            pytest.skip(f"zoo VAE {name} not trained yet ({zoo.zoo_path(name)} or its zoo.json entry missing)")
    a, c = load_vae("zoo-a"), load_vae("zoo-c")
    images = [NamedImage(n, small_photo(n, 128)) for n in ("coffee", "rocket", "china", "grace_hopper")]
    result = fit_bridge(a, c, images, view_size=96, views_per_image=1, crop=64, epochs=6, hidden=32, blocks=1)
    s = result.scores
    assert s["wnmse_linear"] < 0.5 * s["wnmse_zero"]
    assert s["wnmse_conv"] < s["wnmse_linear"]
    assert s["psnr_conv"] > 25  # zoo VAEs reconstruct photos at ~25-28 dB; re-encoding reaches ~33 dB


def test_tuning_through_the_decoder_improves_the_decoded_match() -> None:
    """zoo-a -> zoo-b: a briefly trained bridge, then 30 steps of pixel-loss tuning through zoo-b's decoder."""
    import dataclasses

    from latentbridge import zoo
    from latentbridge.bridge import tune_through_decoder
    from latentbridge.errors import IncompatibleError
    from latentbridge.weights import load_vae

    for name in ("zoo-a", "zoo-b"):
        if name not in zoo.zoo_info() or not zoo.zoo_path(name).exists():
            pytest.skip(f"zoo VAE {name} not trained yet ({zoo.zoo_path(name)} or its zoo.json entry missing)")
    a, b = load_vae("zoo-a"), load_vae("zoo-b")
    images = [NamedImage(n, small_photo(n, 128)) for n in ("coffee", "rocket", "china", "grace_hopper")]
    events: list = []
    result = fit_bridge(
        a, b, images, view_size=96, views_per_image=1, crop=64, epochs=3, hidden=32, blocks=1, tune_steps=30,
        on_event=events.append,
    )  # fmt: skip
    tune = result.conv.meta["tune"]
    # Three epochs leave the bridge far from converged: 30 pixel-loss steps (a step budget, so the test does not
    # depend on the machine's speed; 25+ steps measured +1–2 dB here) must raise the held-out decoded PSNR; the
    # kept state is the best validated one, and the scores are of that state.
    assert tune["steps"] == 30 and tune["psnr_after"] > tune["psnr_before"] + 0.2
    assert result.scores["psnr_conv"] == pytest.approx(tune["psnr_after"], abs=1e-3)
    assert any(e.stage == "tune" for e in events)
    onnx_like = dataclasses.replace(b, module=None, architecture="vaelight")
    with pytest.raises(IncompatibleError, match=r"not a torch network .* fit without --tune-seconds"):
        tune_through_decoder(result.conv.net, a, onnx_like, None, [], 1.0)  # type: ignore[arg-type]


# --- the commands, on real pretrained VAEs (VAElight SD1 -> TAEF2 FLUX.2: 4 ch / 8× -> 128 ch / 16×) ----------


def test_cli_fit_bridge_then_transfer(shared_weights: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from latentbridge import codec
    from latentbridge.cli import app
    from latentbridge.files import read_latent, write_latent
    from latentbridge.photos import photo_tensor
    from latentbridge.weights import load_vae

    sd1 = ",".join(str(shared_weights / f) for f in ("vaelight-sd1/VAEencoder.onnx", "vaelight-sd1/VAEpreview.onnx"))
    flux2 = ",".join(str(shared_weights / f) for f in ("taef2/taef2_encoder.pth", "taef2/taef2_decoder.pth"))
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("coffee", "rocket", "china"):
        Image.fromarray(small_photo(name, 80)).save(folder / f"{name}.png")
    out = tmp_path / "sd1-to-flux2.safetensors"
    args = ["fit-bridge", "--src-vae", sd1, "--dst-vae", flux2, "--images", str(folder), "-o", str(out)]
    args += ["--epochs", "3", "--view-size", "64", "--crop", "32", "--hidden", "16", "--blocks", "1", "--plot"]
    args += ["--weighting", "uniform"]  # decoder weighting probes TAEF2's 128 channels: tested on its own below
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("epoch    1", "linear map (closed form)", "conv bridge", "val NMSE", "validation curve ->"):
        assert text in result.output
    assert out.with_suffix(".png").exists()
    bridge = load_bridge(out)
    assert bridge.config.unshuffle == 2 and bridge.src.format.name == "sd1" and bridge.dst.format.name == "flux2"
    assert (
        bridge.src.native_space == "raw" and bridge.dst.native_space == "model" and bridge.meta["data"]["images"] == 3
    )

    light = load_vae(sd1.split(","))
    write_latent(codec.encode(light, photo_tensor("astronaut", 64)), tmp_path / "a.latent")
    run = ["transfer", str(tmp_path / "a.latent"), "--bridge", str(out), "-o", str(tmp_path / "a2.st")]
    run += ["--out-space", "model", "--container", "safetensors"]
    moved = CliRunner().invoke(app, run, env={"COLUMNS": "200"})
    assert moved.exit_code == 0, moved.output
    got = read_latent(tmp_path / "a2.st")
    assert got.format_name == "flux2" and got.shape == (1, 128, 4, 4)
    assert dict(got.provenance.extra)["transfer.bridge_sha256"] == bridge.sha256

    wrong = ["transfer", str(tmp_path / "a2.st"), "--bridge", str(out), "-o", str(tmp_path / "bad.st")]
    refused = CliRunner().invoke(app, wrong, env={"COLUMNS": "200"})
    assert refused.exit_code == 1
    assert "this latent is a flux2 latent but the bridge maps latents of" in refused.output
