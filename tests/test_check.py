"""check(): every finding from a real constructed case, with its message and fix; preflight; CLI exit codes."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from latentbridge.checks import EXIT_CODES, Report, check, image_scores, vae_identity
from latentbridge.cli import app
from latentbridge.fingerprint import Identification, identify
from latentbridge.formats import formats, get_format, raw_to_model
from latentbridge.latent import Latent, Provenance
from latentbridge.photos import HELDOUT_PHOTOS, photo_tensor
from latentbridge.profiles import GROUPS
from latentbridge.vae import VaeIdentity

runner = CliRunner()


def facts(fmt: str | None, *, channels: int = 4, ratio: int = 8, dims: int = 2, space: str = "raw") -> VaeIdentity:
    """Header facts of a VAE of format ``fmt`` (its raw geometry), as latentbridge.weights.describe gives them."""
    f = get_format(fmt) if fmt else None
    c, r = f.space_shape(space) if f else (channels, ratio)
    name = f"{fmt or 'unknown'}-vae.safetensors"
    return VaeIdentity(name, "", "autoencoder_kl", f, space, c, r, f.dims if f else dims)


def smooth(shape: tuple[int, ...], seed: int = 0, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """An image-like (spatially correlated) random latent: random walks along H and W, normalised."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g).cumsum(-1).cumsum(-2)
    x = (x - x.mean()) / x.std()
    return x * scale + offset


@pytest.fixture(scope="module")
def sd1_raw(shared_weights) -> torch.Tensor:
    """A real raw SD1 latent (VAElight encoder) of a held-out photo at 256 px: [1, 4, 32, 32]."""
    from latentbridge.weights import load_vae

    enc = load_vae([str(shared_weights / "vaelight-sd1" / "VAEencoder.onnx")], part="encoder")
    return torch.cat([enc.encode(photo_tensor(name, 256)) for name in HELDOUT_PHOTOS])


@pytest.fixture(scope="module")
def sd1_decoder(shared_weights):
    from latentbridge.weights import load_vae

    return load_vae(str(shared_weights / "vaelight-sd1" / "VAEpreview.onnx"), part="decoder")


SD1 = get_format("sd1")


# --- a matching pair is ok --------------------------------------------------------------------------------


def test_matching_pair_is_ok(sd1_raw):
    report = check(Latent(sd1_raw, SD1, "raw"), facts("sd1"))
    assert report.verdict == "ok" and report.exit_code == 0, report.findings
    assert report.codes("warn") == () and report.codes("error") == ()
    assert report.identification.best.format == "sd1"


def test_matching_pair_in_model_space_is_ok(sd1_raw):
    report = check(Latent(raw_to_model(sd1_raw, SD1), SD1, "model"), facts("sd1", space="model"))
    assert report.verdict == "ok", report.findings


def test_unrecorded_space_is_estimated(sd1_raw):
    report = check(Latent(sd1_raw[:1], SD1), facts("sd1"))
    assert report.verdict == "ok"
    f = report.finding("space-estimated")
    assert (
        f.severity == "info"
        and "the statistics say raw" in f.message
        and f.fix == "record it (--space raw) to skip the estimate"
    )
    assert report.latent.space == "raw" and report.latent.space_source == "statistics"


# --- values -----------------------------------------------------------------------------------------------


def test_nan_is_an_error():
    x = smooth((1, 4, 16, 16))
    x[0, 1, 3, 3] = float("nan")
    x[0, 2, 4, 4] = float("inf")
    f = check(Latent(x, SD1, "raw"), facts("sd1")).finding("non-finite")
    assert f.severity == "error"
    assert f.message.startswith("the latent has 2 NaN/inf values out of 1024")
    assert "re-encode in float32" in f.fix


def test_all_zero_is_an_empty_latent():
    report = check(Latent(torch.zeros(1, 4, 64, 64), SD1, "raw"), facts("sd1"))
    assert report.verdict == "error"
    f = report.finding("all-zero")
    assert "an empty latent sent to decode (a fresh EmptyLatentImage is all zeros)" in f.message
    assert "connect the KSampler output, not the EmptyLatentImage" in f.fix


def test_constant_is_an_error():
    f = check(torch.full((1, 4, 8, 8), 0.25), facts("sd1")).finding("constant")
    assert f.severity == "error" and f.message == "every value of the latent is 0.25: not an encoded image"


def test_noise_is_a_warning():
    noise = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    report = check(Latent(noise, SD1, "model"), facts("sd1"))
    assert report.verdict == "warn" and report.exit_code == 1
    f = report.finding("noise-like")
    assert "looks like i.i.d. noise" in f.message and "after denoising" in f.fix
    assert abs(dict(f.evidence)["lag1_autocorrelation"]) < 0.1


# --- shapes and layouts -----------------------------------------------------------------------------------


def test_channel_mismatch_names_the_formats_that_fit():
    report = check(Latent(smooth((1, 16, 32, 32)), None, "raw"), facts("sd1"))
    f = report.finding("channel-mismatch")
    assert f.severity == "error"
    assert f.message == "the latent has 16 channels; sd1-vae.safetensors takes 4 (raw) or 4 (model)".replace(
        "4 (raw) or 4 (model)", "4 (raw or model)"
    )
    assert "registered formats with 16 channels: sd3 (raw 16 ch / 8×), flux1 (raw 16 ch / 8×)" in f.fix


