"""latentbridge.codec: parity with diffusers, spaces, batching, tiling, precision and the NaN guard."""

from __future__ import annotations

import dataclasses
import itertools
import warnings

import pytest
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from latentbridge import codec
from latentbridge.errors import IncompatibleError, LatentBridgeError, LatentBridgeWarning, NonFiniteError, ShapeError
from latentbridge.formats import NormStats, formats, get_format, raw_to_model
from latentbridge.latent import Latent, Provenance
from latentbridge.metrics import psnr
from latentbridge.photos import photo_tensor
from latentbridge.run import Run, Tiling, parse_dtype
from latentbridge.vae import VAE, from_autoencoder_kl

IMAGE_FORMATS = [f for f in formats().values() if f.dims == 2]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One intra-op thread: these are small tensors on a shared 2-core machine, where 1 thread is 1.4-5× faster."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_kl(channels: int = 4, seed: int = 0) -> AutoencoderKL:
    """A small random AutoencoderKL with the SD layout: 4 blocks (8×), GroupNorm, mid-block attention."""
    torch.manual_seed(seed)
    return AutoencoderKL(
        block_out_channels=(16, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=channels,
        norm_num_groups=8,
        sample_size=64,
    ).eval()


@pytest.fixture(scope="module")
def kl() -> AutoencoderKL:
    return tiny_kl()


@pytest.fixture(scope="module")
def sd1_vae(kl) -> VAE:
    return from_autoencoder_kl(kl, name="tiny-sd1", fmt=get_format("sd1"), sha256="ab" * 32)


def pointwise_vae(ratio: int = 8) -> VAE:
    """A decoder with no spatial context (nearest upsampling of 3 channels): tiling must not change it at all."""

    def decode(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(F.interpolate(z[:, :3], scale_factor=ratio, mode="nearest"))

    def encode(x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(x, ratio)
        return torch.cat([pooled, pooled[:, :1]], dim=1)

    return VAE("pointwise", "", "test", get_format("sd1"), "raw", 4, ratio, 2, encode, decode)


@pytest.fixture(scope="module")
def taef2(shared_weights) -> VAE:
    from latentbridge.weights import load_vae

    folder = shared_weights / "taef2"
    return load_vae([folder / "taef2_encoder.pth", folder / "taef2_decoder.pth"])


@pytest.fixture(scope="module")
def astronaut256() -> torch.Tensor:
    return photo_tensor("astronaut", 256)


def raw(tensor: torch.Tensor, fmt: str = "sd1") -> Latent:
    return Latent(tensor, format=get_format(fmt), space="raw")


# --- parity with diffusers ------------------------------------------------------------------------------------


def test_decode_equals_diffusers(kl, sd1_vae):
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 5
    ours = codec.decode(sd1_vae, raw(z), run=Run(batch_size=2))
    with torch.inference_mode():
        ref = (kl.decode(z).sample.clamp(-1, 1) + 1) / 2
    assert ours.shape == (2, 3, 64, 64) and ours.dtype == torch.float32
    # same module, same batch: only the [-1, 1] -> [0, 1] mapping's rounding can differ (1e-5 per the spec)
    assert (ours - ref).abs().max() <= 1e-5


def test_encode_equals_diffusers_and_records_provenance(kl, sd1_vae):
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    lat = codec.encode(sd1_vae, x, run=Run(batch_size=2), provenance=Provenance(source_image="a.png"))
    with torch.inference_mode():
        ref = kl.encode(x).latent_dist.mean
    assert (lat.tensor - ref).abs().max() <= 1e-5  # same module and batch (1e-5 as for decode)
    assert lat.space == "raw" and lat.format is get_format("sd1") and lat.layout == "NCHW"
    assert lat.provenance.vae_name == "tiny-sd1" and lat.provenance.vae_sha256 == "ab" * 32
    assert lat.provenance.source_image == "a.png" and lat.provenance.history == ("encode tiny-sd1 fp32",)


# --- spaces ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", IMAGE_FORMATS, ids=lambda f: f.name)
def test_model_space_decodes_like_its_raw_form(fmt):
    """Decoding a model-space latent equals decoding its raw form, for every image format in the registry."""
    vae = from_autoencoder_kl(tiny_kl(fmt.channels), name=f"tiny-{fmt.name}", fmt=fmt)
    g = torch.Generator().manual_seed(3)
    stats = None
    if fmt.norm_source == "vae":  # FLUX.2: BatchNorm statistics stored in the VAE file
        stats = NormStats.from_running(
            torch.randn(fmt.model_channels, generator=g),
            torch.rand(fmt.model_channels, generator=g) + 0.5,
            fmt.norm_eps,
            "test",
        )
        vae = dataclasses.replace(vae, stats=stats)
    z = torch.randn(1, fmt.channels, 4, 4, generator=g) * 3
    model = raw_to_model(z, fmt, stats)
    from_raw = codec.decode(vae, raw(z, fmt.name))
    from_model = codec.decode(vae, Latent(model, format=fmt, space="model"))
    # the round trip raw -> model -> raw is exact up to float32 rounding of (x - shift) * scale; the decoder
    # amplifies that by far less than 1e-5
    assert (from_raw - from_model).abs().max() <= 1e-5
    if fmt.scale != 1.0 or fmt.norm_source != "none":  # the conversion matters: skipping it gives another image
        wrong = codec.decode(vae, raw(model.reshape(z.shape) if fmt.patch == 1 else z * 0.5, fmt.name))
        assert (wrong - from_raw).abs().max() > 1e-3


def test_model_space_vae_gets_model_space(taef2, astronaut256):
    lat = codec.encode(taef2, astronaut256)
    assert lat.space == "model" and lat.tensor.shape == (1, 128, 16, 16) and lat.format is get_format("flux2")
    images = codec.decode(taef2, lat)
    # TAEF2 reconstructs 256² photos at about 29.5 dB (FACTS.md); 27 dB leaves room, a broken path gives < 15
    assert psnr(images, (astronaut256 + 1) / 2).item() > 27


# --- batching -------------------------------------------------------------------------------------------------


def test_batching_equals_unbatched(sd1_vae):
    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(4))
    one = codec.decode(sd1_vae, raw(z), run=Run(batch_size=1))
    all3 = codec.decode(sd1_vae, raw(z), run=Run(batch_size=3))
    two = codec.decode(sd1_vae, raw(z), run=Run(batch_size=2))
    # convolution kernels may block the batch differently: float32 rounding only (~1e-7 relative)
    assert (one - all3).abs().max() <= 1e-5 and (one - two).abs().max() <= 1e-5


# --- tiling ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size,tile,overlap", [(100, 32, 8), (64, 32, 8), (33, 32, 8), (300, 64, 16), (40, 16, 8), (128, 64, 16)]
)
def test_tiles_cover_the_axis_with_at_least_the_overlap(size, tile, overlap):
    length, starts = codec.tile_axis(size, tile, overlap)
    assert length <= tile and starts[0] == 0 and starts[-1] + length == size
    assert all(b - a <= length - overlap for a, b in itertools.pairwise(starts))
    # the fewest tiles: one fewer could not cover the axis with the overlap
    assert (len(starts) - 1) * (tile - overlap) + overlap < size
    weights = codec._axis_weights(starts, length, 1)
    total = torch.zeros(size)
    for s, w in zip(starts, weights, strict=True):
        total[s : s + length] += w
    # mirrored raised-cosine ramps sum to one wherever tiles overlap (float32 rounding only)
    assert (total - 1).abs().max() <= 1e-6


def test_tiling_a_pointwise_decoder_changes_nothing():
    vae = pointwise_vae()
    z = torch.randn(2, 4, 37, 29, generator=torch.Generator().manual_seed(5))
    whole = codec.decode(vae, raw(z))
    tiled = codec.decode(vae, raw(z), run=Run(tiling=Tiling(tile=96, overlap=32), batch_size=3))
    # blend weights sum to 1 at every pixel: only float32 rounding of the weighted sum remains
    assert (whole - tiled).abs().max() <= 1e-6
    x = whole[:, :, :288, :224] * 2 - 1
    lat = codec.encode(vae, x)
    lat_tiled = codec.encode(vae, x, run=Run(tiling=Tiling(tile=64, overlap=16)))
    assert lat_tiled.provenance.history == ("encode pointwise fp32 tile 64",)
    assert (lat.tensor - lat_tiled.tensor).abs().max() <= 1e-6


def test_tiled_decode_matches_untiled_on_real_weights(taef2, astronaut256):
    """Seams on a real decoder: TAEF2 has GroupNorm, so this also checks the whole-image statistics passes."""
    lat = codec.encode(taef2, astronaut256)
    whole = codec.decode(taef2, lat)
    tiled = codec.decode(taef2, lat, run=Run(tiling=Tiling(tile=128, overlap=64)))
    one_pass = codec.decode(taef2, lat, run=Run(tiling=Tiling(tile=128, overlap=64, passes=1)))
    # measured 40.9 dB with the default 2 passes and 26 dB with per-tile statistics; the spec's seam floor is 35
    assert psnr(tiled, whole).item() >= 35
    assert psnr(tiled, whole).item() > psnr(one_pass, whole).item() + 5


def test_statistics_passes_converge_on_a_deep_groupnorm_decoder(sd1_vae):
    """A random SD-layout decoder (20 GroupNorms in a row): more passes must not make it worse.

    Replacing tile statistics outright by the previous pass's image statistics diverges on such networks;
    the codec's correction converges (see codec._TileNorm).
    """
    z = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(12))
    whole = codec.decode(sd1_vae, raw(z))
    scores = [
        psnr(codec.decode(sd1_vae, raw(z), run=Run(tiling=Tiling(tile=128, overlap=32, passes=p))), whole).item()
        for p in (1, 2, 3)
    ]
    assert scores[0] < scores[1] <= scores[2] + 0.5  # 0.5 dB: later passes may plateau


