"""Reference profiles of latent spaces: what latents of one (format, space) look like, statistically.

A :class:`Profile` describes the distribution of per-latent *features* (:func:`latent_features`) over many
latents of one format in one space: per-channel means, per-channel log standard deviations, cross-channel
correlations (Fisher z) and per-channel power-spectrum slopes. Each feature is summarised by a centre and a
spread (its variation from image to image), and a latent's fit to a profile is a Student-t log-likelihood.

Profiles come from three places, in increasing precedence:

* **published** statistics (Playground v2.5's SDXL-VAE mean/std, Wan 2.1/2.2, Mochi; FLUX.2 BatchNorm
  statistics read from a VAE file at check time). Published numbers are pooled over a data set, so the
  image-to-image spreads are transferred from the measured profiles (:class:`Transfer`);
* **measured** by ``scripts/build_profiles.py``: real photos (``latentbridge.photos.TRAIN_PHOTOS``) encoded
  by every encoder that runs offline here (the zoo, TAEF2, VAElight SD1), shipped in ``profiles.json``;
* **user** profiles written by ``latentbridge calibrate`` into :func:`user_profile_dir`.

Model-space profiles of formats whose raw↔model map is a per-channel affine function are *derived* from
the raw profile (:func:`transform_profile`), so one measurement serves both spaces.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from latentbridge import codec
from latentbridge._atomic import atomic_write
from latentbridge._guard import read_json_file
from latentbridge.errors import LatentBridgeError
from latentbridge.formats import LatentFormat, NormStats, formats, pack
from latentbridge.run import Run
from latentbridge.vae import VAE

__all__ = [
    "CALIBRATION_SIZES",
    "DATA_FILE",
    "GROUPS",
    "JOINT_SHRINK",
    "MAX_CORR_CHANNELS",
    "MAX_JOINT_CHANNELS",
    "MIN_SLOPE_SIDE",
    "PROFILE_KINDS",
    "SAME_RAW_SPACE",
    "SPREAD_FLOOR",
    "STUDENT_NU",
    "Calibration",
    "Features",
    "Population",
    "Profile",
    "Stat",
    "Transfer",
    "affine",
    "build_profile",
    "builtin_profiles",
    "calibrate",
    "calibration",
    "feature_fit",
    "is_identity",
    "latent_features",
    "load_user_profiles",
    "native_profile_space",
    "natural_image_reference",
    "pooled_stats",
    "profile_from_norm_stats",
    "profile_from_published",
    "profile_set",
    "raw_owner",
    "sample_crops",
    "save_user_profile",
    "spectral_slope",
    "transform_profile",
    "user_profile_dir",
]

GROUPS: tuple[str, ...] = ("mean", "logstd", "corr", "slope")
PROFILE_KINDS: tuple[str, ...] = ("published", "measured", "derived", "user")
MAX_CORR_CHANNELS = 32  # above this the C(C-1)/2 correlations would dominate the file and the likelihood
MIN_SLOPE_SIDE = 8  # latents smaller than 8 cells on a side have too few frequency bins for a slope
MAX_JOINT_CHANNELS = 16  # joint (mean, log-std) correlations up to 32×32; beyond, too many for ~200 latents
JOINT_SHRINK = 0.1  # correlation shrinkage towards the identity: keeps a 32×32 estimate from 200 latents stable
STUDENT_NU = 5.0  # degrees of freedom of the per-feature Student-t: heavy tails for photos unlike the profile's
DATA_FILE = "profiles.json"

# Formats whose *raw* latents are the same space (one VAE, different model-space normalisation).
# playground25: Playground v2.5 decodes with the SDXL VAE (its vae config is the SDXL VAE's).
# cogvideox_2b: CogVideoX-2B and -5B ship the same VAE weights; only scaling_factor differs.
SAME_RAW_SPACE: Mapping[str, str] = {"playground25": "sdxl", "cogvideox_2b": "cogvideox"}


def raw_owner(name: str) -> str:
    """The format whose raw space ``name`` shares ("playground25" -> "sdxl"), or ``name`` itself."""
    return SAME_RAW_SPACE.get(name, name)


# --- features ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Features:
    """Statistics of one latent (one batch item), in whatever space the tensor is in.

    Attributes:
        mean: [C] spatial mean of each channel.
        logstd: [C] natural log of each channel's spatial standard deviation.
        corr: [C(C-1)/2] Fisher z (atanh) of the channel correlations, upper triangle row by row; empty when
            C > ``MAX_CORR_CHANNELS`` or C == 1.
        slope: [C] slope of the radially averaged power spectrum (log power per log frequency) of each channel;
            empty when H or W is below ``MIN_SLOPE_SIDE``. Natural-image-like latents are near -2, noise near 0.
    """

    mean: np.ndarray
    logstd: np.ndarray
    corr: np.ndarray
    slope: np.ndarray

    def group(self, name: str) -> np.ndarray:
        """The values of one feature group ("mean", "logstd", "corr" or "slope")."""
        return getattr(self, name)

    @property
    def groups(self) -> tuple[str, ...]:
        """The non-empty feature groups."""
        return tuple(g for g in GROUPS if self.group(g).size)


def _numpy64(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """float64 numpy copy (the feature maths is small and runs faster in numpy than in threaded torch ops)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def spectral_slope(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Slope of the radially averaged power spectrum of each channel.

    Args:
        x: [N, C, H, W] (or [N, C, T, H, W]: the power is averaged over frames), any space, H, W ≥ 8.

    Returns:
        [N, C] float64 slopes of log power against log spatial frequency over 8 log-spaced bands between
        1/min(H, W) and 0.5 cycles per cell (least squares weighted by the coefficients per band), after
        removing the mean and applying a Hann window.
    """
    x = _numpy64(x)
    h, w = x.shape[-2:]
    x = x - x.mean(axis=(-2, -1), keepdims=True)
    window = np.hanning(h)[:, None] * np.hanning(w)[None, :]
    power = np.abs(np.fft.fft2(x * window)) ** 2
    if x.ndim == 5:
        power = power.mean(axis=2)
    radius = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)
    edges = np.logspace(math.log10(1.0 / min(h, w)), math.log10(0.5), 9)
    centres, levels, counts = [], [], []
    for lo, hi in itertools.pairwise(edges.tolist()):
        mask = (radius >= lo) & (radius < hi)
        if mask.any():
            centres.append(math.sqrt(lo * hi))
            levels.append(np.log(np.maximum(power[..., mask].mean(-1), 1e-30)))
            counts.append(float(mask.sum()))
    # weighted least squares: the log of a mean over n periodogram values has variance ∝ 1/n
    weight = np.asarray(counts)
    logf = np.log(np.asarray(centres))
    logp = np.stack(levels, -1)  # [N, C, bins]
    logf = logf - (weight * logf).sum() / weight.sum()
    logp = logp - (weight * logp).sum(-1, keepdims=True) / weight.sum()
    return (weight * logp * logf).sum(-1) / (weight * logf**2).sum()


def latent_features(x: torch.Tensor | np.ndarray) -> list[Features]:
    """Features of every batch item of a latent in canonical layout.

    Args:
        x: [N, C, H, W] (image) or [N, C, T, H, W] (video), raw or model space, finite values.

    Returns:
        One :class:`Features` per batch item (computed in float64).
    """
    if x.ndim not in (4, 5):
        raise ValueError(f"latent_features needs [N, C, H, W] or [N, C, T, H, W], got shape {tuple(x.shape)}")
    arr = _numpy64(x)
    n, c = arr.shape[:2]
    flat = arr.reshape(n, c, -1)
    mean = flat.mean(-1)
    centred = flat - mean[..., None]
    std = np.sqrt((centred**2).mean(-1))
    logstd = np.log(np.maximum(std, 1e-12))
    if 1 < c <= MAX_CORR_CHANNELS:
        cov = centred @ centred.transpose(0, 2, 1) / flat.shape[-1]
        denom = np.maximum(std[:, :, None] * std[:, None, :], 1e-24)
        corr = np.clip(cov / denom, -0.999, 0.999)
        iu = np.triu_indices(c, 1)
        corr_z = np.arctanh(corr[:, iu[0], iu[1]])
    else:
        corr_z = np.zeros((n, 0))
    small = min(arr.shape[-2:]) < MIN_SLOPE_SIDE
    slope = np.zeros((n, 0)) if small else spectral_slope(arr)
    return [Features(mean[i], logstd[i], corr_z[i], slope[i]) for i in range(n)]


# --- profiles ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stat:
    """Centre and image-to-image spread of each feature of one group."""

    center: tuple[float, ...]
    spread: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.center) != len(self.spread):
            raise ValueError(f"Stat: {len(self.center)} centres but {len(self.spread)} spreads")
        if any(not (s > 0 and math.isfinite(s)) for s in self.spread):
            raise ValueError("Stat: every spread must be finite and positive")


@dataclass(frozen=True, slots=True)
class Profile:
    """What latents of one format in one space look like.

    Attributes:
        format: the registry format name, or a user name for a calibrated VAE with no registered format.
        space: "raw" or "model" (for packed formats "model" means packed: FLUX.2 128 ch / 16×).
        channels: channel count of latents in this space.
        spatial_ratio: pixels per latent cell in this space.
        dims: 2 (image) or 3 (video).
        kind: "published", "measured", "derived" (transformed from another profile) or "user".
        source: where the numbers come from, for humans.
        samples: how many latents the statistics summarise (0 for published numbers).
        mean, logstd, corr, slope: per feature group, or None when the group is unknown (published numbers
            carry no correlations or spectra).
        pooled_mean, pooled_std: per-channel mean and std over every value of every latent.
        vae_sha256: the VAE file a user profile was calibrated on ("" otherwise).
        joint_corr: correlation matrix (row-major, 2C × 2C) of the per-image [means, log-stds]: an image's
            colour moves the channel means together and its contrast moves every std together, so these
            features are scored jointly; () for none (published numbers: see :func:`profile_from_published`;
            more than ``MAX_JOINT_CHANNELS`` channels: scored one by one).
    """

    format: str
    space: str
    channels: int
    spatial_ratio: int
    dims: int
    kind: str
    source: str
    samples: int
    mean: Stat | None
    logstd: Stat | None
    corr: Stat | None
    slope: Stat | None
    pooled_mean: tuple[float, ...]
    pooled_std: tuple[float, ...]
    vae_sha256: str = ""
    joint_corr: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.joint_corr and len(self.joint_corr) != (2 * self.channels) ** 2:
            raise ValueError(
                f"profile {self.format!r}: joint_corr needs (2·{self.channels})² = {(2 * self.channels) ** 2} values, "
                f"got {len(self.joint_corr)}"
            )
        if self.space not in ("raw", "model"):
            raise ValueError(f"profile {self.format!r}: space must be 'raw' or 'model', got {self.space!r}")
        if self.kind not in PROFILE_KINDS:
            raise ValueError(f"profile {self.format!r}: kind must be one of {PROFILE_KINDS}, got {self.kind!r}")
        want = {"mean": self.channels, "logstd": self.channels, "slope": self.channels}
        want["corr"] = self.channels * (self.channels - 1) // 2
        for group, n in want.items():
            stat = self.stat(group)
            if stat is not None and len(stat.center) != n:
                raise ValueError(
                    f"profile {self.key}: group {group!r} needs {n} values for {self.channels} channels, "
                    f"got {len(stat.center)}"
                )
        if len(self.pooled_mean) != self.channels or len(self.pooled_std) != self.channels:
            raise ValueError(f"profile {self.key}: pooled_mean/pooled_std need {self.channels} values each")

    @property
    def key(self) -> tuple[str, str]:
        """(format, space)."""
        return self.format, self.space

    @property
    def label(self) -> str:
        """ "sd1 raw"."""
        return f"{self.format} {self.space}"

    def stat(self, group: str) -> Stat | None:
        """The statistics of one feature group, or None when the profile does not know it."""
        if group not in GROUPS:
            raise ValueError(f"unknown feature group {group!r}: expected one of {GROUPS}")
        return getattr(self, group)

    @property
    def groups(self) -> tuple[str, ...]:
        """The feature groups this profile knows."""
        return tuple(g for g in GROUPS if self.stat(g) is not None)

    @property
    def overall_std(self) -> float:
        """Std of all values of all channels pooled (the number a scale factor like 0.18215 inverts)."""
        m = np.asarray(self.pooled_mean)
        s = np.asarray(self.pooled_std)
        return float(np.sqrt(np.mean(s**2 + m**2) - np.mean(m) ** 2))

    def to_dict(self) -> dict:
        """JSON-ready dict (floats rounded to 6 significant digits)."""
        out: dict = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Stat):
                value = {"center": _round(value.center), "spread": _round(value.spread)}
            elif isinstance(value, tuple):
                value = _round(value)
            out[f.name] = value
        return out

    @staticmethod
    def from_dict(data: Mapping) -> Profile:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in dataclasses.fields(Profile)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"profile data has unknown keys {unknown}; expected a subset of {sorted(names)}")
        kwargs = dict(data)
        for group in GROUPS:
            value = kwargs.get(group)
            kwargs[group] = None if value is None else Stat(tuple(value["center"]), tuple(value["spread"]))
        kwargs["pooled_mean"] = tuple(kwargs["pooled_mean"])
        kwargs["pooled_std"] = tuple(kwargs["pooled_std"])
        kwargs["joint_corr"] = tuple(kwargs.get("joint_corr", ()))
        return Profile(**kwargs)


def _round(values: Iterable[float]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


# Spread floors, in the units of each group: a feature that happened to be nearly constant over the
# calibration latents must not dominate the likelihood. mean: 5% of the channel's pooled std; logstd: 0.05
# (a 5% change of std); corr: 0.05 in Fisher z (≈ 0.05 in correlation); slope: 0.1 (spectra of 16-cell
# latents scatter by about that much from crop to crop).
SPREAD_FLOOR: Mapping[str, float] = {"mean": 0.05, "logstd": 0.05, "corr": 0.05, "slope": 0.1}


def _stat(values: np.ndarray, floor: np.ndarray | float) -> Stat:
    """Centre (mean) and spread (std with a floor, combined in quadrature) over samples: values [S, F]."""
    center = values.mean(0)
    spread = np.sqrt(values.var(0, ddof=1 if len(values) > 1 else 0) + np.square(floor))
    return Stat(tuple(float(v) for v in center), tuple(float(v) for v in spread))


def build_profile(
    features: list[Features],
    *,
    format: str,
    space: str,
    spatial_ratio: int,
    dims: int,
    kind: str,
    source: str,
    pooled_mean: Iterable[float],
    pooled_std: Iterable[float],
    vae_sha256: str = "",
) -> Profile:
    """Summarise the features of many latents of one (format, space) into a profile.

    Args:
        features: from :func:`latent_features`, all with the same channel count; groups missing from any of
            them (too small for a slope, too many channels for correlations) are left out of the profile.
        pooled_mean, pooled_std: per-channel mean/std over all values of all the latents.
    """
    if not features:
        raise ValueError("build_profile needs at least one latent's features")
    channels = len(features[0].mean)
    if any(len(f.mean) != channels for f in features):
        raise ValueError("build_profile: the latents have different channel counts; profile one format at a time")
    pooled_std = tuple(float(v) for v in pooled_std)
    stats: dict[str, Stat | None] = {}
    for group in GROUPS:
        arrays = [f.group(group) for f in features]
        if any(a.size == 0 for a in arrays):
            stats[group] = None
            continue
        floor = SPREAD_FLOOR[group] * np.asarray(pooled_std) if group == "mean" else SPREAD_FLOOR[group]
        stats[group] = _stat(np.stack(arrays), floor)
    joint: tuple[float, ...] = ()
    if channels <= MAX_JOINT_CHANNELS and len(features) > 4 * channels:
        values = np.stack([np.concatenate([f.mean, f.logstd]) for f in features])
        spread = np.asarray(stats["mean"].spread + stats["logstd"].spread)  # type: ignore[union-attr]
        cov = np.cov(values.T, ddof=1)
        corr = cov / spread[:, None] / spread[None, :]  # the floors in the spreads keep |corr| < 1
        corr = (1 - JOINT_SHRINK) * corr + JOINT_SHRINK * np.eye(len(corr))
        np.fill_diagonal(corr, 1.0)
        joint = tuple(float(v) for v in corr.ravel())
    return Profile(
        format=format,
        space=space,
        channels=channels,
        spatial_ratio=spatial_ratio,
        dims=dims,
        kind=kind,
        source=source,
        samples=len(features),
        pooled_mean=tuple(float(v) for v in pooled_mean),
        pooled_std=pooled_std,
        vae_sha256=vae_sha256,
        joint_corr=joint,
        **stats,
    )


@dataclass(frozen=True, slots=True)
class Transfer:
    """How pooled, published mean/std turn into per-image feature spreads, fitted on measured profiles.

    For a channel with pooled mean m and std s (over a data set): per-image means scatter by ``mean_spread·s``
    around m, per-image stds are ``within·s`` on average, log-stds scatter by ``logstd_spread`` and two channels'
    log-stds correlate by ``logstd_corr`` (channel means: no transferable correlation, their meaning differs
    from VAE to VAE).
    """

    mean_spread: float
    within: float
    logstd_spread: float
    logstd_corr: float = 0.0  # typical correlation between two channels' log-stds (an image's contrast)


# The population of features over the measured VAEs: used for groups a profile does not know (published
# numbers have no correlations or spectra), so that a missing group neither helps nor condemns a candidate.
@dataclass(frozen=True, slots=True)
class Population:
    """Scalar centre/spread of the corr and slope features over every measured profile."""

    corr_center: float
    corr_spread: float
    slope_center: float
    slope_spread: float


def profile_from_published(
    fmt: LatentFormat, mean: Iterable[float], std: Iterable[float], source: str, transfer: Transfer, *, space: str
) -> Profile:
    """A profile from pooled per-channel mean/std of a latent space (e.g. the numbers a model normalises with).

    Args:
        fmt: the format the statistics belong to.
        mean, std: pooled per-channel statistics of ``space``-space latents, one per channel of that space.
        source: where the numbers come from.
        transfer: spreads learned from measured profiles (see :class:`Transfer`).
        space: "raw" or "model".
    """
    m = np.asarray(list(mean), dtype=np.float64)
    s = np.asarray(list(std), dtype=np.float64)
    channels, ratio = fmt.space_shape(space)
    if m.shape != (channels,) or s.shape != (channels,):
        raise ValueError(f"{fmt.name} {space}-space statistics need {channels} values, got {m.size} and {s.size}")
    return Profile(
        format=fmt.name,
        space=space,
        channels=channels,
        spatial_ratio=ratio,
        dims=fmt.dims,
        kind="published",
        source=source,
        samples=0,
        mean=Stat(tuple(m.tolist()), tuple((transfer.mean_spread * s).tolist())),
        logstd=Stat(tuple(np.log(transfer.within * s).tolist()), tuple([transfer.logstd_spread] * channels)),
        corr=None,
        slope=None,
        pooled_mean=tuple(m.tolist()),
        pooled_std=tuple(s.tolist()),
        joint_corr=_published_joint(channels, transfer.logstd_corr),
    )


def _published_joint(channels: int, logstd_corr: float) -> tuple[float, ...]:
    """[means, log-stds] correlation for published numbers: independent means, equicorrelated log-stds."""
    if channels > MAX_JOINT_CHANNELS or logstd_corr == 0.0:
        return ()
    corr = np.eye(2 * channels)
    block = np.full((channels, channels), (1 - JOINT_SHRINK) * logstd_corr)
    np.fill_diagonal(block, 1.0)
    corr[channels:, channels:] = block
    return tuple(float(v) for v in corr.ravel())


def profile_from_norm_stats(fmt: LatentFormat, stats: NormStats, transfer: Transfer) -> Profile:
    """The raw-space profile implied by normalisation statistics read from a VAE file (FLUX.2 BatchNorm).

    ``stats`` hold one mean/std per model-space (packed) channel; for a packed format the raw channel's
    pooled statistics are those of its p×p sub-positions combined.
    """
    mean = stats.mean.double().numpy()
    var = stats.std.double().numpy() ** 2
    if fmt.patch > 1:
        mean = mean.reshape(fmt.channels, -1)
        second = (var.reshape(fmt.channels, -1) + mean**2).mean(1)
        mean = mean.mean(1)
        var = second - mean**2
    return dataclasses.replace(
        profile_from_published(fmt, mean, np.sqrt(var), stats.source, transfer, space="raw"),
        source=f"{fmt.name} raw statistics implied by {stats.source}",
    )


def affine(fmt: LatentFormat) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (a, b) with model = a·raw + b, for formats without packing or file-stored statistics."""
    if fmt.patch != 1 or fmt.norm_source == "vae":
        raise ValueError(
            f"{fmt.name}: raw↔model is not a per-channel affine map without the VAE file's statistics "
            f"(patch {fmt.patch}, normalisation {fmt.norm_source!r})"
        )
    c = fmt.channels
    mean = np.asarray(fmt.mean, dtype=np.float64) if fmt.mean else np.zeros(c)
    std = np.asarray(fmt.std, dtype=np.float64) if fmt.std else np.ones(c)
    a = fmt.scale / std
    return a, -(fmt.shift + mean) * a


def is_identity(fmt: LatentFormat) -> bool:
    """True when raw and model space are the same numbers for this format (scale 1, no shift, no norm)."""
    return fmt.patch == 1 and fmt.norm_source == "none" and fmt.scale == 1.0 and fmt.shift == 0.0


def transform_profile(profile: Profile, fmt: LatentFormat, steps: int, *, kind: str = "derived") -> Profile:
    """The profile of latents after applying the format's raw→model map ``steps`` times.

    ``steps=1`` turns a raw profile into the model-space one; ``steps=2`` is "scaled twice"; ``-1`` undoes the
    map once (model → raw, or "unscaled twice" from raw). Correlations and spectrum slopes are unchanged by a
    positive per-channel affine map. The resulting space label is raw for an even total, model for odd.
    """
    a, b = affine(fmt)
    if steps >= 0:
        a_k, b_k = np.ones_like(a), np.zeros_like(b)
        for _ in range(steps):
            a_k, b_k = a * a_k, a * b_k + b
    else:
        a_k, b_k = np.ones_like(a), np.zeros_like(b)
        for _ in range(-steps):
            a_k, b_k = a_k / a, (b_k - b) / a
    start = 0 if profile.space == "raw" else 1
    space = "raw" if (start + steps) % 2 == 0 else "model"
    mean = profile.mean
    if mean is not None:
        mean = Stat(
            tuple((a_k * np.asarray(mean.center) + b_k).tolist()), tuple((a_k * np.asarray(mean.spread)).tolist())
        )
    logstd = profile.logstd
    if logstd is not None:
        logstd = Stat(tuple((np.asarray(logstd.center) + np.log(a_k)).tolist()), logstd.spread)
    label = {1: "→model", 2: "scaled twice", -1: "→raw"}.get(steps, f"×{steps}")
    return dataclasses.replace(
        profile,
        space=space,
        kind=kind,
        source=f"{profile.source} ({label} with {fmt.name}'s scale/shift/mean/std)",
        mean=mean,
        logstd=logstd,
        pooled_mean=tuple((a_k * np.asarray(profile.pooled_mean) + b_k).tolist()),
        pooled_std=tuple((a_k * np.asarray(profile.pooled_std)).tolist()),
    )


# --- likelihoods -------------------------------------------------------------------------------------------


def _student_logpdf(z: np.ndarray, spread: np.ndarray, nu: float = STUDENT_NU) -> np.ndarray:
    const = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    return const - np.log(spread) - (nu + 1) / 2 * np.log1p(z**2 / nu)


def _group_stat(profile: Profile, group: str, population: Population | None, size: int) -> Stat | None:
    stat = profile.stat(group)
    if stat is not None or population is None or group not in ("corr", "slope"):
        return stat
    center, spread = (
        (population.corr_center, population.corr_spread)
        if group == "corr"
        else (population.slope_center, population.slope_spread)
    )
    return Stat((center,) * size, (spread,) * size)


def feature_fit(
    features: Features, profile: Profile, groups: Iterable[str], population: Population | None = None
) -> tuple[float, float, int]:
    """How well one latent's features fit a profile.

    Groups the profile lacks are scored against the population of measured VAEs when ``population`` is
    given (and raise otherwise).

    Returns:
        (log-likelihood summed over the features, mean squared z-score, number of features).
    """
    total, sq, n = 0.0, 0.0, 0
    groups = list(groups)
    if profile.joint_corr and "mean" in groups and "logstd" in groups and profile.mean and profile.logstd:
        ll, d2, p = _joint_fit(features, profile)
        total, sq, n = ll, d2, p
        groups = [g for g in groups if g not in ("mean", "logstd")]
    for group in groups:
        values = features.group(group)
        stat = _group_stat(profile, group, population, values.size)
        if stat is None:
            raise ValueError(f"profile {profile.label} has no {group!r} statistics and no population was given")
        if len(stat.center) != values.size:
            raise ValueError(
                f"profile {profile.label} has {len(stat.center)} {group!r} values, the latent {values.size}"
            )
        spread = np.asarray(stat.spread)
        z = (values - np.asarray(stat.center)) / spread
        total += float(_student_logpdf(z, spread).sum())
        sq += float(np.square(z).sum())
        n += values.size
    return total, sq / max(n, 1), n


def _joint_fit(features: Features, profile: Profile) -> tuple[float, float, int]:
    """Multivariate Student-t of [means, log-stds] with scale D·R·D: (log-likelihood, Mahalanobis², dims)."""
    if profile.mean is None or profile.logstd is None:
        raise ValueError(f"profile {profile.label} has joint correlations but no mean/logstd statistics")
    x = np.concatenate([features.mean, features.logstd])
    mu = np.asarray(profile.mean.center + profile.logstd.center)
    d = np.asarray(profile.mean.spread + profile.logstd.spread)
    p = len(x)
    corr = np.asarray(profile.joint_corr).reshape(p, p)
    z = (x - mu) / d
    chol = np.linalg.cholesky(corr)
    w = np.linalg.solve(chol, z)
    m2 = float(w @ w)
    logdet = 2 * float(np.log(np.diag(chol)).sum()) + 2 * float(np.log(d).sum())
    nu = STUDENT_NU
    const = math.lgamma((nu + p) / 2) - math.lgamma(nu / 2) - p / 2 * math.log(nu * math.pi)
    return const - 0.5 * logdet - (nu + p) / 2 * math.log1p(m2 / nu), m2, p


# --- stored calibration and profiles ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Calibration:
    """Numbers fitted by scripts/build_profiles.py on leave-one-photo-out latents of the training photos.

    Attributes:
        temperature: divides summed log-likelihoods before the softmax over candidates.
        fit_threshold: a latent whose mean squared z-score to its best profile exceeds this is reported as
            matching no profile (99th percentile of the true profile's score on calibration latents, ×1.5).
        transfer: spreads for published profiles.
        population: feature population for groups a profile lacks.
        report: the fit's numbers (log loss, accuracy, mean confidence), for humans.
        cycle_threshold: preflight's decode→encode test flags a latent whose cycle ratio, relative to the VAE's
            own latents of bundled photos, exceeds this (the largest relative ratio of the training photos' own
            latents over every jointly trained autoencoder that runs here); inf when not measured.
    """

    temperature: float
    fit_threshold: float
    transfer: Transfer
    population: Population
    report: Mapping
    cycle_threshold: float = math.inf


# Used only before scripts/build_profiles.py has written profiles.json (a source checkout mid-build):
# temperature 1 (plain likelihood), no "matches nothing" verdicts, SD-like spreads.
_UNFITTED = Calibration(
    temperature=1.0,
    fit_threshold=math.inf,
    transfer=Transfer(mean_spread=0.3, within=0.9, logstd_spread=0.25),
    population=Population(corr_center=0.0, corr_spread=0.6, slope_center=-2.0, slope_spread=0.6),
    report={"note": "profiles.json not built yet: uncalibrated"},
)


@cache
def _data() -> dict:
    path = resources.files("latentbridge").joinpath(DATA_FILE)
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def calibration() -> Calibration:
    """The stored calibration (temperature, fit threshold, transfer constants)."""
    data = _data().get("calibration")
    if not data:
        return _UNFITTED
    return Calibration(
        temperature=float(data["temperature"]),
        fit_threshold=float(data["fit_threshold"]),
        transfer=Transfer(**data["transfer"]),
        population=Population(**data["population"]),
        report=data.get("report", {}),
        cycle_threshold=float(data.get("cycle", {}).get("threshold", math.inf)),
    )


def builtin_profiles() -> tuple[Profile, ...]:
    """The profiles shipped in the package (measured and published), as stored."""
    return tuple(Profile.from_dict(p) for p in _data().get("profiles", ()))


def natural_image_reference() -> Mapping:
    """Statistics of the training photos at preview resolution (for preflight image scores), or {}."""
    return _data().get("natural", {})


def user_profile_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where calibrated profiles live: ``$LATENTBRIDGE_HOME/profiles`` or ``~/.cache/latentbridge/profiles``.

    Reads the environment when called (never at import).
    """
    env = os.environ if env is None else env
    home = env.get("LATENTBRIDGE_HOME")
    return (Path(home) if home else Path.home() / ".cache" / "latentbridge") / "profiles"


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text).strip("._") or "profile"


def save_user_profile(profile: Profile, directory: Path) -> Path:
    """Write ``profile`` to ``directory/<format>.<space>.json`` atomically (temp file + os.replace)."""
    path = directory / f"{_safe_name(profile.format)}.{profile.space}.json"
    text = json.dumps({"schema": 1, "profile": profile.to_dict()}, indent=1) + "\n"
    return atomic_write(path, text.encode(), parents=True)


def load_user_profiles(directory: Path) -> tuple[Profile, ...]:
    """Every profile in ``directory`` (none when it does not exist). Raises on a file that is not a profile."""
    if not directory.is_dir():
        return ()
    out = []
    fix = "expected a file written by `latentbridge calibrate`. Delete it or calibrate again."
    for path in sorted(directory.glob("*.json")):
        data = read_json_file(path, "not a latentbridge profile", fix)  # a regular file, bounded, not too deep
        try:
            out.append(Profile.from_dict(data["profile"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a field missing or of the wrong type
            raise LatentBridgeError(
                f"{path} is not a latentbridge profile ({type(exc).__name__}: {exc}); expected a file written by "
                "`latentbridge calibrate`. Delete it or calibrate again."
            ) from exc
    return tuple(out)


def profile_set(
    extra: Iterable[Profile] = (), *, user_dir: Path | None = None, include_builtin: bool = True
) -> dict[tuple[str, str], Profile]:
    """Every available profile by (format, space): built-in, then user, then ``extra`` (later ones win).

    Model-space profiles are derived from raw ones (and raw from model) where the format's raw↔model map is
    a per-channel affine function and no profile of that space exists yet.
    """
    chosen: dict[tuple[str, str], Profile] = {}
    sources: list[Iterable[Profile]] = []
    if include_builtin:
        sources.append(builtin_profiles())
    if user_dir is not None:
        sources.append(load_user_profiles(user_dir))
    sources.append(extra)
    for group in sources:
        for profile in group:
            chosen[profile.key] = profile
    registry = formats()
    for (name, space), profile in list(chosen.items()):
        fmt = registry.get(name)
        if fmt is None or fmt.patch != 1 or fmt.norm_source == "vae" or is_identity(fmt):
            continue
        other = "model" if space == "raw" else "raw"
        if (name, other) not in chosen:
            chosen[(name, other)] = transform_profile(profile, fmt, 1 if space == "raw" else -1)
    # formats sharing a raw space share the raw profile; their model profiles follow their own normalisation
    for name, owner in SAME_RAW_SPACE.items():
        fmt = registry.get(name)
        if (owner, "raw") in chosen and fmt is not None and (name, "model") not in chosen:
            base = dataclasses.replace(chosen[(owner, "raw")], format=name)
            chosen[(name, "model")] = transform_profile(base, fmt, 1)
    return chosen


def pooled_stats(latents: Iterable[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over every value of a list of [N, C, ...] latents."""
    total, total_sq, count = None, None, 0
    for x in latents:
        flat = x.detach().double().transpose(0, 1).reshape(x.shape[1], -1)
        s, s2 = flat.sum(1), flat.square().sum(1)
        total = s if total is None else total + s
        total_sq = s2 if total_sq is None else total_sq + s2
        count += flat.shape[1]
    if total is None or total_sq is None:
        raise ValueError("pooled_stats needs at least one latent")
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    return mean.tolist(), std.tolist()


# --- calibration from images ------------------------------------------------------------------------------

CALIBRATION_SIZES: tuple[int, ...] = (128, 256, 384)


def sample_crops(image: torch.Tensor, size: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """Random square crops of one image at random scales, with random horizontal flips.

    Args:
        image: [3, H, W] or [1, 3, H, W] in [-1, 1].
        size: crop side in pixels.
        count: number of crops.
        generator: seeded torch generator (the crops are reproducible).

    Returns:
        [count, 3, size, size] in [-1, 1]. The image is first resized (bicubic, antialiased) so that its
        short side is uniformly between ``size`` and its original short side (upscaled to ``size`` when
        smaller).
    """
    image = image[0] if image.ndim == 4 else image
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"sample_crops needs an RGB image [3, H, W], got shape {tuple(image.shape)}")
    h, w = image.shape[-2:]
    short = min(h, w)
    out = []
    for _ in range(count):
        target = size + float(torch.rand((), generator=generator)) * max(short - size, 0)
        factor = target / short
        nh, nw = max(size, round(h * factor)), max(size, round(w * factor))
        scaled = image
        if (nh, nw) != (h, w):
            scaled = torch.nn.functional.interpolate(
                image[None].float(), size=(nh, nw), mode="bicubic", antialias=True, align_corners=False
            )[0].clamp(-1, 1)
        top = int(torch.randint(nh - size + 1, (), generator=generator))
        left = int(torch.randint(nw - size + 1, (), generator=generator))
        crop = scaled[:, top : top + size, left : left + size]
        if bool(torch.randint(2, (), generator=generator)):
            crop = crop.flip(-1)
        out.append(crop)
    return torch.stack(out)


def native_profile_space(fmt: LatentFormat | None, native_space: str, channels: int) -> tuple[str, bool]:
    """(profile space, pack first?) for latents a VAE writes in ``native_space`` with ``channels`` channels.

    A tiny decoder of a packed format (TAEF2) writes the model space before packing: it is packed first.
    """
    if fmt is not None and native_space == "model" and fmt.patch > 1 and channels == fmt.channels:
        return "model", True
    return native_space, False


@torch.no_grad()
def calibrate(
    vae: VAE,
    images: Iterable[torch.Tensor],
    *,
    format: str | None = None,
    sizes: Iterable[int] = CALIBRATION_SIZES,
    crops: int = 2,
    seed: int = 0,
    kind: str = "user",
    run: Run | None = None,
) -> Profile:
    """Build a profile for any VAE with an encoder by encoding images.

    Args:
        vae: a loaded VAE whose ``encode`` maps images [N, 3, H, W] in [-1, 1] to latents in its native space.
        images: RGB images [3, H, W] (or [1, 3, H, W]) in [-1, 1], any sizes; ≥ 8 different images make a
            useful profile (the shipped ones use 16 photos × 3 sizes × 4 crops).
        format: the registry format the VAE writes (default: ``vae.format``, else the VAE's name as a
            user format).
        sizes: crop sides in pixels (each a multiple of the VAE's spatial ratio).
        crops: random crops per image and size.
        seed: seed of the crop sampler.
        kind: profile kind to record ("user" for `latentbridge calibrate`, "measured" for shipped ones).
        run: how the encodes run (default: on the VAE's own device and dtype); its cancel token stops them.

    Returns:
        A Profile of the VAE's native space (packed first for tiny decoders of packed formats).
    """
    if vae.encode is None:
        raise LatentBridgeError(
            f"VAE {vae.name!r} has no encoder, so it cannot be calibrated on images; "
            "pass the full VAE file (encoder and decoder), not a decoder-only file"
        )
    registry = formats()
    fmt = registry.get(format) if format else vae.format  # None: a user name for an unregistered space
    name = format or (vae.format.name if vae.format is not None else Path(vae.name).stem or "vae")
    space, do_pack = native_profile_space(fmt, vae.native_space, vae.channels)
    generator = torch.Generator().manual_seed(seed)
    feats: list[Features] = []
    latents: list[torch.Tensor] = []
    image_list = list(images)
    if not image_list:
        raise LatentBridgeError("calibrate got no images; pass a folder with at least 8 photos")
    sizes = tuple(sizes)
    for size in sizes:
        if size % vae.spatial_ratio:
            raise ValueError(f"calibration size {size} is not a multiple of the VAE's ratio {vae.spatial_ratio}")
    own = run if run is not None else vae.own_run()
    for image in image_list:
        for size in sizes:
            batch = sample_crops(image, size, crops, generator)
            z = codec.encode_native(vae, batch, own).cpu()
            if do_pack and fmt is not None:
                z = pack(z, fmt.patch)
            latents.append(z)
            feats.extend(latent_features(z))
    mean, std = pooled_stats(latents)
    ratio = vae.spatial_ratio * (fmt.patch if do_pack and fmt is not None else 1)
    source = f"{len(image_list)} images × sizes {list(sizes)} × {crops} crops encoded by {vae.name}"
    return build_profile(
        feats,
        format=name,
        space=space,
        spatial_ratio=ratio,
        dims=vae.dims,
        kind=kind,
        source=source,
        pooled_mean=mean,
        pooled_std=std,
        vae_sha256=vae.sha256,
    )