def test_channel_mismatch_lists_packed_model_spaces():
    f = check(smooth((1, 128, 16, 16)), facts("sd1")).finding("channel-mismatch")
    assert "flux2 (model 128 ch / 16×)" in f.fix


def test_ratio_mismatch_from_recorded_format():
    # Sana 32 ch / 32× vs FLUX.2 raw 32 ch / 8×: same channels, different ratio
    report = check(Latent(smooth((1, 32, 32, 32)), get_format("sana"), "raw"), facts("flux2"))
    f = report.finding("ratio-mismatch")
    assert f.severity == "error"
    assert "same channels, different spatial ratio" in f.message
    assert "is 1024×1024 px in sana but would decode to 256×256 px" in f.message
    assert f.fix.startswith("decode with a sana VAE")


def test_ratio_mismatch_from_provenance_size():
    lat = Latent(
        smooth((1, 32, 32, 32)),
        get_format("flux2"),
        "raw",
        provenance=Provenance(extra=(("height", "1024"), ("width", "1024"))),
    )
    f = check(lat, facts("flux2")).finding("source-size-mismatch")
    assert f.evidence_kind == "provenance"
    assert (
        "the source image was 1024×1024 px (provenance) but a 32×32 latent at flux2's 8× decodes to 256×256"
        in f.message
    )
    assert f.fix == "the latent's ratio is 32×: decode it with a VAE of that ratio (formats that fit: sana)"


def test_ratio_is_called_ambiguous_when_nothing_is_recorded():
    report = check(smooth((1, 32, 32, 32)), facts(None, channels=32, ratio=8))
    f = report.finding("ratio-ambiguous")
    assert f.severity == "info" and "32 channels occur at 8×, 32×" in f.message  # flux2 raw, sana (images)
    assert "the VAE decodes at 8× (256×256 px)" in f.message


def test_packed_latent_recorded_as_raw():
    f = check(Latent(smooth((1, 128, 16, 16)), get_format("flux2"), "raw"), facts("flux2")).finding("packed-as-raw")
    assert "128 channels is flux2's packed model space (128 ch / 16×)" in f.message
    assert f.fix.startswith("record it as model space (--space model)")


def test_unpacked_latent_recorded_as_model():
    f = check(Latent(smooth((1, 32, 32, 32)), get_format("flux2"), "model"), facts("flux2")).finding("unpacked-model")
    assert f.severity == "error" and "model space is packed 2×2 to 128 ch / 16×" in f.message
    assert "latentbridge.formats.pack(x, 2)" in f.fix


def test_packed_shape_decides_the_space():
    report = check(smooth((1, 128, 16, 16)), facts("flux2"))
    assert report.finding("space-from-shape").message.startswith("128 channels: flux2 model space")
    assert report.latent.space == "model" and report.latent.space_source == "shape"


def test_missing_batch_dimension(sd1_raw):
    report = check(Latent(sd1_raw[0], SD1, "raw", "CHW"), facts("sd1"))
    f = report.finding("missing-batch")
    assert f.severity == "warn" and "has no batch dimension (CHW)" in f.message and "x[None]" in f.fix
    bare = check(sd1_raw[0], facts("sd1"))
    assert "missing-batch" in bare.codes()


def test_training_cache_without_batch_is_not_a_warning(sd1_raw, tmp_path):
    import numpy as np

    from latentbridge.files import read_latent

    # kohya-ss/sd-scripts caches one C×H×W latent per image (raw SD space): a good file must check ok
    path = tmp_path / "photo_0064x0064_sd.npz"
    np.savez(path, latents=sd1_raw[0].numpy(), original_size=np.array([512, 512]), crop_ltrb=np.zeros(4, int))
    lat = read_latent(path)
    report = check(lat, facts("sd1"))
    f = report.finding("missing-batch")
    assert f.severity == "info" and "hold one item each, by design" in f.message and f.fix == ""
    assert report.verdict == "ok", report.findings


def test_channels_last_is_detected(sd1_raw):
    report = check(sd1_raw[:1].permute(0, 2, 3, 1).contiguous(), facts("sd1"))
    f = report.finding("channels-last")
    assert f.severity == "error"
    assert "shape [1, 32, 32, 4] read as NCHW has 32 channels" in f.message
    assert "read as channels-last [N, H, W, C] it has 4 channels" in f.message
    assert "x.permute(0, 3, 1, 2)" in f.fix
    assert report.latent.layout == "NHWC"
    assert report.identification.best.format == "sd1"  # the rest of the check ran on the right layout


def test_frames_first_video_is_detected():
    x = smooth((1, 5, 16, 16, 16))  # [N, T, C, H, W] with C = 16, T = 5
    f = check(x, facts("wan21")).finding("frames-first")
    assert "read as frames-first [N, T, C, H, W] (TAEHV; diffusers CogVideoX, SVD) it has 16 channels" in f.message
    assert "x.permute(0, 2, 1, 3, 4)" in f.fix


# --- video geometry, walked over the registry ----------------------------------------------------------------

