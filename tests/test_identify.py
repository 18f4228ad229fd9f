"""identify(): format and space from the values, calibrated confidence, honest ambiguity; profiles; calibrate."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.fingerprint import Identification, family_log_prior, identify, shape_candidates
from latentbridge.formats import formats, get_format, raw_to_model
from latentbridge.latent import Latent
from latentbridge.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, photo_tensor
from latentbridge.profiles import (
    Profile,
    affine,
    builtin_profiles,
    calibrate,
    calibration,
    is_identity,
    latent_features,
    load_user_profiles,
    profile_set,
    save_user_profile,
    spectral_slope,
    transform_profile,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def light(shared_weights):
    """VAElight's SD1 encoder (raw SD1 latents) — the real SD1 encoder that runs here."""
    from latentbridge.weights import load_vae

    return load_vae([str(shared_weights / "vaelight-sd1" / "VAEencoder.onnx")], part="encoder")


@pytest.fixture(scope="module")
def sd1_heldout(light) -> list[torch.Tensor]:
    """Raw SD1 latents of the held-out photos at 256 px (never used to build the profiles)."""
    return [light.encode(photo_tensor(name, 256)) for name in HELDOUT_PHOTOS]


def _zoo(name: str):
    from latentbridge import zoo

    if not zoo.zoo_path(name).is_file() or name not in formats():
        pytest.skip(f"zoo VAE {name} is not built yet ({zoo.zoo_path(name)} / zoo.json missing)")
    from latentbridge.weights import load_vae

    return load_vae(name, part="encoder")


# --- the registry walk: every format is a shape candidate of its own geometry -------------------------------


@pytest.mark.parametrize("fmt", list(formats().values()), ids=list(formats()))
@pytest.mark.parametrize("space", ["raw", "model"])
def test_every_format_is_a_candidate_of_its_shape(fmt, space):
    channels, _ = fmt.space_shape(space)
    cands = shape_candidates(channels, fmt.dims)
    covered = [c for c in cands if c.covers(fmt.name) and (c.space == space or c.same_spaces)]
    # playground25's raw space is sdxl's: one hypothesis, "sdxl raw (= playground25 raw)"
    assert covered, f"{fmt.name} {space} missing from {[c.label for c in cands]}"
    assert all(c.spatial_ratio == fmt.space_shape(c.space)[1] for c in covered if not c.unpacked)


def test_packed_formats_offer_the_unpacked_model_hypothesis():
    labels = [c.label for c in shape_candidates(32, 2)]
    assert "flux2 model (unpacked)" in labels and "flux2 raw" in labels and "sana raw" in labels


# --- features and profile maths ----------------------------------------------------------------------------


def test_spectral_slope_tells_noise_from_image_like_fields():
    g = torch.Generator().manual_seed(0)
    white = torch.randn(4, 3, 64, 64, generator=g)
    # 1/f amplitude (power ∝ f^-2): shape white noise in the Fourier domain
    fy = torch.fft.fftfreq(64)[:, None]
    fx = torch.fft.fftfreq(64)[None, :]
    radius = (fy**2 + fx**2).sqrt().clamp_min(1 / 64)
    pink = torch.fft.ifft2(torch.fft.fft2(white) / radius).real
    # tolerance: one slope of a 64² field scatters with a std of about 0.10 (measured over 150 fields);
    # 0.4 is four of those for the largest of 12 estimates
    assert np.abs(spectral_slope(white)).max() < 0.4
    assert np.abs(spectral_slope(pink) + 2).max() < 0.4


@pytest.mark.parametrize(
    "fmt",
    [f for f in formats().values() if f.patch == 1 and f.norm_source != "vae" and not is_identity(f)],
    ids=lambda f: f.name,
)
def test_derived_model_profile_matches_features_of_converted_latents(fmt):
    """transform_profile's per-channel affine algebra equals converting the latent and measuring again."""
    g = torch.Generator().manual_seed(1)
    shape = (2, fmt.channels, 3, 16, 16) if fmt.dims == 3 else (2, fmt.channels, 16, 16)
    raw = torch.randn(shape, generator=g, dtype=torch.float64).cumsum(-1) + 2
    a, b = affine(fmt)
    f_raw, f_model = latent_features(raw)[0], latent_features(raw_to_model(raw, fmt))[0]
    # raw_to_model computes in float32: the identities hold to float32 rounding (~1e-7 relative, summed over
    # 256-value means), so 1e-5
    np.testing.assert_allclose(f_model.mean, a * f_raw.mean + b, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f_model.logstd, f_raw.logstd + np.log(a), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f_model.corr, f_raw.corr, atol=1e-4)
    np.testing.assert_allclose(f_model.slope, f_raw.slope, atol=1e-4)