def test_tiled_encode_matches_untiled_on_real_weights(taef2, astronaut256):
    lat = codec.encode(taef2, astronaut256)
    tiled = codec.encode(taef2, astronaut256, run=Run(tiling=Tiling(tile=128, overlap=64)))
    a = codec.decode(taef2, lat)
    b = codec.decode(taef2, tiled)
    assert psnr(b, a).item() >= 35  # the spec's seam floor on the decoded images (measured 40.3 dB)


def test_no_statistics_pass_when_no_groupnorm_runs():
    """A module whose GroupNorm belongs to the other half (here: unused) costs one pass, not ``tile_passes``."""
    calls = []
    base = pointwise_vae()

    def decode(z: torch.Tensor) -> torch.Tensor:
        calls.append(z.shape)
        return base.decode(z)

    vae = dataclasses.replace(base, decode=decode, module=torch.nn.Sequential(torch.nn.GroupNorm(1, 4)))
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(14))
    tiled = codec.decode(vae, raw(z), run=Run(tiling=Tiling(tile=64, overlap=16, passes=3)))
    assert len(calls) == 9  # 3×3 tiles, once each
    assert (tiled - codec.decode(base, raw(z))).abs().max() <= 1e-6


def test_max_memory_turns_tiling_on_and_says_so():
    vae = pointwise_vae()
    z = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(6))
    need = codec.estimate_memory(vae, z.shape)
    whole = codec.decode(vae, raw(z))
    with pytest.warns(
        LatentBridgeWarning,
        match=r"decode of a 512×512-px image with pointwise: estimated peak .* "
        r"exceeds max_memory .* so it runs in tiles of \d+ px",
    ):
        tiled = codec.decode(vae, raw(z), run=Run(max_memory=need // 2))
    assert (whole - tiled).abs().max() <= 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a budget that fits: no tiling, no warning
        codec.decode(vae, raw(z), run=Run(max_memory=need * 2))
    with pytest.raises(LatentBridgeError, match=r"max_memory 0.00 GiB is too small for decode with pointwise"):
        codec.decode(vae, raw(z), run=Run(max_memory=1000))


def test_memory_estimate_scales_with_pixels_and_tiles(sd1_vae):
    small = codec.estimate_memory(sd1_vae, (1, 4, 32, 32))
    big = codec.estimate_memory(sd1_vae, (1, 4, 64, 64))
    tiled = codec.estimate_memory(sd1_vae, (1, 4, 64, 64), run=Run(tiling=Tiling(tile=128)))
    # activations grow with pixels (4× here) and the weight copy does not: between 3× and 4×
    assert 3 * small < big <= 4 * small and tiled < small
    assert codec.estimate_memory(sd1_vae, (1, 4, 64, 64), run=Run(dtype="bf16")) < big


# --- precision --------------------------------------------------------------------------------------------------


def test_reduced_precision_restores_the_weights(kl, sd1_vae):
    before = {k: v.clone() for k, v in kl.state_dict().items()}
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7))
    ref = codec.decode(sd1_vae, raw(z))
    fast = codec.decode(sd1_vae, raw(z), run=Run(dtype="bf16", channels_last=True))
    after = kl.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in before.items())
    # bf16 keeps 8 bits of mantissa: a random tiny decoder stays within a few 1/256 steps
    assert psnr(fast, ref).item() > 30