VIDEO = [f for f in formats().values() if f.dims == 3]
IMAGE = [f for f in formats().values() if f.dims == 2]
# every ordered pair of video formats with the same channels and spatial ratio but another temporal compression
# (ratio or frame rule): Wan 2.1 / HunyuanVideo / CogVideoX (4×, 4n+1) against Cosmos (8×, 8n+1)
TEMPORAL_PAIRS = [
    (a, b)
    for a in VIDEO
    for b in VIDEO
    if a.channels == b.channels
    and a.spatial_ratio == b.spatial_ratio
    and (a.temporal_ratio, a.causal_first_frame) != (b.temporal_ratio, b.causal_first_frame)
]
VIDEO_TO_IMAGE = [(v, i) for v in VIDEO for i in IMAGE if v.channels == i.channels]


def _ids(pairs):
    return [f"{a.name}->{b.name}" for a, b in pairs]


def test_the_registry_has_pairs_to_walk():
    # the parametrized tests below must not pass vacuously: wan21, hunyuan_video, cogvideox, cogvideox_2b vs cosmos
    assert {(a.name, b.name) for a, b in TEMPORAL_PAIRS} >= {("wan21", "cosmos"), ("cosmos", "hunyuan_video")}
    assert len(TEMPORAL_PAIRS) == 8 and len(VIDEO_TO_IMAGE) >= 10


@pytest.mark.parametrize(("lat_fmt", "vae_fmt"), TEMPORAL_PAIRS, ids=_ids(TEMPORAL_PAIRS))
@pytest.mark.parametrize("frames", [5, 1])
def test_temporal_mismatch_for_every_video_pair(lat_fmt, vae_fmt, frames):
    from latentbridge.formats import pixel_frames

    x = smooth((1, lat_fmt.channels, frames, 16, 16), scale=1 / lat_fmt.scale)
    report = check(Latent(x, lat_fmt, "raw", "NCTHW"), facts(vae_fmt.name))
    f = report.finding("temporal-mismatch")
    assert f.severity == "error" and report.verdict == "error"
    assert f.message.startswith(
        f"the latent is recorded as {lat_fmt.name} but {vae_fmt.name}-vae.safetensors is {vae_fmt.name}: same "
        "channels and spatial ratio, different temporal compression — "
        f"{lat_fmt.name} is {lat_fmt.temporal_ratio}× in time (frames {lat_fmt.frame_rule}), {vae_fmt.name} "
        f"{vae_fmt.temporal_ratio}× ({vae_fmt.frame_rule})"
    )
    ours, theirs = pixel_frames(lat_fmt, frames), pixel_frames(vae_fmt, frames)
    if frames == 5:
        assert ours != theirs  # 17 vs 33 frames
        assert f"5 latent frames are {ours} frames in {lat_fmt.name} but would decode to {theirs} frames" in f.message
    else:  # one latent frame is one frame in both causal VAEs: still another network's latent space
        assert "1 latent frame decodes to 1 frame in both, but through another VAE's latent space" in f.message
    assert f.fix.startswith(f"decode with a {lat_fmt.name} VAE ({lat_fmt.temporal_ratio}× in time")
    assert dict(f.evidence)["pixel_frames"] == [ours, theirs]
    assert "family-mismatch" not in report.codes()  # one finding for one cause


def test_a_frame_rule_difference_alone_is_a_temporal_mismatch():
    # no registered pair differs only in the frame rule; a 4×, 4n (no causal first frame) variant of Wan 2.1 does
    wan = get_format("wan21")
    plain = dataclass_replace(wan, name="wan21-4n", causal_first_frame=False)
    f = check(Latent(smooth((1, 16, 5, 16, 16)), plain, "raw", "NCTHW"), facts("wan21")).finding("temporal-mismatch")
    assert "wan21-4n is 4× in time (frames 4n), wan21 4× (4n+1): 5 latent frames are 20 frames in wan21-4n but " in (
        f.message
    )
    assert "would decode to 17 frames with wan21" in f.message


def test_spatial_and_temporal_ratio_both_named():
    wan = get_format("wan21")
    coarse = dataclass_replace(wan, name="wan21-16x", spatial_ratio=16, temporal_ratio=8, size_multiple=16)
    f = check(Latent(smooth((1, 16, 3, 16, 16)), coarse, "raw", "NCTHW"), facts("wan21")).finding("ratio-mismatch")
    assert "same channels, different spatial ratio — a 16×16 latent is 256×256 px in wan21-16x" in f.message
    assert "; and in time: wan21-16x is 8× in time (frames 8n+1), wan21 4× (4n+1): 3 latent frames are 17" in (
        f.message
    )


