"""Diagnostics: statistics, histograms, correlations and spectra of constructed latents; references; figures."""

from __future__ import annotations

import itertools
import math
import sys

import pytest
import torch
from matplotlib.figure import Figure

from latentbridge import diagnostics as dg
from latentbridge.errors import ShapeError
from latentbridge.formats import NormStats, formats, get_format, model_to_raw
from latentbridge.latent import Latent


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensor ops on a shared 2-core machine run ~100× faster on one intra-op thread; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _orthonormal_pair(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two zero-mean, orthogonal, unit-variance float64 vectors of length n (exact up to rounding)."""
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q, _ = torch.linalg.qr(x - x.mean(0))  # columns: combinations of zero-mean columns, so zero mean
    return q[:, 0] * math.sqrt(n), q[:, 1] * math.sqrt(n)


def test_channel_stats_are_exact_and_skip_nonfinite_values():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    x[1, 2, 3, 3] = math.nan
    stats = dg.channel_stats(Latent(x, None, "raw"))
    values = x.permute(1, 0, 2, 3).reshape(3, -1).double()
    assert stats.count == 32 and stats.nonfinite == 1 and stats.space == "raw"
    for c in range(2):
        assert stats.mean[c] == pytest.approx(float(values[c].mean()), abs=1e-12)
        assert stats.std[c] == pytest.approx(float(values[c].std(correction=0)), abs=1e-12)
        assert (stats.min[c], stats.max[c]) == (float(values[c].min()), float(values[c].max()))
    finite = values[2][torch.isfinite(values[2])]
    assert stats.mean[2] == pytest.approx(float(finite.mean()), abs=1e-12)
    assert stats.max[2] == float(finite.max())


def test_stats_do_not_depend_on_the_layout():
    x = torch.randn(2, 4, 5, 6, generator=torch.Generator().manual_seed(0))
    a = dg.channel_stats(Latent(x, space="raw"))
    b = dg.channel_stats(Latent(x.permute(0, 2, 3, 1), space="raw", layout="NHWC"))
    assert a == b


def test_correlation_of_a_constructed_latent():
    a, b = _orthonormal_pair(2 * 16 * 16)
    rho = 0.6
    channels = [a, rho * a + math.sqrt(1 - rho**2) * b, b, -2 * a + 5, torch.full_like(a, 3.0)]
    x = torch.stack(channels).reshape(5, 2, 16, 16).permute(1, 0, 2, 3)
    corr = dg.correlation(Latent(x, space="model"))
    # exact construction: only float64 rounding
    torch.testing.assert_close(corr[:4, :4], torch.tensor(
        [[1, rho, 0, -1], [rho, 1, math.sqrt(1 - rho**2), -rho], [0, math.sqrt(1 - rho**2), 1, 0], [-1, -rho, 0, 1]],
        dtype=torch.float64), atol=1e-12, rtol=0)  # fmt: skip
    assert torch.isnan(corr[4]).all() and torch.isnan(corr[:, 4]).all()  # a constant channel has no correlation


def test_spectrum_of_white_noise_is_flat_at_its_variance():
    x = torch.randn(8, 2, 64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    spec = dg.radial_spectrum(Latent(x, space="raw"))
    assert spec.power.shape == (2, spec.frequency.numel())
    assert float(spec.frequency.min()) > 0 and float(spec.frequency.max()) <= 0.5
    # Parseval: mean |FFT|²/(HW) of white noise is its variance, 9, at every frequency. Over all rings the
    # 8·64² periodogram values average to within ~1 %; a third of the rings (~10⁴ values) to within ~2 % — so a
    # 10 % gap between the low and high thirds would mean a spectral slope, which white noise does not have
    k = spec.frequency.numel() // 3
    assert float(spec.power.mean()) == pytest.approx(9, rel=0.05)
    low, high = spec.power[:, :k].mean(1), spec.power[:, -k:].mean(1)
    assert torch.all((low / high - 1).abs() < 0.1)


def test_spectrum_peaks_at_a_planted_frequency():
    h = w = 32
    _, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    wave = torch.cos(2 * math.pi * 0.25 * xx.double())  # 0.25 cycles per cell along W
    x = (wave + 0.01 * torch.randn(h, w, generator=torch.Generator().manual_seed(0))).reshape(1, 1, h, w)
    spec = dg.radial_spectrum(Latent(x, space="raw"))
    peak = float(spec.frequency[spec.power[0].argmax()])
    assert abs(peak - 0.25) <= 0.5 / spec.frequency.numel()  # within one ring of the planted frequency
    with pytest.raises(ShapeError, match="at least 4×4 cells"):
        dg.radial_spectrum(Latent(torch.zeros(1, 4, 2, 2), space="raw"))


def test_histograms_count_every_value_in_range():
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)).clamp(-3, 3)
    x[0, 1, 0, 0] = 100.0  # the one value outside the chosen range
    hist = dg.histograms(Latent(x, space="raw"), bins=10, value_range=(-4.0, 4.0))
    assert hist.edges.shape == (11,) and hist.counts.shape == (3, 10)
    assert hist.outside[1] == 1
    for c in range(3):
        assert int(hist.counts[c].sum()) + hist.outside[c] == 256
    constant = dg.histograms(Latent(torch.full((1, 2, 4, 4), 7.0), space="raw"), bins=4)
    assert int(constant.counts.sum()) == 32  # a constant latent still lands in a bin
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        dg.histograms(Latent(x, space="raw"), bins=0)


def test_sequence_stats_follow_items_and_frames():
    x = torch.zeros(2, 3, 4, 5, 5)
    for b in range(2):
        for t in range(4):
            x[b, :, t] = 10 * b + t
    seq = dg.sequence_stats(Latent(x, get_format("wan21"), "model", "NCTHW"))
    assert seq.items == 2 and seq.frames == 4 and seq.mean.shape == (2, 4, 3)
    assert seq.mean[1, 3, 0] == 13 and float(seq.std.abs().max()) == 0


# --- references -----------------------------------------------------------------------------------------


def test_registry_normalised_formats_have_model_and_raw_references():
    fmt = get_format("wan21")
    model = dg.reference_profile(fmt, "model", profiles={})
    raw = dg.reference_profile(fmt, "raw", profiles={})
    assert model.mean == (0.0,) * 16 and model.std == (1.0,) * 16 and model.per_channel
    assert raw.mean == fmt.mean and raw.std == fmt.std
    assert dg.reference_profile(fmt, "unknown") is None


def test_flux2_raw_reference_is_the_mixture_of_its_packed_statistics():
    fmt = get_format("flux2")
    g = torch.Generator().manual_seed(0)
    stats = NormStats.from_running(torch.randn(128, generator=g), torch.rand(128, generator=g) + 0.5, 1e-4, "test")
    ref = dg.reference_profile(fmt, "raw", stats, profiles={})
    assert dg.reference_profile(fmt, "raw", None, profiles={}) is None
    model = torch.randn(64, 128, 8, 8, generator=g, dtype=torch.float64)  # what the BatchNorm statistics describe
    raw = model_to_raw(model, fmt, stats)
    values = raw.permute(1, 0, 2, 3).reshape(32, -1)
    # 64·16·16 = 16384 samples per raw channel: the empirical mean and std are within ~2 % of the mixture's
    torch.testing.assert_close(values.mean(1), torch.tensor(ref.mean, dtype=torch.float64), atol=0.05, rtol=0)
    torch.testing.assert_close(values.std(1), torch.tensor(ref.std, dtype=torch.float64), atol=0, rtol=0.03)
    assert dg.reference_profile(fmt, "model", profiles={}).channels == 128


def test_scale_only_formats_have_a_global_reference():
    ref = dg.reference_profile(get_format("sd1"), "raw", profiles={})
    assert not ref.per_channel and ref.mean is None
    assert ref.std == pytest.approx((1 / 0.18215,) * 4)
    assert dg.reference_profile(get_format("cosmos"), "raw", profiles={}) is None  # scale 1, nothing known


def test_measured_profiles_come_first_when_available():
    profiles = pytest.importorskip("latentbridge.profiles", reason="latentbridge.profiles not in this build")
    available = profiles.profile_set()
    key = next((k for k in available if k[0] in formats() and available[k].mean is not None), None)
    if key is None:
        pytest.skip("no built-in measured profile in latentbridge.profiles yet")
    ref = dg.reference_profile(get_format(key[0]), key[1])
    assert ref.source.startswith("latentbridge.profiles") and ref.mean_spread is not None
    assert ref.mean == tuple(available[key].pooled_mean)
    if available[key].logstd is not None:  # one latent's channel std: exp of the measured log-std centre
        assert ref.typical_std == pytest.approx(tuple(math.exp(v) for v in available[key].logstd.center))


def test_deviation_flags_a_shifted_channel_and_a_wrong_scale():
    fmt = get_format("wan21")
    g = torch.Generator().manual_seed(0)
    mean = torch.tensor(fmt.mean).view(1, 16, 1, 1, 1)
    std = torch.tensor(fmt.std).view(1, 16, 1, 1, 1)
    raw = mean + std * torch.randn(1, 16, 2, 32, 32, generator=g)
    ref = dg.reference_profile(fmt, "raw", profiles={})
    ok = dg.deviation(dg.channel_stats(Latent(raw, fmt, "raw", "NCTHW")), ref)
    assert ok.flagged == () and ok.verdict.startswith("consistent") and ok.z_unit == "reference std"
    assert max(abs(z) for z in ok.z_mean) < 0.1  # 2048 samples per channel: sampling error ~0.02 std
    shifted = raw.clone()
    shifted[:, 3] += 3 * std[0, 3]
    dev = dg.deviation(dg.channel_stats(Latent(shifted, fmt, "raw", "NCTHW")), ref)
    assert dev.flagged == (3,) and dev.z_mean[3] == pytest.approx(3.0, abs=0.1)
    scaled = dg.deviation(dg.channel_stats(Latent(raw * 5, fmt, "raw", "NCTHW")), ref)
    assert scaled.overall_std_ratio > 2 and scaled.verdict.startswith("overall spread is")


def test_deviation_refuses_a_mismatched_reference():
    ref = dg.reference_profile(get_format("wan21"), "raw", profiles={})
    stats = dg.channel_stats(Latent(torch.zeros(1, 4, 4, 4), space="raw"))
    with pytest.raises(ShapeError, match="the latent has 4 channels but the wan21 raw-space reference has 16"):
        dg.deviation(stats, ref)
    stats = dg.channel_stats(Latent(torch.zeros(1, 16, 4, 4), space="model"))
    with pytest.raises(ValueError, match="statistics are in model space but the reference is in raw space"):
        dg.deviation(stats, ref)


def test_diagnose_bundles_everything():
    x = torch.randn(2, 16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    d = dg.diagnose(Latent(x, get_format("wan21"), "model", "NCTHW"), bins=16)
    assert d.stats.channels == 16 and d.histograms.counts.shape == (16, 16)
    assert d.correlation.shape == (16, 16) and d.spectrum is not None
    assert d.sequence.frames == 3 and d.reference is not None and d.deviation is not None


# --- figures --------------------------------------------------------------------------------------------


def test_figures_render_without_pyplot_state():
    x = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    lat = Latent(x * 5.5, get_format("sd1"), "raw")
    d = dg.diagnose(lat)
    plt = sys.modules.get("matplotlib.pyplot")
    before = plt.get_fignums() if plt is not None else None
    figures = [
        dg.stats_figure(d.stats, d.deviation),
        dg.histogram_figure(d.histograms, d.reference),
        dg.channels_figure(lat),
        dg.correlation_figure(d.correlation),
        dg.spectrum_figure(d.spectrum),
        dg.sequence_figure(d.sequence),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
        png = dg.figure_png(fig)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    if plt is not None:
        assert plt.get_fignums() == before  # no figure registered with pyplot
    with pytest.raises(ShapeError, match="item 5 / frame 0 out of range"):
        dg.channels_figure(lat, item=5)


def test_many_channels_get_a_heat_map_and_a_capped_mosaic():
    x = torch.randn(1, 128, 8, 8, generator=torch.Generator().manual_seed(0))
    lat = Latent(x, get_format("flux2"), "model")
    d = dg.diagnose(lat, bins=8)
    hist = dg.histogram_figure(d.histograms, d.reference)
    assert "128 channels" in hist.axes[0].get_title()
    mosaic = dg.channels_figure(lat)
    assert "first 64 of 128" in mosaic.axes[0].get_title()


def _zoo_latent(scale: float = 1.0) -> Latent:
    from latentbridge import encode, load_vae
    from latentbridge.photos import photo_tensor

    torch.set_num_threads(1)
    lat = encode(load_vae("zoo-a"), photo_tensor("astronaut", 128))
    return lat.replace(tensor=lat.tensor * scale)


def test_channel_axes_have_whole_number_ticks_and_the_z_panel_draws_the_real_limit():
    d = dg.diagnose(_zoo_latent())
    fig = dg.stats_figure(d.stats, d.deviation)
    fig.canvas.draw()
    top, bottom = fig.axes[0], fig.axes[1]
    for ax in (top, bottom):
        assert list(ax.get_xticks()) == [0, 1, 2, 3]  # one tick per channel, no −0.5, 0.5 …
    limits = {round(abs(line.get_ydata()[0]), 6) for line in bottom.get_lines() if line.get_linestyle() == "--"}
    assert limits == {d.deviation.z_limit}  # the dashed lines are the limit the channels are flagged against


def test_the_statistics_caption_names_the_numbers_that_flag_the_channels():
    """A real zoo-a latent whose channel means sit well within the limit but whose spreads are 2.3–2.5× the
    typical: the verdict says so in those numbers, not only "4 of 4 channels deviate"."""
    dev = dg.diagnose(_zoo_latent()).deviation
    assert dev is not None and dev.flagged == (0, 1, 2, 3)
    assert all(abs(z) <= dev.z_limit for z in dev.z_mean)
    lo, hi = min(dev.std_ratio), max(dev.std_ratio)
    assert f"std {lo:.2f}–{hi:.2f}× the typical on 4 channels" in dev.verdict
    assert "z of mean" not in dev.verdict


def test_spectrum_tick_labels_are_plain_numbers_that_do_not_overlap():
    d = dg.diagnose(_zoo_latent())
    fig = dg.spectrum_figure(d.spectrum)
    fig.canvas.draw()
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.get_xticklabels() if t.get_text() and t.get_visible()]
    lo, hi = ax.get_xlim()
    labels = [t for t in labels if lo <= t.get_position()[0] <= hi]
    assert len(labels) >= 2 and all("10^" not in t.get_text() and "times" not in t.get_text() for t in labels)
    boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
    assert all(a.x1 < b.x0 for a, b in itertools.pairwise(boxes))
    assert all(not t.get_text() for t in ax.xaxis.get_minorticklabels())