def test_transform_profile_round_trips_and_twice_is_scale_squared():
    prof = next(p for p in builtin_profiles() if p.key == ("sd1", "raw"))
    fmt = get_format("sd1")
    back = transform_profile(transform_profile(prof, fmt, 1), fmt, -1)
    assert back.space == "raw"
    np.testing.assert_allclose(back.mean.center, prof.mean.center, rtol=1e-12)
    twice = transform_profile(prof, fmt, 2)
    assert twice.space == "raw"  # two applications of raw→model land on the "raw" label: the check names them
    np.testing.assert_allclose(np.asarray(twice.pooled_std), np.asarray(prof.pooled_std) * 0.18215**2, rtol=1e-12)


def test_profile_json_round_trip_and_validation():
    for prof in builtin_profiles():
        again = Profile.from_dict(json.loads(json.dumps(prof.to_dict())))
        assert again.key == prof.key and again.groups == prof.groups
        np.testing.assert_allclose(again.pooled_std, prof.pooled_std, rtol=1e-5)  # stored to 6 digits
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        Profile.from_dict({**builtin_profiles()[0].to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="space must be 'raw' or 'model', got 'latent'"):
        dataclasses.replace(builtin_profiles()[0], space="latent")


def test_means_and_stds_are_scored_jointly():
    """An image's contrast moves every channel's std together: the profiles know it and do not count it 4×."""
    from latentbridge.profiles import JOINT_SHRINK

    profiles = {p.key: p for p in builtin_profiles()}
    sd1 = np.asarray(profiles[("sd1", "raw")].joint_corr).reshape(8, 8)
    np.testing.assert_allclose(sd1, sd1.T, atol=1e-5)  # stored to 6 digits
    assert np.linalg.eigvalsh(sd1).min() > 0.05  # shrinkage keeps it well conditioned
    assert sd1[4:, 4:][np.triu_indices(4, 1)].mean() > 0.5
    sdxl = np.asarray(profiles[("sdxl", "raw")].joint_corr).reshape(8, 8)
    np.testing.assert_allclose(sdxl[:4, :4], np.eye(4))  # published: channel means carry no transferable link
    rho = (1 - JOINT_SHRINK) * calibration().transfer.logstd_corr
    np.testing.assert_allclose(sdxl[4:, 4:][np.triu_indices(4, 1)], rho, rtol=1e-4)


def test_shipped_zoo_profiles_belong_to_the_shipped_zoo_files():
    """A retrained zoo VAE has a new latent space: its profile must be rebuilt (scripts/build_profiles.py)."""
    import hashlib

    from latentbridge import zoo

    checked = 0
    for prof in builtin_profiles():
        if prof.kind == "measured" and zoo.is_zoo_name(prof.format) and zoo.zoo_path(prof.format).is_file():
            sha = hashlib.sha256(zoo.zoo_path(prof.format).read_bytes()).hexdigest()
            assert prof.vae_sha256 == sha, f"{prof.label} was measured on another {prof.format}: rebuild profiles.json"
            checked += 1
    if not checked:
        pytest.skip("no zoo VAE files with shipped profiles in this checkout")


def test_shipped_profiles_cover_every_encoder_that_runs_here():
    keys = {p.key for p in builtin_profiles()}
    assert {("sd1", "raw"), ("sdxl", "raw"), ("wan21", "raw"), ("mochi", "raw")} <= keys
    sdxl = next(p for p in builtin_profiles() if p.key == ("sdxl", "raw"))
    assert sdxl.kind == "published" and "Playground" in sdxl.source


def test_shipped_calibration_is_honest():
    """On leave-one-photo-out latents the confidence is not above the accuracy (the point of the temperature)."""
    report = calibration().report
    assert report["rows"] > 100
    # tolerance: over-confidence is the harmful direction; 0.03 is about two standard errors of an accuracy
    # near 0.9 on a few hundred rows. Under-confidence is allowed up to 0.1 (a cautious answer stays usable).
    assert report["mean_confidence"] <= report["accuracy"] + 0.03
    assert report["accuracy"] - report["mean_confidence"] < 0.1
    assert report["log_loss"] <= report["log_loss_T1"]


# --- identification on real latents -----------------------------------------------------------------------


def test_sd1_latents_identified_in_both_spaces(sd1_heldout):
    """SD1 vs SDXL (published statistics only) is often close on one latent: said so, never wrongly confident."""
    fmt = get_format("sd1")
    for z in sd1_heldout:
        for space, x in (("raw", z), ("model", raw_to_model(z, fmt))):
            ident = identify(x)
            assert ident.best.space == space, ident.summary
            top2 = [c.format for c in ident.candidates[:2]]
            assert "sd1" in top2 and ident.family_probability("sd1") > 0.3, ident.summary
            if ident.confident:
                assert ident.best.format == "sd1", ident.summary
            else:
                assert " or " in ident.summary  # "sd1 raw or sdxl raw (= playground25 raw), 73/27"
        raw = identify(z)
        # the 4× formats share the channel count: listed, never hidden
        assert {"sd_x4_upscaler", "cascade_b"} <= {c.format for c in raw.shape_only}
        assert set(raw.ratios()) == {4, 8}


def test_zoo_a_and_zoo_b_told_apart_on_heldout_photos():
    encoders = {name: _zoo(name) for name in ("zoo-a", "zoo-b")}
    for name, vae in encoders.items():
        for photo in HELDOUT_PHOTOS:
            for size in (128, 256):
                ident = identify(vae.encode(photo_tensor(photo, size)))
                assert ident.best.format == name, f"{name} {photo} {size}: {ident.summary}"
                assert ident.family_probability(name) > 0.5


def test_batch_evidence_adds_up(sd1_heldout):
    batch = torch.cat(sd1_heldout)
    single = min(identify(z).best.probability for z in sd1_heldout)
    joint = identify(batch)
    assert joint.best.format == "sd1" and joint.best.probability >= single


def test_layouts_of_a_latent_value_are_honoured(sd1_heldout):
    z = sd1_heldout[0]
    nhwc = Latent(z.permute(0, 2, 3, 1), get_format("sdxl"), "model", "NHWC")  # recorded metadata is ignored
    ident = identify(nhwc)
    assert ident.channels == 4 and ident.best.format == "sd1" and ident.best.space == "raw"
    assert identify(z[0]).shape == (1, 4, 32, 32)  # CHW gets a batch of one


@pytest.mark.parametrize(
    ("tensor", "flag", "text"),
    [
        (torch.zeros(1, 4, 16, 16), "all-zero", "all zeros: nothing to fingerprint"),
        (torch.full((1, 4, 16, 16), 0.5), "constant", "constant: nothing to fingerprint"),
        (torch.tensor(float("nan")).expand(1, 4, 16, 16).clone(), "non-finite", "contains NaN/inf"),
        (torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(3)), "noise-like", "i.i.d. noise"),
    ],
    ids=["zeros", "constant", "nan", "noise"],
)
def test_values_that_cannot_be_fingerprinted_say_so(tensor, flag, text):
    ident = identify(tensor)
    assert ident.flags == (flag,)
    assert text in ident.summary and "sd1 raw" in ident.summary
    assert ident.candidates == ()