@pytest.mark.parametrize(("video", "image"), VIDEO_TO_IMAGE, ids=_ids(VIDEO_TO_IMAGE))
@pytest.mark.parametrize("frames", [5, 1])
def test_recorded_video_latent_to_image_vae(video, image, frames):
    x = smooth((1, video.channels, frames, 16, 16))
    report = check(Latent(x, video, "raw", "NCTHW"), facts(image.name))
    f = report.finding("video-to-image-vae")
    # even one latent frame: dropping the time axis does not move a video VAE's latent into an image VAE's space
    assert f.severity == "error" and report.verdict == "error"
    frame_word = "frame" if frames == 1 else "frames"
    assert f.message == (
        f"a video latent ({frames} latent {frame_word}, NCTHW, recorded as {video.name}) given to an image VAE "
        f"({image.name}-vae.safetensors)"
    )
    assert f.fix.startswith(f"decode it with a {video.name} VAE (a video VAE: {video.temporal_ratio}× in time")
    assert f"does not make a {video.name} latent one of {image.name} ({image.name}-vae.safetensors)" in f.fix


@pytest.mark.parametrize("frames", [5, 1])
def test_bare_video_latent_to_image_vae(frames):
    report = check(smooth((1, 16, frames, 16, 16)), facts("flux1"))
    f = report.finding("video-to-image-vae")
    # a bare [1, 16, 1, h, w] may be an image latent with a stray time axis: a warning, with that fix
    assert f.severity == ("warn" if frames == 1 else "error")
    assert "video formats with 16 channels: wan21, hunyuan_video, cogvideox, cogvideox_2b, cosmos" in f.fix
    assert ("drop the time axis: x[:, :, 0]" in f.fix) == (frames == 1)


@pytest.mark.parametrize(("video", "image"), VIDEO_TO_IMAGE, ids=_ids(VIDEO_TO_IMAGE))
def test_image_latent_to_video_vae(video, image):
    x = smooth((1, image.channels, 16, 16))
    f = check(Latent(x, image, "raw"), facts(video.name)).finding("image-to-video-vae")
    assert f.severity == "error"
    assert f.message.startswith(f"an image latent (NCHW [1, {image.channels}, 16, 16], recorded as {image.name})")
    assert f"given to a video VAE ({video.name}-vae.safetensors), which takes [N, C, T, H, W]" in f.message
    assert f.fix.startswith(f"decode it with a {image.name} VAE (an image VAE); a time axis does not make")
    bare = check(x, facts(video.name)).finding("image-to-video-vae")
    assert bare.fix.endswith("or add a time axis of one latent frame: x[:, :, None]")


def test_bare_video_latent_frames_against_the_vae_frame_rule():
    # 17 source frames (provenance) and 5 latent frames: 4n+1 at 4×; a Cosmos VAE (8n+1 at 8×) expects 3
    lat = Latent(smooth((1, 16, 5, 16, 16)), None, "raw", "NCTHW", Provenance(extra=(("frames", "17"),)))
    f = check(lat, facts("cosmos")).finding("frame-rule")
    assert f.severity == "error"
    assert f.message == (
        "17 pixel frames make 3 latent frames in cosmos (8n+1), but the latent has 5: it was made with another "
        "temporal ratio"
    )


def test_frame_rule_from_provenance():
    wan = get_format("wan21")
    # 17 frames make 5 latent frames (4n+1), but this latent has 4
    lat = Latent(smooth((1, 16, 4, 16, 16)), wan, "raw", "NCTHW", Provenance(extra=(("frames", "17"),)))
    f = check(lat, facts("wan21")).finding("frame-rule")
    assert "17 pixel frames make 5 latent frames in wan21 (4n+1), but the latent has 4" in f.message
    lat = Latent(smooth((1, 16, 4, 16, 16)), wan, "raw", "NCTHW", Provenance(extra=(("frames", "16"),)))
    f = check(lat, facts("wan21")).finding("frame-rule")
    assert "the source video had 16 frames, which breaks wan21's rule (4n+1)" in f.message
    assert f.fix == "re-encode a clip of 4n+1 frames (e.g. 13)"


def test_size_multiple_of_the_family():
    f = check(Latent(smooth((1, 16, 33, 32)), get_format("flux1"), "raw"), facts("flux1")).finding("size-multiple")
    assert f.severity == "warn" and "32×33 cells = 256×264 px, but flux1 models take multiples of 16 px" in f.message
    assert f.fix == "crop the latent to 32×32 cells (256×256 px) or pad it to 32×34 cells (256×272 px)"


# --- spaces -----------------------------------------------------------------------------------------------


def test_model_latent_recorded_as_raw(sd1_raw):
    model = raw_to_model(sd1_raw, SD1)
    f = check(Latent(model, SD1, "raw"), facts("sd1")).finding("space-mismatch")
    assert f.severity == "error"
    assert "recorded as raw space but its statistics are model space" in f.message
    assert f.fix == "pass --space model (or fix the record)"


def test_raw_latent_recorded_as_model(sd1_raw):
    f = check(Latent(sd1_raw, SD1, "model"), facts("sd1")).finding("space-mismatch")
    assert "recorded as model space but its statistics are raw space" in f.message


def test_scaled_twice(sd1_raw):
    twice = raw_to_model(raw_to_model(sd1_raw, SD1), SD1)
    f = check(Latent(twice, SD1, "model"), facts("sd1")).finding("scaled-twice")
    ratio = dict(f.evidence)["ratio_to_raw"]
    # SD1's scale 0.18215 squared is 0.0332; one image's spread scatters around its profile by tens of percent
    assert 0.015 < ratio < 0.07
    assert "the raw→model scaling was applied twice" in f.message
    assert f.fix.startswith("undo one application: x / 0.18215")