def test_bf16_fast_path_on_real_weights(taef2, astronaut256):
    lat = codec.encode(taef2, astronaut256)
    ref = codec.decode(taef2, lat)
    fast = codec.decode(taef2, lat, run=Run(dtype="bf16", channels_last=True))
    assert psnr(fast, ref).item() >= 40  # the spec's floor for the fast path (measured 54 dB at 512²)


def overflowing_decoder() -> tuple[AutoencoderKL, VAE]:
    """A real KL decoder whose first conv is scaled so that a large latent overflows fp16 (max 65504)."""
    model = tiny_kl(seed=8)
    with torch.no_grad():
        model.decoder.conv_in.weight.mul_(100)
    return model, from_autoencoder_kl(model, name="hot", fmt=get_format("sd1"))


def test_nan_guard_redoes_only_the_overflowing_sample_in_fp32():
    model, vae = overflowing_decoder()
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    z[1] *= 3000  # conv_in of sample 1 passes 1e5 in fp16 -> inf -> NaN after GroupNorm; sample 0 stays finite
    with torch.inference_mode():
        half = model.half().decode(z.half()).sample
        model.float()
    assert torch.isfinite(half[0]).all() and not torch.isfinite(half[1]).all()  # the premise: a real overflow
    ref = codec.decode(vae, raw(z))
    with pytest.warns(LatentBridgeWarning, match=r"decode with hot: sample 1 overflowed in fp16 .* again in fp32"):
        got = codec.decode(vae, raw(z), run=Run(dtype="fp16", batch_size=2))
    assert (got[1] - ref[1]).abs().max() <= 1e-5  # redone in fp32 from the original fp32 weights
    assert 0 < (got[0] - ref[0]).abs().max() <= 0.02  # sample 0 kept its fp16 result (fp16 rounding, 2 %)
    assert model.decoder.conv_in.weight.dtype == torch.float32