def test_ambiguity_is_reported_not_guessed(sd1_heldout):
    base = profile_set(include_builtin=True)
    twin = dataclasses.replace(base[("sd1", "raw")], format="sd1-twin")
    ident = identify(sd1_heldout[0], profiles={("sd1", "raw"): base[("sd1", "raw")], ("sd1-twin", "raw"): twin})
    assert not ident.confident
    assert ident.summary.startswith("sd1 raw or sd1-twin raw, 50/50") or ident.summary.startswith(
        "sd1-twin raw or sd1 raw, 50/50"
    )


def test_the_prior_is_uniform_over_latent_spaces_then_raw_model_then_formats():
    labels = [("sd1", "raw"), ("sd1", "model"), ("sdxl", "raw"), ("sdxl", "model"), ("playground25", "model")]
    labels += [("cosmos", "raw"), ("my-vae", "raw")]
    prior = np.exp(family_log_prior(labels))
    # SD1: 1/2 + 1/2; SDXL's one VAE: raw 1/2, two model normalisations 1/4 each; one-hypothesis spaces: 1
    np.testing.assert_allclose(prior, [0.5, 0.5, 0.5, 0.25, 0.25, 1.0, 1.0])


def test_the_prior_keeps_sdxl_from_outweighing_sd1(sd1_heldout):
    """SDXL is seen three ways (sdxl raw/model, playground25 model): a flat prior gave its one VAE 3/2 of SD1's mass."""
    ident = identify(sd1_heldout[0])
    logits = np.array([c.loglik for c in ident.candidates]) / calibration().temperature
    flat = np.exp(logits - logits.max())
    flat /= flat.sum()
    sdxl = np.array([c.format in ("sdxl", "playground25") for c in ident.candidates])
    prior_mass = sum(c.probability for c in ident.candidates if c.format in ("sdxl", "playground25"))
    # relative to flat, only the two SDXL model-space forms lose weight (1/4 instead of 1/2): never more mass
    assert prior_mass <= flat[sdxl].sum() + 1e-12
    assert math.isclose(sum(c.probability for c in ident.candidates), 1.0, rel_tol=1e-9)


