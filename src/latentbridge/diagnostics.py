"""See inside a latent: per-channel statistics, histograms, correlations, spatial spectra, reference deviations.

Two kinds of functions:

* pure functions of a :class:`~latentbridge.latent.Latent` that return numbers (frozen dataclasses holding
  tuples or float64 tensors). They work in whatever space the latent is in (raw or model) and pool every
  batch item and every video frame; :func:`sequence_stats` keeps items and frames apart (the per-frame curve);
* figure builders that turn those numbers into ``matplotlib.figure.Figure`` objects drawn with the Agg
  canvas — no ``pyplot``, so no global figure registry, no backend switch, nothing left open.

A *reference* (:func:`reference_profile`) is what the format's latents should look like per channel: a
profile of ``latentbridge.profiles`` (measured on real photos, with image-to-image spreads), the zoo's
statistics (``zoo/zoo.json``), the registry's mean/std for formats normalised per channel (Playground v2.5,
Wan, Mochi), the VAE's BatchNorm statistics (FLUX.2, LTX-Video), or — for formats with only a scalar scale
(SD1, SDXL, SD3, FLUX.1 …) — the global spread the scale was chosen for (model-space std ≈ 1).
:func:`deviation` expresses a latent's channel means (and log-stds) as z-scores against it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from latentbridge.errors import ShapeError
from latentbridge.formats import LatentFormat, NormStats
from latentbridge.latent import Latent

__all__ = [
    "STD_RATIO_LIMIT",
    "Z_MEAN_LIMIT",
    "Z_SPREAD_LIMIT",
    "ChannelStats",
    "Deviation",
    "Diagnosis",
    "Histograms",
    "Reference",
    "SequenceStats",
    "Spectrum",
    "channel_stats",
    "channel_values",
    "channels_figure",
    "correlation",
    "correlation_figure",
    "deviation",
    "diagnose",
    "figure_png",
    "histogram_figure",
    "histograms",
    "new_figure",
    "radial_spectrum",
    "reference_profile",
    "sequence_figure",
    "sequence_stats",
    "spectrum_figure",
    "stats_figure",
]

# What counts as "off" for one channel. Against a measured image-to-image spread, |z| > 3 is rare for a
# photo of the family (latentbridge.profiles scores features with a Student-t of 5 degrees of freedom: about
# 3 % two-sided). Against a pooled std (no spread known), one full std of shift in a channel mean is a real
# shift; a spread off by more than 2× is the signature of a missing or doubled scale (SD1: 0.18215 = 1/5.5).
Z_SPREAD_LIMIT = 3.0
Z_MEAN_LIMIT = 1.0
STD_RATIO_LIMIT = 2.0


# --- values ---------------------------------------------------------------------------------------------


def channel_values(latent: Latent) -> torch.Tensor:
    """Every value of each channel, pooled over batch items, frames and positions.

    Args:
        latent: any latent; the channel axis is the layout's ``C``.

    Returns:
        float64 [C, M] with ``M = N·T·H·W`` values per channel, in the latent's own space.
    """
    x = latent.tensor
    c_axis = latent.layout.index("C")
    return x.detach().double().movedim(c_axis, 0).reshape(x.shape[c_axis], -1)


def _nchw_frames(latent: Latent) -> torch.Tensor:
    """[N, T, C, H, W] float64 view of the latent (T = 1 for images)."""
    target = "NTCHW"
    x = latent.tensor.detach().double()
    layout = latent.layout
    for letter in target:
        if letter not in layout:
            x = x.unsqueeze(-1)
            layout += letter
    return x.permute([layout.index(letter) for letter in target])


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """Per-channel statistics pooled over the batch, the frames and the positions.

    Attributes:
        mean, std, min, max: one value per channel (population std; NaN/inf values left out).
        count: values per channel.
        nonfinite: NaN or inf values in the whole latent.
        space: the space the numbers are in ("raw", "model" or "unknown").
    """

    mean: tuple[float, ...]
    std: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]
    count: int
    nonfinite: int
    space: str

    @property
    def channels(self) -> int:
        """Number of channels."""
        return len(self.mean)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "min": list(self.min),
            "max": list(self.max),
            "count": self.count,
            "nonfinite": self.nonfinite,
            "space": self.space,
        }


def _masked_stats(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """mean, std, min, max over the last axis of float64 values, NaN/inf left out (NaN when none are finite)."""
    finite = torch.isfinite(values)
    count = finite.sum(-1)
    zeroed = torch.where(finite, values, torch.zeros((), dtype=values.dtype))
    safe = count.clamp(min=1)
    mean = zeroed.sum(-1) / safe
    var = (torch.where(finite, values - mean.unsqueeze(-1), torch.zeros((), dtype=values.dtype)) ** 2).sum(-1) / safe
    lo = torch.where(finite, values, torch.full((), math.inf, dtype=values.dtype)).amin(-1)
    hi = torch.where(finite, values, torch.full((), -math.inf, dtype=values.dtype)).amax(-1)
    nan = torch.full_like(mean, math.nan)
    empty = count == 0
    return (
        torch.where(empty, nan, mean),
        torch.where(empty, nan, var.sqrt()),
        torch.where(empty, nan, lo),
        torch.where(empty, nan, hi),
    )


def channel_stats(latent: Latent) -> ChannelStats:
    """Mean, std, min and max of each channel over every item, frame and position.

    Args:
        latent: any latent, in its own space and layout.

    Returns:
        :class:`ChannelStats` (population std, NaN/inf excluded and counted in ``nonfinite``).
    """
    values = channel_values(latent)
    mean, std, lo, hi = _masked_stats(values)
    return ChannelStats(
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        min=tuple(lo.tolist()),
        max=tuple(hi.tolist()),
        count=int(values.shape[1]),
        nonfinite=int((~torch.isfinite(values)).sum()),
        space=latent.space,
    )


@dataclass(frozen=True, slots=True, eq=False)
class SequenceStats:
    """Per batch item and per frame statistics: the curve that shows one bad frame or one bad item.

    Attributes:
        mean, std: float64 [N, T, C] (T = 1 for images).
    """

    mean: torch.Tensor
    std: torch.Tensor

    @property
    def items(self) -> int:
        """Batch size N."""
        return int(self.mean.shape[0])

    @property
    def frames(self) -> int:
        """Latent frames T (1 for images)."""
        return int(self.mean.shape[1])


def sequence_stats(latent: Latent) -> SequenceStats:
    """Per-channel mean and std of each batch item and each frame.

    Returns:
        :class:`SequenceStats` with [N, T, C] float64 tensors, in the latent's own space.
    """
    x = _nchw_frames(latent)
    n, t, c = x.shape[:3]
    mean, std, _, _ = _masked_stats(x.reshape(n, t, c, -1))
    return SequenceStats(mean=mean, std=std)


@dataclass(frozen=True, slots=True, eq=False)
class Histograms:
    """Per-channel histograms on shared bin edges.

    Attributes:
        edges: float64 [bins + 1], shared by every channel.
        counts: int64 [C, bins]; values outside the edges are not counted (see ``outside``).
        outside: values per channel below the first or above the last edge (and NaN/inf).
    """

    edges: torch.Tensor
    counts: torch.Tensor
    outside: tuple[int, ...]


def histograms(latent: Latent, bins: int = 64, value_range: tuple[float, float] | None = None) -> Histograms:
    """Per-channel histograms on one set of edges.

    Args:
        latent: any latent.
        bins: number of bins (>= 1).
        value_range: (low, high) of the edges; by default the 0.1 % and 99.9 % quantiles of all finite values,
            so that one outlier does not squash every histogram into one bin.

    Returns:
        :class:`Histograms` (float64 edges [bins + 1], int64 counts [C, bins]).
    """
    if bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    values = channel_values(latent)
    finite = values[torch.isfinite(values)]
    if value_range is None:
        if finite.numel() == 0:
            lo, hi = -1.0, 1.0
        else:
            sample = finite if finite.numel() <= 2_000_000 else finite[:: finite.numel() // 2_000_000 + 1]
            q = torch.quantile(sample, torch.tensor([0.001, 0.999], dtype=torch.float64))
            lo, hi = float(q[0]), float(q[1])
    else:
        lo, hi = value_range
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"histogram range must be finite, got ({lo}, {hi})")
    if hi <= lo:
        lo, hi = lo - 0.5, lo + 0.5  # a constant latent: one bin around its value
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    counts = torch.zeros(values.shape[0], bins, dtype=torch.int64)
    outside = []
    for c in range(values.shape[0]):
        v = values[c]
        inside = torch.isfinite(v) & (v >= lo) & (v <= hi)
        idx = ((v[inside] - lo) / (hi - lo) * bins).long().clamp(0, bins - 1)
        counts[c] = torch.bincount(idx, minlength=bins)
        outside.append(int(v.numel() - inside.sum()))
    return Histograms(edges=edges, counts=counts, outside=tuple(outside))


def correlation(latent: Latent) -> torch.Tensor:
    """Pearson correlation between channels over every item, frame and position.

    Returns:
        float64 [C, C], symmetric, 1 on the diagonal; NaN in the rows/columns of constant channels
        (their correlation is undefined). Positions holding any NaN/inf are left out.
    """
    values = channel_values(latent)
    keep = torch.isfinite(values).all(0)
    v = values[:, keep]
    if v.shape[1] < 2:
        raise ShapeError(f"a correlation needs at least 2 finite positions per channel, got {v.shape[1]}")
    v = v - v.mean(1, keepdim=True)
    cov = v @ v.T / v.shape[1]
    sd = cov.diagonal().sqrt()
    corr = cov / (sd[:, None] * sd[None, :])  # 0/0 -> NaN for constant channels, replaced below
    corr = torch.where((sd[:, None] > 0) & (sd[None, :] > 0), corr, torch.full_like(corr, math.nan))
    corr = corr.clamp(-1.0, 1.0)
    idx = torch.arange(corr.shape[0])
    corr[idx, idx] = torch.where(sd > 0, torch.ones_like(sd), torch.full_like(sd, math.nan))
    return corr


@dataclass(frozen=True, slots=True, eq=False)
class Spectrum:
    """Radially averaged spatial power spectrum per channel.

    Attributes:
        frequency: float64 [K], bin centres in cycles per latent cell, in (0, 0.5].
        power: float64 [C, K], mean |FFT|² / (H·W) in each ring, averaged over items and frames
            (each map's mean removed first, so the DC term is left out).
    """

    frequency: torch.Tensor
    power: torch.Tensor


def radial_spectrum(latent: Latent, bins: int | None = None) -> Spectrum:
    """Radially averaged power spectrum of each channel.

    White noise has a flat spectrum; latents of photos fall off with frequency; a spike means a periodic
    pattern (tiling seams, a stuck decoder grid).

    Args:
        latent: any latent with H, W >= 4.
        bins: number of rings; default ``min(H, W) // 2``.

    Returns:
        :class:`Spectrum` in the latent's own space.
    """
    x = _nchw_frames(latent)
    n, t, c, h, w = x.shape
    if h < 4 or w < 4:
        raise ShapeError(f"a spatial spectrum needs latents of at least 4×4 cells, got {h}×{w}")
    k = bins if bins is not None else min(h, w) // 2
    if k < 1:
        raise ValueError(f"bins must be a positive integer, got {k}")
    maps = x.reshape(n * t, c, h, w)
    maps = torch.nan_to_num(maps - maps.nanmean((-2, -1), keepdim=True), nan=0.0, posinf=0.0, neginf=0.0)
    power = torch.fft.fft2(maps).abs().pow(2).mean(0) / (h * w)  # [C, H, W]
    fy = torch.fft.fftfreq(h, dtype=torch.float64)
    fx = torch.fft.fftfreq(w, dtype=torch.float64)
    radius = (fy[:, None] ** 2 + fx[None, :] ** 2).sqrt()
    ring = torch.floor(radius / 0.5 * k).long()  # ring k-1 ends at 0.5 cycles/cell; corners beyond are dropped
    valid = (radius > 0) & (ring < k)
    ring = ring[valid]
    counts = torch.bincount(ring, minlength=k).double()
    sums = torch.zeros(c, k, dtype=torch.float64)
    sums.index_add_(1, ring, power[:, valid])
    frequency = (torch.arange(k, dtype=torch.float64) + 0.5) * 0.5 / k
    mean_power = sums / counts.clamp(min=1)
    used = counts > 0
    return Spectrum(frequency=frequency[used], power=mean_power[:, used])


# --- reference profiles ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reference:
    """What the latents of one format look like per channel, in one space.

    Attributes:
        format: format name.
        space: "raw" or "model" (FLUX.2 model space: the packed 128 channels).
        mean: pooled mean per channel, or None when only the spread is known.
        std: pooled std per channel (for ``per_channel=False`` one global value repeated).
        mean_spread: how much one latent's channel mean varies from image to image (measured profiles), or
            None: z-scores then use ``std`` as the unit.
        logstd: typical log-std of one latent's channel, or None.
        logstd_spread: its image-to-image spread, or None.
        per_channel: True when mean/std are per channel; False for the global spread implied by a scalar
            scale (SD1's 0.18215 = 1 / std of all raw values).
        source: where the numbers come from.
    """

    format: str
    space: str
    mean: tuple[float, ...] | None
    std: tuple[float, ...]
    per_channel: bool
    source: str
    mean_spread: tuple[float, ...] | None = None
    logstd: tuple[float, ...] | None = None
    logstd_spread: tuple[float, ...] | None = None

    @property
    def channels(self) -> int:
        """Number of channels."""
        return len(self.std)

    @property
    def typical_std(self) -> tuple[float, ...]:
        """The std one latent's channel typically has: ``exp(logstd)`` when measured, else the pooled ``std``.

        The pooled std also holds the image-to-image spread of the channel means, so one photo's latent is
        narrower than it (SD1: about half).
        """
        if self.logstd is None:
            return self.std
        return tuple(math.exp(v) for v in self.logstd)


def _zoo_entry(name: str) -> dict | None:
    from latentbridge import zoo  # local import: reads a package data file on first use

    if not zoo.is_zoo_name(name):
        return None
    return zoo.zoo_info().get(name)


def _raw_from_packed(stats: NormStats, fmt: LatentFormat) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Raw per-channel mean/std implied by statistics of packed channels (c, dy, dx order): a p² mixture."""
    p2 = fmt.patch * fmt.patch
    mean = stats.mean.double().reshape(fmt.channels, p2)
    var = stats.std.double().reshape(fmt.channels, p2) ** 2
    m = mean.mean(1)
    v = (var + mean**2).mean(1) - m**2
    return tuple(m.tolist()), tuple(v.clamp(min=0).sqrt().tolist())


def _measured_profiles() -> Mapping[tuple[str, str], Any]:
    """The built-in and user profiles of :mod:`latentbridge.profiles` by (format, space)."""
    from latentbridge.profiles import profile_set  # local: reads the shipped profiles on first use

    return profile_set()


def _from_measured(p: Any) -> Reference:
    mean_stat, logstd_stat = p.mean, p.logstd
    return Reference(
        format=p.format,
        space=p.space,
        mean=tuple(p.pooled_mean),
        std=tuple(p.pooled_std),
        per_channel=True,
        source=f"latentbridge.profiles, {p.kind}: {p.source}",
        mean_spread=tuple(mean_stat.spread) if mean_stat is not None else None,
        logstd=tuple(logstd_stat.center) if logstd_stat is not None else None,
        logstd_spread=tuple(logstd_stat.spread) if logstd_stat is not None else None,
    )


def reference_profile(
    fmt: LatentFormat,
    space: str,
    stats: NormStats | None = None,
    profiles: Mapping[tuple[str, str], Any] | None = None,
) -> Reference | None:
    """The reference of ``fmt`` in ``space`` ("raw" or "model"), or None when nothing is known.

    Sources, first match wins: a profile of ``latentbridge.profiles`` (measured on real photos, with
    image-to-image spreads; ``profiles`` defaults to its built-in set), the zoo's statistics (``zoo/zoo.json``),
    the registry's mean/std (Playground v2.5, Wan, Mochi), the VAE's normalisation statistics (FLUX.2,
    LTX-Video: model space is mean 0 / std 1 by construction; raw space needs ``stats``), and for formats with
    only a scalar scale the global spread the scale was chosen for (model-space std 1).

    Args:
        fmt: the format.
        space: the space of the latent to compare ("unknown" gives None).
        stats: the VAE's normalisation statistics, for the raw reference of FLUX.2 / LTX-Video.
        profiles: (format, space) -> ``latentbridge.profiles.Profile``; default: the built-in set.

    Returns:
        A :class:`Reference` with one value per channel of ``space``.
    """
    if space not in ("raw", "model"):
        return None
    measured = _measured_profiles() if profiles is None else profiles
    if (fmt.name, space) in measured:
        ref = _from_measured(measured[(fmt.name, space)])
        if ref.channels == fmt.space_shape(space)[0]:
            return ref
    c_model = fmt.model_channels
    zoo_entry = _zoo_entry(fmt.name)
    if zoo_entry is not None and "mean" in zoo_entry and "std" in zoo_entry:
        raw_mean = tuple(float(v) for v in zoo_entry["mean"])
        raw_std = tuple(float(v) for v in zoo_entry["std"])
        src = "zoo/zoo.json: raw-latent statistics over the training photos"
        if space == "raw":
            return Reference(fmt.name, "raw", raw_mean, raw_std, True, src)
        s = fmt.scale
        mean = tuple((m - fmt.shift) * s for m in raw_mean)
        return Reference(fmt.name, "model", mean, tuple(v * s for v in raw_std), True, src + " × scale")
    if fmt.norm_source == "registry":
        src = f"registry mean/std ({fmt.source('norm')})"
        if space == "model":
            # model = (raw - shift - mean) * scale / std: a latent with exactly these statistics has mean 0, std scale
            return Reference(fmt.name, "model", (0.0,) * c_model, (fmt.scale,) * c_model, True, src)
        return Reference(fmt.name, "raw", tuple(m + fmt.shift for m in fmt.mean), tuple(fmt.std), True, src)
    if fmt.norm_source == "vae":
        if space == "model":
            src = f"normalised with the VAE's statistics ({fmt.source('norm')}): mean 0, std 1 by construction"
            return Reference(fmt.name, "model", (0.0,) * c_model, (1.0,) * c_model, True, src)
        if stats is None:
            return None
        if fmt.patch > 1:
            mean, std = _raw_from_packed(stats, fmt)
        else:
            mean, std = tuple(stats.mean.tolist()), tuple(stats.std.tolist())
        return Reference(fmt.name, "raw", mean, std, True, f"the VAE's statistics ({stats.source})")
    if fmt.scale != 1.0 or fmt.shift != 0.0:
        src = f"scale {fmt.scale:g} is 1 / std of the family's raw latents ({fmt.source('scale')}): global spread only"
        if space == "model":
            return Reference(fmt.name, "model", None, (1.0,) * c_model, False, src)
        return Reference(fmt.name, "raw", None, (1.0 / fmt.scale,) * fmt.channels, False, src)
    return None


@dataclass(frozen=True, slots=True)
class Deviation:
    """How a latent's channels deviate from a reference.

    Attributes:
        z_mean: per channel ``(mean - ref.mean) / unit``, the unit being the reference's image-to-image spread
            of channel means when it has one (``z_unit == "image-to-image spread"``), else its pooled std
            (``"reference std"``); None when the reference has no means.
        z_logstd: per channel ``(log std - ref.logstd) / ref.logstd_spread``, or None without those numbers.
        std_ratio: per channel ``std / ref.typical_std`` (for a global reference: against the global spread).
        overall_std_ratio: the pooled std of all channels over the reference's pooled std.
        z_unit: see ``z_mean``.
        z_limit: the |z| above which a channel is flagged (3 for image-to-image spreads, 1 for the pooled std).
        flagged: channels beyond ``z_limit`` or with a std ratio outside [1/2, 2] (per-channel references only).
        verdict: one line for humans.
        reference: the reference used.
    """

    z_mean: tuple[float, ...] | None
    z_logstd: tuple[float, ...] | None
    std_ratio: tuple[float, ...]
    overall_std_ratio: float
    z_unit: str
    z_limit: float
    flagged: tuple[int, ...]
    verdict: str
    reference: Reference


def deviation(stats: ChannelStats, ref: Reference) -> Deviation:
    """Compare :func:`channel_stats` output with a reference of the same space and channel count."""
    if stats.channels != ref.channels:
        raise ShapeError(
            f"the latent has {stats.channels} channels but the {ref.format} {ref.space}-space reference "
            f"has {ref.channels}; compare a latent of that format in that space"
        )
    if stats.space != ref.space:
        raise ValueError(
            f"the statistics are in {stats.space} space but the reference is in {ref.space} space; "
            "convert the latent (Latent.to_space) or ask reference_profile for the same space"
        )
    ref_std = np.asarray(ref.std, dtype=np.float64)
    mean = np.asarray(stats.mean, dtype=np.float64)
    std = np.asarray(stats.std, dtype=np.float64)
    ratio = std / np.asarray(ref.typical_std, dtype=np.float64)
    spread = ref.mean_spread is not None
    unit = np.asarray(ref.mean_spread if spread else ref.std, dtype=np.float64)
    z = None if ref.mean is None else (mean - np.asarray(ref.mean, dtype=np.float64)) / unit
    z_log = None
    if ref.logstd is not None and ref.logstd_spread is not None:
        z_log = (np.log(np.maximum(std, 1e-30)) - np.asarray(ref.logstd)) / np.asarray(ref.logstd_spread)
    limit = Z_SPREAD_LIMIT if spread else Z_MEAN_LIMIT
    pooled_var = float(np.mean(std**2 + mean**2) - np.mean(mean) ** 2)
    ref_mean = np.zeros_like(ref_std) if ref.mean is None else np.asarray(ref.mean, dtype=np.float64)
    ref_pooled = float(np.mean(ref_std**2 + ref_mean**2) - np.mean(ref_mean) ** 2)
    overall = math.sqrt(max(pooled_var, 0.0) / ref_pooled) if ref_pooled > 0 else math.nan
    flagged: list[int] = []
    if ref.per_channel:
        for c in range(stats.channels):
            bad_z = z is not None and not abs(z[c]) <= limit
            bad_log = z_log is not None and not abs(z_log[c]) <= limit
            bad_ratio = not (1.0 / STD_RATIO_LIMIT <= ratio[c] <= STD_RATIO_LIMIT)
            if bad_z or bad_log or bad_ratio:
                flagged.append(c)
    if not (1.0 / STD_RATIO_LIMIT <= overall <= STD_RATIO_LIMIT):
        verdict = (
            f"overall spread is {overall:.2f}× the {ref.format} {ref.space}-space reference: "
            "a wrong space (raw vs model), a wrong scale or a different VAE"
        )
    elif flagged:
        why = _flag_summary(flagged, z, z_log, ratio, limit)
        verdict = (
            f"{len(flagged)} of {stats.channels} channels deviate from the {ref.format} {ref.space} reference: {why}"
        )
    else:
        verdict = f"consistent with the {ref.format} {ref.space}-space reference"
    return Deviation(
        z_mean=None if z is None else tuple(float(v) for v in z),
        z_logstd=None if z_log is None else tuple(float(v) for v in z_log),
        std_ratio=tuple(float(v) for v in ratio),
        overall_std_ratio=overall,
        z_unit="image-to-image spread" if spread else "reference std",
        z_limit=limit,
        flagged=tuple(flagged),
        verdict=verdict,
        reference=ref,
    )


def _flag_summary(flagged: list[int], z: Any, z_log: Any, ratio: Any, limit: float) -> str:
    """ "std 2.31–2.54× the typical on 4 channels (limit 0.5–2×); z of mean beyond ±3 (ch 2 +3.4)": why they are
    flagged, in the numbers the figure draws."""
    parts = []
    ratios = [ratio[c] for c in flagged if not (1.0 / STD_RATIO_LIMIT <= ratio[c] <= STD_RATIO_LIMIT)]
    if ratios:
        lo, hi = min(ratios), max(ratios)
        span = f"{lo:.2f}" if lo == hi else f"{lo:.2f}–{hi:.2f}"
        n = f"{len(ratios)} channel{'s' if len(ratios) > 1 else ''}"
        parts.append(f"std {span}× the typical on {n} (limit {1 / STD_RATIO_LIMIT:g}–{STD_RATIO_LIMIT:g}×)")
    for name, values in (("z of mean", z), ("z of log std", z_log)):
        if values is None:
            continue
        over = [c for c in flagged if not abs(values[c]) <= limit]
        if over:
            shown = ", ".join(f"ch {c} {values[c]:+.1f}" for c in over[:4]) + (", …" if len(over) > 4 else "")
            parts.append(f"{name} beyond ±{limit:g} ({shown})")
    return "; ".join(parts)


@dataclass(frozen=True, slots=True, eq=False)
class Diagnosis:
    """Everything :func:`diagnose` measures about one latent."""

    stats: ChannelStats
    sequence: SequenceStats
    histograms: Histograms
    correlation: torch.Tensor
    spectrum: Spectrum | None  # None when the latent is smaller than 4×4 cells
    reference: Reference | None
    deviation: Deviation | None


def diagnose(latent: Latent, bins: int = 64) -> Diagnosis:
    """Run every diagnostic on ``latent`` in its own space, against its format's reference when there is one."""
    stats = channel_stats(latent)
    ref = None
    if latent.format is not None:
        ref = reference_profile(latent.format, latent.space, latent.stats)
    dev = deviation(stats, ref) if ref is not None and ref.channels == stats.channels else None
    spectrum = radial_spectrum(latent) if min(latent.dim("H"), latent.dim("W")) >= 4 else None
    return Diagnosis(
        stats=stats,
        sequence=sequence_stats(latent),
        histograms=histograms(latent, bins),
        correlation=correlation(latent),
        spectrum=spectrum,
        reference=ref,
        deviation=dev,
    )


# --- figures (Agg canvas, no pyplot) --------------------------------------------------------------------

_MAX_PANELS = 16  # small multiples beyond this become unreadable; larger latents get a heat map instead


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A matplotlib Figure on its own Agg canvas (no pyplot state)."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes with the Agg canvas."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _channel_ticks(ax: Any, n: int, axis: str = "x") -> None:
    """Whole-number ticks on a channel (or frame, item) axis: every index up to 32, else whole steps."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    if n <= 32:
        (ax.set_xticks if axis == "x" else ax.set_yticks)(range(n))
        if n > 16:
            ax.tick_params(axis=axis, labelsize=6)
    else:
        target.set_major_locator(MaxNLocator(integer=True))


def _grid(n: int) -> tuple[int, int]:
    cols = min(n, 4 if n <= 8 else 8)
    return math.ceil(n / cols), cols


def histogram_figure(hist: Histograms, ref: Reference | None = None) -> Figure:
    """Per-channel histograms: a ridgeline (one offset density per channel) up to 16 channels, a heat map beyond.

    The reference, when it has means, is drawn as the matching normal density (dashed).
    """
    counts = hist.counts.double()
    edges = hist.edges.numpy()
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1] - edges[0]
    c = counts.shape[0]
    density = (counts / (counts.sum(1, keepdim=True).clamp(min=1) * width)).numpy()
    if c > _MAX_PANELS:
        fig = new_figure(8, 4)
        ax = fig.add_subplot()
        im = ax.imshow(
            np.log10(density * width + 1e-6),
            aspect="auto",
            origin="lower",
            extent=(edges[0], edges[-1], -0.5, c - 0.5),
            cmap="magma",
            interpolation="nearest",
        )
        ax.set_xlabel("value")
        ax.set_ylabel("channel")
        ax.set_title(f"per-channel histograms ({c} channels), log10 fraction per bin")
        fig.colorbar(im, ax=ax)
        return fig
    fig = new_figure(6.0, 1.0 + 0.45 * c)
    ax = fig.add_subplot()
    peak = float(density.max()) or 1.0
    xs = np.linspace(edges[0], edges[-1], 200)
    for i in range(c):
        base = c - 1 - i  # channel 0 on top
        row = density[i] / peak * 0.9
        ax.fill_between(centers, base, base + row, step="mid", color="#4477aa", alpha=0.7, linewidth=0)
        if ref is not None and ref.mean is not None and i < ref.channels:
            m, s = ref.mean[i], ref.std[i]
            curve = np.exp(-0.5 * ((xs - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
            ax.plot(xs, base + np.minimum(curve / peak * 0.9, 1.2), color="#cc3311", lw=0.8, ls="--")
    ax.set_yticks(range(c), [f"ch {c - 1 - k}" for k in range(c)], fontsize=7)
    ax.set_ylim(-0.1, c + 0.2)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("value")
    note = " (dashed: reference)" if ref is not None and ref.mean is not None else ""
    ax.set_title(f"per-channel histograms{note}", fontsize=9)
    return fig


def channels_figure(latent: Latent, item: int = 0, frame: int = 0, max_channels: int = 64) -> Figure:
    """Each channel of one item (and frame) as an image tile of one mosaic, on one symmetric colour scale.

    The scale is ±(99.5th percentile of |value|) over the shown channels so that relative magnitudes stay
    comparable; at most ``max_channels`` channels are drawn (the title says how many were left out).
    """
    x = _nchw_frames(latent)
    n, t, c, h, w = x.shape
    if not (0 <= item < n and 0 <= frame < t):
        raise ShapeError(f"item {item} / frame {frame} out of range: the latent has {n} items and {t} frames")
    maps = torch.nan_to_num(x[item, frame, :max_channels]).numpy()
    shown = maps.shape[0]
    lim = float(np.quantile(np.abs(maps), 0.995)) or 1.0
    rows, cols = _grid(shown)
    gap = max(1, min(h, w) // 16)
    mosaic = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for i in range(shown):
        r, k = divmod(i, cols)
        mosaic[r * (h + gap) : r * (h + gap) + h, k * (w + gap) : k * (w + gap) + w] = maps[i]
    aspect = mosaic.shape[0] / mosaic.shape[1]
    fig = new_figure(7.0, max(2.0, 6.2 * aspect + 0.6))
    ax = fig.add_subplot()
    im = ax.imshow(mosaic, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    box = {"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7}
    for i in range(shown):
        r, k = divmod(i, cols)
        ax.text(k * (w + gap), r * (h + gap), str(i), fontsize=7, va="top", ha="left", color="black", bbox=box)
    ax.axis("off")
    title = f"channels 0–{shown - 1} of item {item}" + (f", frame {frame}" if t > 1 else "")
    title += f" ({latent.space} space)" + (f"; first {shown} of {c}" if shown < c else "")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.7)
    return fig


def correlation_figure(corr: torch.Tensor) -> Figure:
    """The channel correlation matrix as a heat map (−1 blue … +1 red; NaN grey)."""
    c = corr.shape[0]
    fig = new_figure(4.8, 4.0)
    ax = fig.add_subplot()
    im = ax.imshow(corr.numpy(), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_title("channel correlation")
    ax.set_xlabel("channel")
    ax.set_ylabel("channel")
    if c <= 16:
        ax.set_xticks(range(c))
        ax.set_yticks(range(c))
        ax.tick_params(labelsize=6)
    fig.colorbar(im, ax=ax)
    return fig


def spectrum_figure(spec: Spectrum) -> Figure:
    """Radially averaged power spectra, one thin line per channel and their mean in black (log–log)."""
    fig = new_figure(5.0, 3.4)
    ax = fig.add_subplot()
    f = spec.frequency.numpy()
    power = spec.power.numpy()
    floor = 1e-12
    for row in power:
        ax.plot(f, np.maximum(row, floor), lw=0.7, alpha=0.5)
    ax.plot(f, np.maximum(np.nanmean(power, 0), floor), color="black", lw=1.8, label="mean over channels")
    ax.set_xscale("log")
    ax.set_yscale("log")
    # A latent spans about one decade of frequencies (1/size … 0.5), where matplotlib labels every minor tick in
    # 10^x notation and the labels run into each other: label 1-2-5 steps in plain numbers, minor ticks unlabelled.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("spatial frequency (cycles per latent cell)")
    ax.set_ylabel("power")
    ax.set_title("radially averaged spectrum")
    ax.legend(fontsize=7)
    return fig


def stats_figure(stats: ChannelStats, dev: Deviation | None = None) -> Figure:
    """Per-channel mean ± std (with the reference as grey bars) and, with a reference, the mean z-scores."""
    c = stats.channels
    idx = np.arange(c)
    fig = new_figure(max(5.0, 0.18 * c + 2.5), 4.6 if dev is not None and dev.z_mean is not None else 2.8)
    with_z = dev is not None and dev.z_mean is not None
    axes = fig.subplots(2 if with_z else 1, 1, squeeze=False)
    ax = axes[0][0]
    if dev is not None:
        ref_mean = np.asarray(dev.reference.mean) if dev.reference.mean is not None else np.zeros(c)
        ax.bar(idx, 2 * np.asarray(dev.reference.std), bottom=ref_mean - np.asarray(dev.reference.std), color="#dddddd",
               width=0.8, label=f"reference ± std ({dev.reference.space})")  # fmt: skip
    ax.errorbar(idx, stats.mean, yerr=stats.std, fmt="o", ms=3, color="#4477aa", lw=1, label="latent mean ± std")
    ax.set_xlabel("channel")
    ax.set_title(f"per-channel statistics ({stats.space} space)")
    ax.legend(fontsize=7)
    _channel_ticks(ax, c)
    if with_z and dev is not None and dev.z_mean is not None:
        # What flags a channel, drawn as it is tested: z of mean and z of log std against ±z_limit, and the std
        # ratio written above channels it flags (the title is the verdict, with those numbers).
        axz = axes[1][0]
        z = np.asarray(dev.z_mean)
        flagged = set(dev.flagged)
        colors = ["#cc3311" if i in flagged else "#4477aa" for i in range(c)]
        axz.bar(idx, z, color=colors, width=0.6, label="z of mean")
        if dev.z_logstd is not None:
            axz.plot(idx, dev.z_logstd, "D", ms=4, color="#222222", label="z of log std")
        axz.axhline(dev.z_limit, color="grey", lw=0.8, ls="--", label=f"flag limit ±{dev.z_limit:g}")
        axz.axhline(-dev.z_limit, color="grey", lw=0.8, ls="--")
        top = max(dev.z_limit, float(np.nanmax(np.abs(z))) if z.size else 0.0)
        if dev.z_logstd is not None:
            top = max(top, float(np.nanmax(np.abs(dev.z_logstd))))
        axz.set_ylim(-1.35 * top, 1.35 * top)
        for i in sorted(flagged):
            ratio = dev.std_ratio[i]
            if not (1.0 / STD_RATIO_LIMIT <= ratio <= STD_RATIO_LIMIT):
                axz.text(i, 1.15 * top, f"std {ratio:.2f}×", ha="center", va="center", fontsize=6, color="#cc3311")
        axz.set_xlabel("channel")
        axz.set_ylabel(f"z ({dev.z_unit})", fontsize=7)
        axz.set_title(_wrap(dev.verdict, int(fig.get_figwidth() * 15)), fontsize=7)
        axz.legend(fontsize=6, loc="lower right")
        _channel_ticks(axz, c)
    return fig


def _wrap(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters at spaces (figure titles)."""
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def sequence_figure(seq: SequenceStats) -> Figure:
    """Per-frame (video) or per-item (batch) curves of each channel's mean and std."""
    over_frames = seq.frames > 1
    mean = seq.mean[0] if over_frames else seq.mean[:, 0]  # [steps, C]
    std = seq.std[0] if over_frames else seq.std[:, 0]
    steps = np.arange(mean.shape[0])
    fig = new_figure(6.0, 4.0)
    ax_m, ax_s = fig.subplots(2, 1, sharex=True)
    for c in range(mean.shape[1]):
        ax_m.plot(steps, mean[:, c].numpy(), lw=0.8, marker="." if len(steps) < 30 else None)
        ax_s.plot(steps, std[:, c].numpy(), lw=0.8, marker="." if len(steps) < 30 else None)
    ax_m.set_ylabel("channel mean")
    ax_s.set_ylabel("channel std")
    ax_s.set_xlabel("latent frame (item 0)" if over_frames else "batch item")
    ax_s.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_m.set_title("per-frame statistics" if over_frames else "per-item statistics")
    return fig