def test_nan_guard_redoes_a_sample_of_a_vae_that_returns_float32():
    """A VAE that computes in fp16 but hands back contiguous float32 (ComfyUI's VAE objects do): that output was made
    under inference mode and ``.float().contiguous()`` does not copy it, so the redo must write into a copy."""
    _, vae = overflowing_decoder()
    bind = vae.bind
    assert bind is not None

    def float_bind(module: torch.nn.Module):
        encode, decode = bind(module)
        return encode, (lambda z: decode(z).float().contiguous())

    vae32 = dataclasses.replace(vae, decode=float_bind(vae.module)[1], bind=float_bind)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    z[1] *= 3000  # as above: sample 1 overflows in fp16
    ref = codec.decode(vae, raw(z))
    with pytest.warns(LatentBridgeWarning, match=r"sample 1 overflowed in fp16 .* again in fp32"):
        got = codec.decode(vae32, raw(z), run=Run(dtype="fp16", batch_size=2))
    assert (got[1] - ref[1]).abs().max() <= 1e-5  # as above: redone from the fp32 weights


def test_nan_guard_in_tiled_runs_names_the_tile():
    _, vae = overflowing_decoder()
    z = torch.randn(1, 4, 16, 8, generator=torch.Generator().manual_seed(10))
    z[..., 12:, :] *= 3000  # only the bottom tile overflows
    with pytest.warns(LatentBridgeWarning, match=r"sample 0 tile \(2, 0\) overflowed in fp16"):
        got = codec.decode(vae, raw(z), run=Run(tiling=Tiling(tile=64, overlap=16), dtype="fp16"))
    assert torch.isfinite(got).all()