def test_conditioning_on_a_space_renormalises(sd1_heldout):
    ident = identify(sd1_heldout[0])
    raw = ident.conditional("raw")
    assert raw and all(c.space == "raw" or c.same_spaces for c, _ in raw)
    # 1e-9: a sum of a handful of float64 probabilities
    assert math.isclose(sum(p for _, p in raw), 1.0, rel_tol=1e-9)
    total = sum(c.probability for c, _ in raw)
    assert all(math.isclose(p, c.probability / total, rel_tol=1e-9) for c, p in raw)
    assert raw[0][0].format == "sd1"


def test_unprofiled_candidates_are_listed_as_such():
    g = torch.Generator().manual_seed(4)
    smooth = torch.randn(1, 16, 32, 32, generator=g).cumsum(-1).cumsum(-2)
    ident = identify(smooth, profiles={})
    assert ident.candidates == ()
    assert ident.summary.startswith("possible by shape, no profile: sd3 raw, sd3 model, flux1 raw, flux1 model")


def test_a_latent_far_from_every_profile_matches_none(sd1_heldout):
    # squeezed and shifted: shapes fit, statistics (std 0.005, means near 40) fit no profile in either space
    # (published profiles are vague: a milder oddity can still "fit" SDXL's broad published spreads)
    odd = sd1_heldout[0] * 0.001 + 40
    ident = identify(odd)
    assert not ident.fits_any
    assert ident.summary.startswith("matches no profile well (nearest: ")


def test_identification_to_dict_is_json(sd1_heldout):
    data = json.loads(json.dumps(identify(sd1_heldout[0]).to_dict()))
    assert data["candidates"][0]["format"] == "sd1" and data["geometry"].startswith("4-ch image latent (4×:")
    assert math.isclose(sum(c["probability"] for c in data["candidates"]), 1.0, abs_tol=1e-3)  # rounded to 4


# --- calibrate: user profiles ----------------------------------------------------------------------------


def test_calibrate_builds_a_profile_identify_then_uses(light, tmp_path, sd1_heldout):
    images = [photo_tensor(name, 200)[0] for name in TRAIN_PHOTOS[:6]]
    prof = calibrate(light, images, format="my-light", sizes=(128,), crops=2, seed=5)
    assert prof.key == ("my-light", "raw") and prof.kind == "user" and prof.samples == 12
    path = save_user_profile(prof, tmp_path)
    assert path.name == "my-light.raw.json" and not list(tmp_path.glob(".tmp-*"))
    assert load_user_profiles(tmp_path)[0].key == prof.key
    ident = identify(sd1_heldout[0], user_dir=tmp_path)
    assert {"my-light", "sd1"} <= {c.format for c in ident.candidates}
    with pytest.raises(ValueError, match="calibration size 100 is not a multiple of the VAE's ratio 8"):
        calibrate(light, images, sizes=(100,))


def test_a_broken_user_profile_is_named(tmp_path):
    (tmp_path / "bad.raw.json").write_text("{}")
    with pytest.raises(Exception, match=r"bad.raw.json is not a latentbridge profile .*calibrate again"):
        load_user_profiles(tmp_path)