def test_unscaled_twice(sd1_raw):
    f = check(Latent(sd1_raw / 0.18215, SD1, "raw"), facts("sd1")).finding("unscaled-twice")
    assert "model→raw was applied to a raw latent" in f.message and "x × 0.18215" in f.fix


def test_scale_only_formats_still_catch_a_missing_scale():
    # the x4 upscaler has no profile: its scale (raw latents have std ≈ 1/0.08333 = 12) is the reference
    x = smooth((1, 4, 32, 32), scale=12.0, seed=2)
    report = check(Latent(x, get_format("sd_x4_upscaler"), "model"), facts("sd_x4_upscaler"))
    f = report.finding("space-mismatch")
    assert "1/scale of sd_x4_upscaler" in dict(f.evidence)["reference"]
    # flux1's scale 0.3611 is too close to 1 for one latent's spread: the check says it cannot tell
    x = smooth((1, 16, 32, 32), scale=2.8, offset=0.1)
    report = check(Latent(x, get_format("flux1")), facts("flux1"))
    f = report.finding("space-unknown")
    assert f.severity == "warn" and "the statistics cannot tell it" in f.message and "--space raw" in f.fix


# --- families ---------------------------------------------------------------------------------------------


def test_recorded_family_mismatch_sd1_sdxl(sd1_raw):
    f = check(Latent(sd1_raw, SD1, "raw"), facts("sdxl")).finding("family-mismatch")
    assert f.evidence_kind == "fact"
    assert f.message.startswith("the latent is recorded as sd1 but sdxl-vae.safetensors is sdxl: same shapes")
    assert "latentbridge transfer` (sd1 → sdxl)" in f.fix


def test_recorded_family_mismatch_flux1_sd3():
    report = check(Latent(smooth((1, 16, 32, 32), scale=2.8), get_format("flux1"), "raw"), facts("sd3"))
    assert "the latent is recorded as flux1 but sd3-vae.safetensors is sd3" in report.finding("family-mismatch").message


def test_fingerprint_catches_an_unrecorded_family(sd1_raw):
    report = check(Latent(sd1_raw, None, "raw"), facts("sdxl"))
    f = report.finding("fingerprint-mismatch")
    assert f.evidence_kind == "statistics"
    assert f.message.startswith("the latent's statistics say sd1 raw (")
    assert "but sdxl-vae.safetensors is sdxl" in f.message
    assert f.fix.startswith("decode with a sd1 VAE")


def test_zoo_a_latent_with_zoo_b_vae():
    from latentbridge import zoo

    if "zoo-b" not in formats() or not zoo.zoo_path("zoo-a").is_file():
        pytest.skip("zoo VAEs are not built yet (src/latentbridge/zoo/*.safetensors, zoo.json)")
    from latentbridge.weights import load_vae

    enc = load_vae("zoo-a", part="encoder")
    z = enc.encode(photo_tensor("chelsea", 256))
    assert check(Latent(z, None, "raw"), facts("zoo-b")).finding("fingerprint-mismatch").severity == "error"
    assert check(Latent(z, None, "raw"), facts("zoo-a")).verdict == "ok"


def fingerprint_of(x: torch.Tensor, shares: dict[tuple[str, str], float]) -> Identification:
    """A fingerprint with given (format, space) -> probability, every candidate fitting its profile."""
    from latentbridge.fingerprint import Candidate

    cands = []
    for (name, space), p in sorted(shares.items(), key=lambda kv: -kv[1]):
        also = ("playground25",) if (name, space) == ("sdxl", "raw") else ()
        cands.append(Candidate(name, space, 8, probability=p, loglik=0.0, distance=1.0, fits=True, also=also))
    return Identification(tuple(x.shape), x.shape[1], 2, tuple(cands), (), GROUPS, 1.0, 7.6)


def test_the_vae_family_counts_each_hypothesis_once():
    # sdxl raw is also playground25 raw: it was counted twice for an SDXL VAE (12 % read as 24 %, no warning)
    x = smooth((1, 4, 32, 32), scale=5.0)
    fp = fingerprint_of(x, {("sd1", "raw"): 0.88, ("sdxl", "raw"): 0.12})
    f = check(Latent(x, None, "raw"), facts("sdxl"), fingerprint=fp).finding("family-doubt")
    assert f.severity == "warn"
    assert f.message.startswith(
        "sd1 raw or sdxl — the statistics cannot tell for sure: sd1 raw 88% of raw latents, "
        "sdxl-vae.safetensors's sdxl 12%; sdxl is known only from published statistics"
    )
    # playground25's VAE is the SDXL VAE: the same raw space, the same probability, the same doubt
    pg = check(Latent(x, None, "raw"), facts("playground25"), fingerprint=fp).finding("family-doubt")
    assert "playground25 12%" in pg.message