def test_non_finite_inputs_and_outputs_are_errors(sd1_vae):
    z = torch.randn(2, 4, 8, 8)
    z[1, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match=r"the latent holds NaN or inf values \(samples \[1\]\)"):
        codec.decode(sd1_vae, raw(z))
    model = tiny_kl(seed=11)
    with torch.no_grad():
        model.decoder.conv_out.bias.fill_(float("inf"))
    broken = from_autoencoder_kl(model, name="broken", fmt=get_format("sd1"))
    with pytest.raises(NonFiniteError, match=r"decode with broken produced NaN/inf for sample 0 in fp32"):
        codec.decode(broken, raw(torch.zeros(1, 4, 8, 8)))


# --- padding, video, errors ------------------------------------------------------------------------------------


def test_recorded_padding_is_cropped_after_decode():
    vae = pointwise_vae()
    prov = Provenance(extra=(("padding", "8,16,0,24"),))
    lat = Latent(torch.randn(1, 4, 8, 8), format=get_format("sd1"), space="raw", provenance=prov)
    assert codec.decode(vae, lat).shape == (1, 3, 40, 40)
    assert codec.decode(vae, lat, crop_padding=False).shape == (1, 3, 64, 64)


def test_video_latents_decode_frame_stacks():
    def decode(z: torch.Tensor) -> torch.Tensor:  # [N, 16, t, h, w] -> [N, 3, 4(t-1)+1, 8h, 8w]
        frames = torch.cat([z[:, :3, :1], z[:, :3, 1:].repeat_interleave(4, dim=2)], dim=2)
        return torch.tanh(F.interpolate(frames, scale_factor=(1, 8, 8), mode="nearest"))

    vae = VAE("video", "", "test", get_format("wan21"), "raw", 16, 8, 3, None, decode)
    lat = Latent(torch.randn(1, 16, 3, 6, 5), format=get_format("wan21"), space="raw", layout="NCTHW")
    whole = codec.decode(vae, lat)
    assert whole.shape == (1, 3, 9, 48, 40)
    tiled = codec.decode(vae, lat, run=Run(tiling=Tiling(tile=32, overlap=8)))
    assert (whole - tiled).abs().max() <= 1e-6  # pointwise in space: tiling is exact up to rounding
    model = codec.native_latent(vae, lat.replace(tensor=lat.tensor.permute(0, 2, 1, 3, 4), layout="NTCHW"))[0]
    assert torch.equal(model, lat.tensor)  # NTCHW (TAEHV order) comes back canonical


def test_layouts_are_made_canonical(sd1_vae):
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(13))
    ref = codec.decode(sd1_vae, raw(z))
    nhwc = Latent(z.permute(0, 2, 3, 1), format=get_format("sd1"), space="raw", layout="NHWC")
    chw_unlabelled = Latent(z[0], space="raw", layout="CHW")  # a kohya cache: one image, format unknown
    assert torch.equal(codec.decode(sd1_vae, nhwc), ref)
    assert torch.equal(codec.decode(sd1_vae, chw_unlabelled), ref)