def test_calibrate_and_identify_commands(shared_weights, tmp_path, light):
    from PIL import Image

    from latentbridge.files import write_latent

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in TRAIN_PHOTOS[:4]:
        array = ((photo_tensor(name, 160)[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy()
        Image.fromarray(array).save(folder / f"{name}.png")
    env = {"LATENTBRIDGE_HOME": str(tmp_path / "home")}
    encoder = str(shared_weights / "vaelight-sd1" / "VAEencoder.onnx")
    result = runner.invoke(
        app,
        ["calibrate", "--vae", encoder, "--images", str(folder), "--format", "cli-light", "--sizes", "128"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "profile cli-light raw: 8 latents" in result.output
    assert (tmp_path / "home" / "profiles" / "cli-light.raw.json").is_file()

    latent_file = tmp_path / "a.safetensors"
    write_latent(
        Latent(light.encode(photo_tensor("chelsea", 256)), get_format("sdxl"), "raw"),
        latent_file,
        container="safetensors",
    )
    result = runner.invoke(app, ["identify", str(latent_file), "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["recorded"] == "sdxl raw"  # shown, not used
    assert data["candidates"][0]["format"] in ("sd1", "cli-light")
    assert "cli-light" in {c["format"] for c in data["candidates"]}
    assert {c["profile_kind"] for c in data["candidates"]} >= {"measured", "user"}
    result = runner.invoke(app, ["identify", str(latent_file)], env={**env, "COLUMNS": "200"})
    assert result.exit_code == 0 and "possible by shape, no profile: sd_x4_upscaler raw" in result.output
    assert "value checks: lag1 autocorrelation" in result.output
    # the table names each profile's kind; -v adds where it comes from (the calibration's photos and encoder)
    assert "│ user " in result.output and "crops encoded by" not in result.output
    verbose = runner.invoke(app, ["identify", str(latent_file), "-v"], env={**env, "COLUMNS": "400"})
    assert verbose.exit_code == 0 and "user: 4 images × sizes [128]" in verbose.output

    result = runner.invoke(app, ["calibrate", "--vae", encoder, "--images", str(tmp_path / "none")], env=env)
    assert result.exit_code == 1 and "not a folder; pass a folder of PNG/JPEG/WebP photos" in result.output


def test_identification_dataclass_is_frozen(sd1_heldout):
    ident = identify(sd1_heldout[0])
    assert isinstance(ident, Identification)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ident.channels = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("shape", "layout", "names"),
    [
        ((1, 13, 16, 6, 8), "NTCHW", ("cogvideox", "wan21")),  # diffusers CogVideoX latents are [B, F, C, H, W]
        ((1, 24, 20, 4), "NHWC", ("sd1", "sdxl")),  # channels-last image
        ((24, 20, 4), "HWC", ("sd1",)),  # channels-last without a batch axis
        ((1, 5, 14, 10), "TCHW", ()),  # 14 channels fit no registered format in any layout
    ],
)
def test_no_format_for_the_channel_count_suggests_the_layout_that_fits(shape, layout, names):
    ident = identify(torch.randn(shape))
    assert ident.candidates == () and ident.shape_only == ()
    if not names:
        assert ident.layout_hints == ()
        return
    assert len(ident.layout_hints) == 1 and ident.layout_hints[0].endswith(f"pass --layout {layout}")
    assert all(name in ident.layout_hints[0] for name in names)
    assert ident.layout_hints[0] in ident.summary


def test_a_video_of_image_latents_is_identified_frame_by_frame(sd1_heldout):
    """AnimateDiff keeps SD1 latents [N, 4, T, h, w]: no video format has 4 channels, the frames are sd1's."""
    clip = torch.stack([z[0] for z in sd1_heldout], dim=1)[None]  # [1, 4, 3, 32, 32]: three frames
    ident = identify(clip)
    assert ident.frames == 3 and ident.shape == (1, 4, 3, 32, 32)
    assert ident.best is not None and ident.best.format == "sd1" and ident.best.space == "raw"
    assert ident.summary.startswith("3 frames of image latents (an image VAE's, stacked in time): sd1 raw")
    assert ident.to_dict()["frames"] == 3
    svd = identify(clip.transpose(1, 2))  # SVD keeps them frames-first, [N, T, 4, h, w]: the layout is named
    assert svd.frames == 0 and any(
        "it is 3 frames of a 4-ch image latent (sd1," in h and h.endswith("--layout NTCHW") for h in svd.layout_hints
    )


def test_a_video_latent_that_fits_another_channel_count_names_the_other_layout():
    """[1, 12, 16, h, w] is 12-channel Mochi as stored, or 12 frames of 16-channel CogVideoX read frames-first."""
    ident = identify(torch.randn(1, 12, 16, 6, 8))
    assert {c.format for c in (*ident.candidates, *ident.shape_only)} == {"mochi"}
    assert any("16-ch video latent (" in h and "cogvideox" in h and "NTCHW" in h for h in ident.layout_hints)


def test_layout_hints_only_where_the_layout_is_open():
    assert identify(torch.randn(1, 16, 8, 8), layout_known=False).layout_hints == ()  # NCHW fits: no TCHW reading
    cog = torch.randn(1, 12, 16, 6, 8)
    assert identify(cog).layout_hints and identify(cog, layout_known=True).layout_hints == ()


def test_cli_identify_reads_token_sequences_with_their_format(tmp_path):
    path = tmp_path / "tokens.pt"
    torch.save(torch.randn(1, 1536, 64), path)
    result = runner.invoke(app, ["identify", str(path), "--grid", "32x48", "--format", "flux1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "read: unpacked a diffusers flux1 token sequence on a 32x48 grid" in result.output
    assert "16-ch" in result.output
    alone = runner.invoke(app, ["identify", str(path), "--format", "flux1"])
    assert alone.exit_code == 2 and "add --grid" in alone.output