def test_another_normalisation_of_the_same_vae_is_named_as_such():
    # a Playground-normalised latent and an SDXL VAE: the right network, but SDXL's scale would decode it wrong
    x = smooth((1, 4, 32, 32), scale=0.5)
    fp = fingerprint_of(x, {("playground25", "model"): 0.96, ("sdxl", "model"): 0.02, ("sd1", "model"): 0.02})
    f = check(Latent(x, None, "model"), facts("sdxl", space="model"), fingerprint=fp).finding("fingerprint-mismatch")
    assert "the latent's statistics say playground25 model (96% of model latents)" in f.message
    # sdxl model only; playground25 model is not counted
    assert "(2.0% by the same statistics): the same VAE, another model-space normalisation" in f.message
    assert f.fix == (
        "the VAE is right but the latent is normalised as playground25: record its format (--format playground25) "
        "so that it is converted with playground25's numbers"
    )


def test_a_recorded_space_conditions_the_family_probability():
    # sd1 overall is 5 % (raw 3 %, model 2 %) — an error on its own; among raw latents it is 3/13 = 23 %: fine
    x = smooth((1, 4, 32, 32), scale=5.0)
    fp = fingerprint_of(
        x, {("sd1", "raw"): 0.03, ("sdxl", "raw"): 0.10, ("sd1", "model"): 0.02, ("sdxl", "model"): 0.85}
    )
    bare = check(x, facts("sd1"), fingerprint=fp)
    assert "family-doubt" in bare.codes("warn") or "fingerprint-mismatch" in bare.codes("error")
    raw = check(Latent(x, None, "raw"), facts("sd1"), fingerprint=fp)
    assert not {"family-doubt", "fingerprint-mismatch"} & set(raw.codes()), raw.findings
    # recorded as model: sd1 is 2/87 = 2.3 % of the model-space hypotheses: an error, said so
    model = check(Latent(raw_to_model(x, SD1), None, "model"), facts("sd1"), fingerprint=fp)
    f = model.finding("fingerprint-mismatch")
    assert "the latent's statistics say sdxl model (98% of model latents)" in f.message and "(2.3% by" in f.message


def test_shared_raw_space_is_fine():
    report = check(Latent(smooth((1, 4, 32, 32), scale=6.0), get_format("playground25"), "raw"), facts("sdxl"))
    f = report.finding("shared-raw-space")
    assert f.severity == "info" and "playground25 and sdxl share one VAE (same raw space)" in f.message


def test_vae_without_format_gets_the_fingerprint(sd1_raw):
    report = check(Latent(sd1_raw, None, "raw"), facts(None))
    f = report.finding("vae-family-unknown")
    assert "does not say which latent space it belongs to; the latent's statistics say sd1 raw" in f.message
    assert f.fix == "pass the VAE's format (--vae-format) to have the pairing checked"


def test_family_without_profile_says_it_cannot_confirm():
    report = check(Latent(smooth((1, 16, 32, 32), scale=2.8, offset=0.1), get_format("flux1"), "raw"), facts("flux1"))
    f = report.finding("no-profile")
    assert f.message.startswith("no reference profile for flux1")
    assert "latentbridge calibrate --vae flux1-vae.safetensors --images DIR --format flux1" in f.fix
    assert report.verdict == "ok"


def test_a_confident_fingerprint_doubts_an_unprofiled_vae(sd1_raw):
    # three SD1 latents (a batch: the evidence adds up) against a 4-channel 4× VAE with no profile
    report = check(Latent(sd1_raw, None, "raw"), facts("cascade_b"))
    f = report.finding("family-doubt")
    assert f.severity == "warn"
    # and the spread (std ≈ 5) is nothing like cascade_b raw latents (std ≈ 0.43, the inverse of its scale)
    assert report.verdict == "error" and "scaled-twice" in report.codes("error")  # cascade_b scales up by 2.33
    assert "the latent's statistics fit sd1 raw well (" in f.message and "(sd1 is 8×, cascade_b 4×)" in f.message
    assert "cascade_b has no reference profile to compare" in f.message and "latentbridge calibrate" in f.fix


def test_a_demo_zoo_profile_does_not_doubt_a_real_family_without_one():
    """A FLUX.1/SD3 latent may fit zoo-c's profile (the only 16-ch image one); that says nothing about it."""
    from latentbridge import zoo
    from latentbridge.weights import load_vae

    if not zoo.zoo_path("zoo-c").is_file():
        pytest.skip("zoo VAEs are not built yet (src/latentbridge/zoo/*.safetensors, zoo.json)")
    z = load_vae("zoo-c", part="encoder").encode(photo_tensor("chelsea", 256))
    report = check(Latent(z, None, "raw"), facts("flux1"))
    assert identify(z).best.format == "zoo-c" and identify(z).confident  # it is zoo-c's, confidently
    assert "family-doubt" not in report.codes() and report.verdict == "ok"
    f = report.finding("no-profile")
    assert f.severity == "info" and "fingerprint: zoo-c" in f.message


def test_statistics_that_fit_no_profile_neither_confirm_nor_refute(sd1_raw):
    report = check(Latent(sd1_raw[:1] * 0.001 + 40, None, "raw"), facts("sd1"))
    f = report.finding("no-fit")
    assert f.severity == "info" and "fit no reference profile well (nearest: " in f.message
    assert not {"family-mismatch", "fingerprint-mismatch"} & set(report.codes())