def test_wrong_pairings_are_refused(sd1_vae):
    z = torch.randn(1, 4, 8, 8)
    with pytest.raises(IncompatibleError, match=r"the latent is sdxl but VAE 'tiny-sd1' reads sd1 latents"):
        codec.decode(sd1_vae, raw(z, "sdxl"))
    with pytest.raises(IncompatibleError, match=r"VAE 'tiny-sd1' reads 4-channel raw-space latents, got 16 channels"):
        codec.decode(dataclasses.replace(sd1_vae, format=None), Latent(torch.randn(1, 16, 8, 8), space="raw"))
    with pytest.raises(ValueError, match=r"this latent's space is unknown"):
        codec.decode(sd1_vae, Latent(z, format=get_format("sd1")))
    unlabelled = dataclasses.replace(sd1_vae, format=None)
    with pytest.raises(ValueError, match=r"neither says which latent format they are, so the conversion is unknown"):
        codec.decode(unlabelled, Latent(z, space="model"))
    with pytest.raises(TypeError, match=r"decode takes a latentbridge Latent, got Tensor"):
        codec.decode(sd1_vae, z)  # type: ignore[arg-type]
    no_decoder = dataclasses.replace(sd1_vae, decode=None)
    with pytest.raises(IncompatibleError, match=r"VAE 'tiny-sd1' has no decoder"):
        codec.decode(no_decoder, raw(z))