def test_decoder_missing():
    f = check(smooth((1, 4, 16, 16), scale=5), dataclass_replace(facts("sd1"), has_decoder=False)).finding("no-decoder")
    assert f.severity == "warn" and f.fix == "pass the full VAE file or a decoder file of the same family"


def dataclass_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


# --- facts from real weight files -------------------------------------------------------------------------


def test_vae_facts_from_weights_headers(shared_weights):
    from latentbridge.weights import describe

    f = vae_identity(describe(shared_weights / "taef2" / "taef2_decoder.pth"))
    assert (f.format.name, f.native_space, f.channels, f.spatial_ratio) == ("flux2", "model", 128, 16)
    f = vae_identity(describe(shared_weights / "vaeapprox" / "vaeapprox-sdxl.pt"))
    assert f.format.name == "sdxl" and set(f.candidates) >= {"sd1", "sdxl"}  # known file: sdxl by its sha256
    with pytest.raises(TypeError, match="check needs a VAE, a VaeIdentity, a WeightsInfo or a diffusers autoencoder"):
        vae_identity("sd1")


# --- preflight --------------------------------------------------------------------------------------------


def test_image_scores_of_photos_and_noise():
    photo = (photo_tensor("astronaut", 256) + 1) / 2
    small = torch.nn.functional.avg_pool2d(photo, 8)
    s = image_scores(small)[0]
    assert -3.5 < s["slope"] < -1.0 and 0.1 < s["saturation"] < 0.6  # a photo: 1/f-like, moderately saturated
    noise = image_scores(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))[0]
    assert abs(noise["slope"]) < 0.6 and noise["saturation"] > 0.5


def test_preflight_scores_every_candidate(sd1_raw, sd1_decoder):
    report = check(Latent(sd1_raw[:1], SD1, "raw"), sd1_decoder, preflight=True, preflight_cells=24)
    labels = [s.label for s in report.preflight]
    assert "sd1 rgb preview (raw)" in labels and "sdxl rgb preview (raw)" in labels
    vae_row = next(s for s in report.preflight if s.decoder == "vae")
    assert vae_row.natural, vae_row.to_dict()  # the VAE's decode of its own latent looks like a photo
    assert "preflight-unnatural" not in report.codes()


def test_preflight_flags_a_blown_out_decode(sd1_raw, sd1_decoder):
    # ten times the raw spread (a double un-scaling, say, that slipped through): the decode saturates
    report = check(Latent(sd1_raw[:1] * 10, SD1, "raw"), sd1_decoder, preflight=True)
    f = report.finding("preflight-unnatural")
    assert (
        f.severity == "warn"
        and "the VAE's decode of the centre crop (raw space) does not look like a photo" in f.message
    )


@pytest.fixture(scope="module")
def zoo_pair():
    from latentbridge import zoo

    if not all(zoo.zoo_path(n).is_file() for n in ("zoo-a", "zoo-b")):
        pytest.skip("zoo VAEs are not built yet (src/latentbridge/zoo/*.safetensors)")
    from latentbridge.weights import load_vae

    return load_vae("zoo-a"), load_vae("zoo-b")  # both halves: the cycle test needs the encoder too


def test_preflight_cycle_tells_own_latents_from_another_space(zoo_pair):
    from latentbridge.checks import cycle_reference

    zoo_a, zoo_b = zoo_pair
    image = photo_tensor("astronaut", 128)
    ref = cycle_reference(zoo_a, 16)  # once for both checks (16 cells: the 128-px latents' size)
    own = check(Latent(zoo_a.encode(image), None, "raw"), zoo_a, preflight=True, cycle_reference=ref)
    other = check(Latent(zoo_b.encode(image), None, "raw"), zoo_a, preflight=True, cycle_reference=ref)
    own, other = own.finding("preflight-cycle"), other.finding("preflight-cycle")
    assert dict(own.evidence)["reference_ratio"] == round(ref, 3)
    threshold = dict(own.evidence)["threshold"]
    # measured: own 1.20, zoo-b's latent 3.60 relative to zoo-a's baseline; the threshold (1.44, the largest own
    # ratio over four autoencoders' training latents) sits between with room on both sides
    assert own.severity == "info" and dict(own.evidence)["relative_ratio"] < threshold
    assert "decode→encode keeps the latent about as well as zoo-a's own latents" in own.message
    assert other.severity == "warn" and dict(other.evidence)["relative_ratio"] > 1.5 * threshold
    assert other.message.startswith("the latent is not a fixed point of zoo-a: one decode→encode moves it ")
    assert other.fix.startswith("the latent is probably from another latent space")


def test_preflight_cycle_without_a_threshold_says_so(zoo_pair):
    import math

    from latentbridge.profiles import calibration

    uncalibrated = dataclass_replace(calibration(), cycle_threshold=math.inf)
    z = zoo_pair[0].encode(photo_tensor("chelsea", 64))
    f = check(Latent(z, None, "raw"), zoo_pair[0], preflight=True, calib=uncalibrated).finding(
        "preflight-cycle-unavailable"
    )
    assert f.severity == "info" and "needs its threshold in profiles.json" in f.message
    assert f.fix == "rebuild it: scripts/build_profiles.py"


def test_cycle_reference_needs_both_halves(sd1_decoder):
    from latentbridge.checks import cycle_reference

    with pytest.raises(ValueError, match=r"cycle_reference needs a VAE with an encoder and a decoder; .*lacks one"):
        cycle_reference(sd1_decoder, 16)


# --- the report and the command --------------------------------------------------------------------------


def test_report_to_dict_is_json(sd1_raw):
    report = check(Latent(sd1_raw, SD1, "model"), facts("sd1"))
    data = json.loads(json.dumps(report.to_dict(), default=str))
    assert data["verdict"] == "error" and data["exit_code"] == 2
    assert data["findings"][0]["code"] == "space-mismatch" and "observed_std" in data["findings"][0]["evidence"]
    assert isinstance(report, Report) and EXIT_CODES == {"ok": 0, "warn": 1, "error": 2}


@pytest.fixture(scope="module")
def latent_files(tmp_path_factory, sd1_raw):
    from latentbridge.files import write_latent

    d = tmp_path_factory.mktemp("latents")
    paths = {
        "ok": write_latent(Latent(sd1_raw[:1], SD1, "raw"), d / "ok.latent"),
        "noise": write_latent(Latent(torch.randn(1, 4, 64, 64), SD1, "raw"), d / "noise.latent"),
        "zeros": write_latent(Latent(torch.zeros(1, 4, 32, 32), SD1, "raw"), d / "zeros.latent"),
    }
    (d / "broken.latent").write_bytes(b"not a latent at all")
    paths["broken"] = d / "broken.latent"
    return paths


@pytest.mark.parametrize(("name", "code", "word"), [("ok", 0, "OK"), ("noise", 1, "WARN"), ("zeros", 2, "ERROR")])
def test_check_command_exit_codes(shared_weights, latent_files, name, code, word):
    vae = str(shared_weights / "vaelight-sd1" / "VAEpreview.onnx")
    result = runner.invoke(app, ["check", str(latent_files[name]), "--vae", vae], env={"COLUMNS": "200"})
    assert result.exit_code == code, result.output
    assert result.output.startswith(word)
    result = runner.invoke(app, ["check", str(latent_files[name]), "--vae", vae, "--json"])
    assert json.loads(result.output)["exit_code"] == code


def test_check_command_could_not_check_exits_2(shared_weights, latent_files):
    vae = str(shared_weights / "vaelight-sd1" / "VAEpreview.onnx")
    result = runner.invoke(app, ["check", str(latent_files["broken"]), "--vae", vae])
    assert result.exit_code == 2 and "error: could not check:" in result.output
    result = runner.invoke(app, ["check", str(latent_files["ok"])])  # --vae missing: click's usage error
    assert result.exit_code == 2 and "Missing option '--vae'" in result.output


def test_check_command_preflight_and_family_error(shared_weights, latent_files):
    approx = str(shared_weights / "vaeapprox" / "vaeapprox-sdxl.pt")
    result = runner.invoke(app, ["check", str(latent_files["ok"]), "--vae", approx], env={"COLUMNS": "200"})
    assert (
        result.exit_code == 2 and "family-mismatch" in result.output and "fix: decode with a sd1 VAE" in result.output
    )
    light = str(shared_weights / "vaelight-sd1" / "VAEpreview.onnx")
    result = runner.invoke(
        app, ["check", str(latent_files["ok"]), "--vae", light, "--preflight"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert "preflight: centre crop decoded per candidate" in result.output and "sd1 rgb preview (raw)" in result.output


def test_check_command_preflight_runs_the_cycle_test_with_both_halves(tmp_path):
    from latentbridge import codec, zoo
    from latentbridge.files import write_latent
    from latentbridge.photos import photo_tensor
    from latentbridge.weights import load_vae

    if not zoo.zoo_path("zoo-a").exists():
        pytest.skip(f"zoo VAE zoo-a not trained yet ({zoo.zoo_path('zoo-a')} missing)")
    path = write_latent(codec.encode(load_vae("zoo-a"), photo_tensor("chelsea", 128)), tmp_path / "a.latent")
    own = runner.invoke(app, ["check", str(path), "--vae", "zoo-a", "--preflight"], env={"COLUMNS": "200"})
    assert own.exit_code == 0, own.output
    assert "preflight-cycle: decode→encode keeps the latent about as well as zoo-a's own latents" in own.output
    other = runner.invoke(app, ["check", str(path), "--vae", "zoo-b", "--preflight"], env={"COLUMNS": "200"})
    assert other.exit_code == 2 and "preflight-cycle: the latent is not a fixed point of zoo-b" in other.output


def test_decode_command_runs_the_check_first(shared_weights, latent_files, tmp_path):
    vae = str(shared_weights / "vaelight-sd1" / "VAEpreview.onnx")
    out = tmp_path / "zeros.png"
    result = runner.invoke(app, ["decode", str(latent_files["zeros"]), "--vae", vae, "-o", str(out)])
    assert result.exit_code == 1 and not out.exists()
    assert "refusing to decode, `latentbridge check` found all-zero: the latent is all zeros" in result.output
    assert "Pass --force to decode anyway" in result.output
    result = runner.invoke(app, ["decode", str(latent_files["zeros"]), "--vae", vae, "-o", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "warning: check all-zero" in result.output