def test_image_errors(sd1_vae):
    x = torch.zeros(1, 3, 64, 64)
    with pytest.raises(LatentBridgeError, match=r"images span \[0, 255\]; encode takes images in \[-1, 1\]: divide by"):
        codec.encode(sd1_vae, x + torch.linspace(0, 255, 64))
    with pytest.raises(LatentBridgeError, match=r"map \[0, 1\] to \[-1, 1\] with x \* 2 - 1"):
        codec.encode(sd1_vae, x + 1.5)
    with pytest.raises(
        ShapeError,
        match=r"sd1 needs image sizes that are multiples of 8 px, got 64×70; nearest valid "
        r"sizes: 64×64 or 64×72",
    ):
        codec.encode(sd1_vae, torch.zeros(1, 3, 64, 70))
    with pytest.raises(ShapeError, match=r"takes images \[N, 3, H, W\] in \[-1, 1\], got shape \(3, 64, 64\)"):
        codec.encode(sd1_vae, torch.zeros(3, 64, 64))
    with pytest.raises(LatentBridgeError, match=r"images are torch.uint8; encode takes float images"):
        codec.encode(sd1_vae, torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


def test_option_errors(sd1_vae):
    z = raw(torch.randn(1, 4, 8, 8))
    with pytest.raises(LatentBridgeError, match=r"unknown compute dtype 'fp8': expected one of fp32, bf16, fp16"):
        codec.decode(sd1_vae, z, run=Run(dtype="fp8"))
    with pytest.raises(ShapeError, match=r"decode tile size 100 px is not a positive multiple of 8 px: use 96 or 104"):
        codec.decode(sd1_vae, z, run=Run(tiling=Tiling(tile=100)))
    with pytest.raises(ShapeError, match=r"decode tile overlap 48 px must be a multiple of 8 px between 0 and half"):
        codec.decode(sd1_vae, z, run=Run(tiling=Tiling(tile=64, overlap=48)))
    with pytest.raises(LatentBridgeError, match=r"batch_size must be at least 1, got 0"):
        codec.decode(sd1_vae, z, run=Run(batch_size=0))
    with pytest.raises(LatentBridgeError, match=r"tile passes must be at least 1, got 0"):
        codec.decode(sd1_vae, z, run=Run(tiling=Tiling(tile=32, passes=0)))
    onnx_like = dataclasses.replace(pointwise_vae(), module=None, architecture="vaelight")
    with pytest.raises(LatentBridgeError, match=r"runs outside torch, in float32 on the CPU; got dtype bf16"):
        codec.decode(onnx_like, z, run=Run(dtype="bf16"))
    assert parse_dtype("bfloat16") is torch.bfloat16 and parse_dtype(torch.float16) is torch.float16


# --- one VAE, many callers: threads, progress, cancelling -----------------------------------------------------


def test_one_vae_decodes_from_four_threads_like_serial_calls(kl, sd1_vae):
    """Four threads share one VAE, each with other settings (fp32/bf16, whole/tiled with the 2-pass GroupNorm
    correction): every result equals its serial one bit for bit, and the module is left exactly as it was."""
    import threading

    before = {k: v.clone() for k, v in kl.state_dict().items()}
    z = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(21))
    runs = [
        Run(),
        Run(dtype="bf16", channels_last=True),
        Run(tiling=Tiling(tile=64, overlap=16)),
        Run(dtype="bf16", tiling=Tiling(tile=64, overlap=16), batch_size=2),
    ]
    serial = [codec.decode(sd1_vae, raw(z), run) for run in runs]
    results: dict[tuple[int, int], torch.Tensor] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(runs))

    def work(i: int) -> None:
        try:
            start.wait()
            for rep in range(3):  # several rounds, so the threads' calls overlap in every phase
                results[(i, rep)] = codec.decode(sd1_vae, raw(z), runs[i])
        except BaseException as exc:  # reported below; a thread's exception would be lost otherwise
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(runs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (i, _), got in results.items():
        assert torch.equal(got, serial[i]), f"thread {i} ({runs[i]}) differs from its serial result"
    after = kl.state_dict()
    assert all(after[k].dtype == torch.float32 and torch.equal(after[k], v) for k, v in before.items())
    norms = [m for m in kl.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and not any("forward" in vars(m) for m in norms)  # no patched forward left behind


def test_progress_reports_every_step_of_a_tiled_decode(sd1_vae):
    events = []
    z = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(22))
    codec.decode(sd1_vae, raw(z), Run(tiling=Tiling(tile=64, overlap=16), progress=events.append))
    plan = codec.plan_tiles(16, 16, 8, 2)  # 64-px tiles are 8 cells, the 16-px overlap 2 cells
    total = plan.count * 2  # each tile once per pass, 2 passes (the decoder has GroupNorm)
    assert [e.done for e in events] == list(range(total + 1))  # the start event, then one per tile
    assert {e.total for e in events} == {total}
    assert events[0].task == f"decode tiny-sd1 ({plan.count} tiles of {plan.th * 8}×{plan.tw * 8} px)"


def test_a_cancelled_run_stops_at_the_next_step_and_returns_nothing(sd1_vae):
    from latentbridge.errors import Cancelled
    from latentbridge.run import CancelToken

    token = CancelToken()
    seen = []

    def on_progress(event):
        seen.append(event.done)
        if event.done == 1:
            token.cancel("user pressed stop")

    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(23))
    with pytest.raises(Cancelled, match=r"decode tiny-sd1 was cancelled \(user pressed stop\); nothing was written"):
        codec.decode(sd1_vae, raw(z), Run(progress=on_progress, cancel=token))
    assert seen == [0, 1]  # the second sample never ran
    with pytest.raises(Cancelled):  # a token that is already cancelled stops before any work
        codec.encode(sd1_vae, torch.zeros(1, 3, 64, 64), Run(cancel=token))


def test_vae_device_and_dtype_follow_its_module(kl, sd1_vae):
    assert sd1_vae.device == torch.device("cpu") and sd1_vae.dtype == torch.float32
    assert pointwise_vae().dtype == torch.float32  # no module: plain functions run in float32 on the CPU
    half = from_autoencoder_kl(tiny_kl(seed=3).to(torch.bfloat16), name="half", fmt=get_format("sd1"))
    assert half.dtype == torch.bfloat16
    # a bf16 module decodes in fp32 through a cast copy; the module stays bf16
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(24))
    codec.decode(half, raw(z))
    assert next(half.module.parameters()).dtype == torch.bfloat16


def test_decode_and_encode_take_a_diffusers_module_as_it_is(kl):
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(25))
    with torch.no_grad():
        direct = ((kl.decode(z).sample.clamp(-1, 1) + 1) / 2).float()
    assert (codec.decode(kl, Latent(z, format="sd1", space="raw")) - direct).abs().max() <= 1e-6  # same network
    lat = codec.encode(kl, torch.zeros(1, 3, 64, 64))
    assert lat.space == "raw" and lat.shape == (1, 4, 8, 8)
