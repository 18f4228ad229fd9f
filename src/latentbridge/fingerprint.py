"""Which latent format (and space) is this tensor? A fingerprint from the values alone, metadata ignored.

The shape narrows the field: channel count and dimensionality give every registered (format, space) whose
geometry fits (:func:`shape_candidates`); the spatial ratio cannot be seen in a tensor. Among those, the
candidates with a reference profile (:mod:`latentbridge.profiles`) are scored by how well the latent's
features — per-channel means and log-stds, cross-channel correlations, power-spectrum slopes — fit each
profile (a Student-t log-likelihood per feature, summed over features and batch items). A softmax of the
summed log-likelihoods divided by a temperature fitted on held-out latents (leave-one-photo-out, see
``scripts/build_profiles.py``), plus a log prior, gives the confidence. The prior is uniform over latent
*spaces* (one per VAE), then over raw and model, then over the formats that normalise one raw space
differently: SDXL's raw space, seen as "sdxl raw", "sdxl model" and "playground25 model", gets the same prior
mass as SD1's "sd1 raw" and "sd1 model", not 3/2 of it (:func:`family_log_prior`). Candidates without a
profile are listed as "possible by shape, no profile", and a latent far from every profile is reported as
matching none.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from latentbridge.formats import LatentFormat, formats, pack
from latentbridge.latent import LAYOUT_NAMES, Latent, alternative_layouts, to_layout
from latentbridge.profiles import (
    SAME_RAW_SPACE,
    Calibration,
    Features,
    Profile,
    calibration,
    feature_fit,
    is_identity,
    latent_features,
    profile_set,
    raw_owner,
    user_profile_dir,
)

__all__ = [
    "CONFIDENT",
    "NOISE_CROSS",
    "NOISE_LAG1",
    "Candidate",
    "Identification",
    "canonical_tensor",
    "family_log_prior",
    "identify",
    "layout_hints",
    "shape_candidates",
    "value_flags",
]

CONFIDENT = 0.9  # a candidate with this calibrated probability (and a fitting profile) is named alone
NOISE_LAG1 = 0.1  # i.i.d. noise: neighbouring cells correlate by < 0.1; image latents by 0.5–0.95
NOISE_CROSS = 0.1  # … and channels correlate by < 0.1


@dataclass(frozen=True, slots=True)
class Candidate:
    """One hypothesis: the tensor is a latent of ``format`` in ``space``.

    Attributes:
        format: registry name (or the name of a user-calibrated VAE).
        space: "raw" or "model".
        spatial_ratio: pixels per latent cell under this hypothesis.
        probability: calibrated probability among the profiled candidates (0.0 for shape-only ones).
        loglik: summed log-likelihood of the latent's features (nan without a profile).
        distance: mean squared z-score of the features to the profile (nan without a profile).
        fits: the distance is within what the profile's own latents show (calibrated threshold).
        profile: "kind: source" of the profile used, or "" (possible by shape, no profile).
        profile_kind: the profile's kind alone ("measured", "published", "derived", "user"), or "".
        also: formats that share this raw space (sdxl raw is also playground25 raw).
        unpacked: the tensor is this packed format's model space before packing (TAEF2's native layout).
        same_spaces: raw and model are the same numbers for this format.
    """

    format: str
    space: str
    spatial_ratio: int
    probability: float = 0.0
    loglik: float = math.nan
    distance: float = math.nan
    fits: bool = False
    profile: str = ""
    profile_kind: str = ""
    also: tuple[str, ...] = ()
    unpacked: bool = False
    same_spaces: bool = False

    @property
    def label(self) -> str:
        """ "sdxl raw", "flux2 model (unpacked)", "cosmos raw=model"."""
        space = "raw=model" if self.same_spaces else self.space
        out = f"{self.format} {space}" + (" (unpacked)" if self.unpacked else "")
        return out + (f" (= {'/'.join(self.also)} raw)" if self.also else "")

    def covers(self, name: str) -> bool:
        """True when this hypothesis is about format ``name`` (directly or through a shared raw space)."""
        return name == self.format or name in self.also

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        out = {
            "format": self.format,
            "space": self.space,
            "label": self.label,
            "spatial_ratio": self.spatial_ratio,
            "probability": round(self.probability, 4),
            "profile": self.profile,
            "profile_kind": self.profile_kind,
            "also": list(self.also),
            "unpacked": self.unpacked,
        }
        if self.profile:
            out.update(loglik=round(self.loglik, 3), distance=round(self.distance, 4), fits=self.fits)
        return out


@dataclass(frozen=True, slots=True)
class Identification:
    """What the values of a tensor say about its format and space.

    Attributes:
        shape: the tensor's shape in canonical layout ([N, C, H, W] or [N, C, T, H, W]).
        channels, dims: channel count, 2 (image) or 3 (video).
        candidates: profiled hypotheses, most probable first; probabilities sum to 1.
        shape_only: hypotheses the shape allows but no profile can score.
        groups: feature groups that were compared.
        temperature, fit_threshold: the calibration used.
        flags: "non-finite", "all-zero", "constant", "noise-like" — values that cannot be fingerprinted.
        evidence: numbers behind the flags (lag-1 autocorrelation, …).
        layout_hints: other layouts under which registered formats fit, as "read as frames-first [N, T, C, H, W]
            (…) it is a 16-ch video latent (cogvideox, …): pass --layout NTCHW" (in the summary when the stored
            layout fits no format; beside the answer otherwise — a bare tensor does not say its layout).
        frames: T when a video-shaped tensor was read as T frames of an image format (AnimateDiff, SVD: image-VAE
            latents stacked in time; no video format has this channel count); the candidates are then image ones.
    """

    shape: tuple[int, ...]
    channels: int
    dims: int
    candidates: tuple[Candidate, ...]
    shape_only: tuple[Candidate, ...]
    groups: tuple[str, ...]
    temperature: float
    fit_threshold: float
    flags: tuple[str, ...] = ()
    evidence: tuple[tuple[str, float], ...] = field(default=())
    layout_hints: tuple[str, ...] = ()
    frames: int = 0

    def conditional(self, space: str) -> tuple[tuple[Candidate, float], ...]:
        """The candidates of one space ("raw" or "model"; raw=model candidates count in both), renormalised.

        Conditioning on a space the user recorded is Bayes' rule: the other space's hypotheses drop out.

        Returns:
            (candidate, probability given the space) pairs, most probable first; () when none is of that space.
        """
        kept = [c for c in self.candidates if c.space == space or c.same_spaces]
        total = sum(c.probability for c in kept)
        if not kept or total <= 0.0:
            return ()
        return tuple(sorted(((c, c.probability / total) for c in kept), key=lambda cp: -cp[1]))

    @property
    def best(self) -> Candidate | None:
        """The most probable profiled candidate, or None."""
        return self.candidates[0] if self.candidates else None

    @property
    def confident(self) -> bool:
        """One candidate is probable enough (``CONFIDENT``) and its profile fits."""
        best = self.best
        return best is not None and best.fits and best.probability >= CONFIDENT

    @property
    def fits_any(self) -> bool:
        """Some profile fits the latent's features."""
        return any(c.fits for c in self.candidates)

    def family_probability(self, name: str) -> float:
        """Probability that the latent belongs to format ``name`` in either space."""
        return sum(c.probability for c in self.candidates if c.covers(name))

    def ratios(self) -> dict[int, list[str]]:
        """Spatial ratio -> formats possible by shape with that ratio (the tensor cannot tell them apart)."""
        out: dict[int, list[str]] = {}
        for cand in (*self.candidates, *self.shape_only):
            names = out.setdefault(cand.spatial_ratio, [])
            if cand.format not in names:
                names.append(cand.format)
        return dict(sorted(out.items()))

    @property
    def geometry(self) -> str:
        """ "4-ch image latent (8×: sd1, sdxl; 4×: cascade_b)"."""
        kind = "image" if self.dims == 2 or self.frames else "video"
        ratios = "; ".join(f"{r}×: {', '.join(n)}" for r, n in self.ratios().items())
        what = f"{self.channels}-ch {kind} latent" + (f" ({ratios})" if ratios else "")
        return f"{self.frames} frames of a {what}" if self.frames else what

    @property
    def summary(self) -> str:
        """One honest line: the answer, or what is ambiguous and why."""
        if self.frames:
            inner = dataclasses.replace(self, frames=0).summary
            return f"{self.frames} frames of image latents (an image VAE's, stacked in time): {inner}"
        return self._summary()

    def _summary(self) -> str:
        shape_only = ", ".join(c.label for c in self.shape_only)
        if not self.candidates and not self.shape_only:
            kind = "image" if self.dims == 2 else "video"
            out = f"no registered {kind} format has {self.channels} channels in raw or model space"
            return out + "".join(f"; {hint}" for hint in self.layout_hints)
        if self.flags and set(self.flags) & {"non-finite", "all-zero", "constant"}:
            what = {"non-finite": "contains NaN/inf", "all-zero": "all zeros", "constant": "constant"}
            flag = next(f for f in self.flags if f in what)
            return f"{what[flag]}: nothing to fingerprint; possible by shape: {self._all_labels()}"
        if "noise-like" in self.flags:
            return f"looks like i.i.d. noise, not an encoded image; possible by shape: {self._all_labels()}"
        if not self.candidates:
            return f"possible by shape, no profile: {shape_only}"
        best = self.candidates[0]
        tail = f"; possible by shape, no profile: {shape_only}" if shape_only else ""
        if not self.fits_any:
            return (
                f"matches no profile well (nearest: {best.label}, distance {best.distance:.1f} > "
                f"{self.fit_threshold:.1f}){tail}"
            )
        if self.confident:
            return f"{best.label} ({best.probability:.0%}){tail}"
        top, mass = [], 0.0
        for cand in self.candidates:
            top.append(cand)
            mass += cand.probability
            if mass >= CONFIDENT or len(top) == 3:
                break
        names = " or ".join(c.label for c in top)
        shares = "/".join(f"{round(100 * c.probability)}" for c in top)
        return f"{names}, {shares}{tail}"

    def _all_labels(self) -> str:
        return ", ".join(c.label for c in (*self.candidates, *self.shape_only))

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "summary": self.summary,
            "geometry": self.geometry,
            "shape": list(self.shape),
            "channels": self.channels,
            "dims": self.dims,
            "confident": self.confident,
            "candidates": [c.to_dict() for c in self.candidates],
            "shape_only": [c.to_dict() for c in self.shape_only],
            "groups": list(self.groups),
            "temperature": self.temperature,
            "fit_threshold": self.fit_threshold,
            "flags": list(self.flags),
            "evidence": dict(self.evidence),
            "layout_hints": list(self.layout_hints),
            "frames": self.frames,
        }


# --- hypotheses by shape -----------------------------------------------------------------------------------


def shape_candidates(
    channels: int, dims: int, profiles: Mapping[tuple[str, str], Profile] | None = None
) -> list[Candidate]:
    """Every (format, space) whose geometry has ``channels`` channels and ``dims`` spatial dims.

    Includes the unpacked form of packed model spaces (FLUX.2 model space before its 2×2 packing, what TAEF2
    reads and writes) and user profiles of VAEs with no registered format. Formats sharing a raw space are one
    hypothesis; formats whose raw and model spaces coincide give one hypothesis.
    """
    out: list[Candidate] = []
    registry = formats()
    shared: dict[str, list[str]] = {}
    for name, owner in SAME_RAW_SPACE.items():
        shared.setdefault(owner, []).append(name)
    for fmt in registry.values():
        if fmt.dims != dims:
            continue
        for space in ("raw", "model"):
            c, ratio = fmt.space_shape(space)
            if space == "model" and is_identity(fmt):
                continue
            if space == "raw" and fmt.name in SAME_RAW_SPACE:
                continue  # covered by the owner's raw hypothesis
            if c == channels:
                also = tuple(shared.get(fmt.name, ())) if space == "raw" else ()
                out.append(Candidate(fmt.name, space, ratio, also=also, same_spaces=is_identity(fmt)))
        if fmt.patch > 1 and fmt.channels == channels:
            out.append(Candidate(fmt.name, "model", fmt.spatial_ratio, unpacked=True))
    for (name, space), prof in (profiles or {}).items():
        if name not in registry and prof.channels == channels and prof.dims == dims:
            out.append(Candidate(name, space, prof.spatial_ratio))
    return out


# --- the fingerprint ---------------------------------------------------------------------------------------


def canonical_tensor(x: Latent | torch.Tensor) -> torch.Tensor:
    """The values in canonical layout: [N, C, H, W] or [N, C, T, H, W].

    A bare tensor is taken as NCHW (4-D), NCTHW (5-D) or CHW (3-D, a batch of one is added); a Latent is
    permuted from its declared layout.
    """
    if isinstance(x, Latent):
        target = "NCTHW" if "T" in x.layout else "NCHW"
        return to_layout(x.tensor, x.layout, target)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"identify needs a torch.Tensor or a Latent, got {type(x).__name__}")
    if x.ndim == 3:
        return x[None]
    if x.ndim in (4, 5):
        return x
    raise ValueError(
        f"a latent tensor is [N, C, H, W] (image) or [N, C, T, H, W] (video), got shape {tuple(x.shape)}; "
        "reshape it, or wrap it in a Latent with its layout"
    )


def value_flags(x: torch.Tensor) -> tuple[tuple[str, ...], tuple[tuple[str, float], ...]]:
    """Flags for values that cannot be fingerprinted, with the numbers behind them.

    Args:
        x: canonical latent [N, C, (T,) H, W], any space.

    Returns:
        (flags, evidence): flags among "non-finite", "all-zero", "constant", "noise-like".
    """
    arr = x.detach().to("cpu", torch.float64).numpy()  # small statistics: numpy is faster than threaded torch
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int((~finite).sum())
        return ("non-finite",), (("non_finite_values", float(bad)), ("values", float(arr.size)))
    if not arr.any():
        return ("all-zero",), (("max_abs", 0.0),)
    if float(arr.max() - arr.min()) == 0.0:
        return ("constant",), (("value", float(arr.flat[0])),)
    if min(arr.shape[-2:]) < 2:
        return (), ()
    centred = arr - arr.mean(axis=(-2, -1), keepdims=True)
    var = np.maximum((centred**2).mean(axis=(-2, -1)), 1e-30)
    lag_h = (centred[..., 1:, :] * centred[..., :-1, :]).mean(axis=(-2, -1)) / var
    lag_w = (centred[..., :, 1:] * centred[..., :, :-1]).mean(axis=(-2, -1)) / var
    lag1 = float(((lag_h + lag_w) / 2).mean())
    flat = np.moveaxis(centred, 1, 0).reshape(arr.shape[1], -1)
    if arr.shape[1] > 1:
        norm = np.sqrt((flat**2).sum(1))
        corr = (flat @ flat.T) / np.maximum(np.outer(norm, norm), 1e-30)
        cross = float(np.abs(corr - np.diag(np.diag(corr))).max())
    else:
        cross = 0.0
    evidence = (("lag1_autocorrelation", round(lag1, 4)), ("max_cross_correlation", round(cross, 4)))
    if abs(lag1) < NOISE_LAG1 and cross < NOISE_CROSS:
        return ("noise-like",), evidence
    return (), evidence


def family_log_prior(labels: list[tuple[str, str]]) -> np.ndarray:
    """Log prior of each hypothesis: uniform over latent spaces (VAEs), then over raw/model, then over formats.

    Args:
        labels: (format, space) of each profiled hypothesis, one entry per candidate.

    Returns:
        [len(labels)] log prior (unnormalised: only differences matter to the softmax). Which VAE made a latent
        and whether it was normalised are separate questions, so each raw space gets the same mass, split evenly
        between its raw and model hypotheses, and a model-space share between the formats that normalise that
        raw space differently: "sd1 raw" and "sd1 model" get 1/2 each; "sdxl raw" 1/2, "sdxl model" and
        "playground25 model" 1/4 each; "cosmos raw=model" (one hypothesis) 1.
    """
    owners = [raw_owner(name) for name, _ in labels]
    spaces: dict[str, set[str]] = {}
    for owner, (_, space) in zip(owners, labels, strict=True):
        spaces.setdefault(owner, set()).add(space)
    forms = [(owner, space) for owner, (_, space) in zip(owners, labels, strict=True)]
    return np.array(
        [-math.log(len(spaces[owner])) - math.log(forms.count((owner, space))) for owner, space in forms],
        dtype=np.float64,
    )


def _profile_note(p: Profile) -> str:
    return f"{p.kind}: {p.source}"


def layout_hints(shape: tuple[int, ...]) -> tuple[str, ...]:
    """Readings of a stored shape in the other layouts real files use under which registered formats fit.

    Args:
        shape: the tensor's shape as stored (3-5 dims).

    Returns:
        One line per layout: what it is, the formats with that channel count, and the --layout to pass.
    """
    counts: dict[int, dict[int, list[str]]] = {2: {}, 3: {}}
    for fmt in formats().values():
        for c in {fmt.channels, fmt.model_channels}:
            counts[fmt.dims].setdefault(c, []).append(fmt.name)
    out = []
    for dims in (2, 3):
        # a 5-D tensor may be a video latent or the frames of an image latent (AnimateDiff, SVD)
        accepted = set(counts[dims]) | (set(counts[2]) if len(shape) == 5 else set())
        for alt in alternative_layouts(shape, accepted, dims):
            if ("T" in alt) != (dims == 3):
                continue  # layouts with frames are readings as video (or image-frame) latents, the others as images
            if alt == "TCHW" and shape[1] in counts[2]:
                continue  # [T, C, H, W] has the channels where NCHW has them: only worth saying when no image fits
            c = shape[alt.index("C")]
            if "T" in alt and c in counts[3]:
                what = f"a {c}-ch video latent ({', '.join(dict.fromkeys(counts[3][c]))})"
            elif "T" in alt and len(shape) == 5:
                names = ", ".join(dict.fromkeys(counts[2][c]))
                what = f"{shape[alt.index('T')]} frames of a {c}-ch image latent ({names})"
            elif "T" in alt:
                continue
            else:
                what = f"a {c}-ch image latent ({', '.join(dict.fromkeys(counts[2][c]))})"
            line = f"read as {LAYOUT_NAMES[alt][1]} it is {what}: pass --layout {alt}"
            if line not in out:
                out.append(line)
    return tuple(out)


def identify(
    latent: Latent | torch.Tensor,
    *,
    profiles: Mapping[tuple[str, str], Profile] | None = None,
    calib: Calibration | None = None,
    user_dir: Path | None = None,
    layout_known: bool = False,
) -> Identification:
    """Identify a latent's format and space from its values alone (recorded format/space are ignored).

    Args:
        latent: a tensor ([N, C, H, W], [N, C, T, H, W] or [C, H, W]) or a Latent (its layout is used,
            nothing else), raw or model space.
        profiles: (format, space) -> Profile to score against; default: built-in profiles plus the user
            profiles in ``user_dir`` (default :func:`~latentbridge.profiles.user_profile_dir`).
        calib: temperature and thresholds; default: the shipped calibration.
        user_dir: where user profiles live (only used when ``profiles`` is None).
        layout_known: the layout was stated (recorded in the file or given): no hints about other layouts.

    Returns:
        An :class:`Identification`: candidates with calibrated probabilities, shape-only candidates, flags.
    """
    x = canonical_tensor(latent)
    stored = tuple(latent.tensor.shape if isinstance(latent, Latent) else latent.shape)
    if profiles is None:
        profiles = profile_set(user_dir=user_dir if user_dir is not None else user_profile_dir())
    calib = calib or calibration()
    dims = x.ndim - 2
    channels = int(x.shape[1])
    hypotheses = shape_candidates(channels, dims, profiles)
    flags, evidence = value_flags(x)
    hints = () if layout_known else layout_hints(stored)
    temperature, fit_threshold = calib.temperature, calib.fit_threshold

    def result(
        candidates: tuple[Candidate, ...], shape_only: tuple[Candidate, ...], groups: tuple[str, ...]
    ) -> Identification:
        return Identification(
            shape=tuple(x.shape),
            channels=channels,
            dims=dims,
            candidates=candidates,
            shape_only=shape_only,
            groups=groups,
            temperature=temperature,
            fit_threshold=fit_threshold,
            flags=flags,
            evidence=evidence,
            layout_hints=hints,
        )

    scored: list[tuple[Candidate, Profile, list[Features]]] = []
    shape_only: list[Candidate] = []
    if not hypotheses and dims == 3 and shape_candidates(channels, 2, profiles):
        # no video format has C channels but image formats do: T frames of an image VAE's latents
        n, c, t, h, w = x.shape
        frames = x.permute(0, 2, 1, 3, 4).reshape(n * t, c, h, w)
        ident = identify(frames, profiles=profiles, calib=calib)
        return dataclasses.replace(ident, shape=tuple(x.shape), frames=t, layout_hints=hints)
    if flags:
        return result((), tuple(hypotheses), ())
    features = latent_features(x)
    packed_features: dict[int, list[Features]] = {}
    for cand in hypotheses:
        prof = profiles.get((cand.format, cand.space))
        if prof is None:
            shape_only.append(cand)
            continue
        feats = features
        if cand.unpacked:
            fmt: LatentFormat = formats()[cand.format]
            if x.ndim != 4 or x.shape[-1] % fmt.patch or x.shape[-2] % fmt.patch:
                shape_only.append(cand)
                continue
            if fmt.patch not in packed_features:
                packed_features[fmt.patch] = latent_features(pack(x, fmt.patch))
            feats = packed_features[fmt.patch]
        if prof.channels != len(feats[0].mean):
            shape_only.append(cand)
            continue
        scored.append((cand, prof, feats))
    groups = features[0].groups
    if not scored:
        return result((), tuple(shape_only), groups)
    rows = []
    for cand, prof, feats in scored:
        lls, dists = [], []
        for f in feats:
            ll, dist, _ = feature_fit(f, prof, f.groups, calib.population)
            lls.append(ll)
            dists.append(dist)
        rows.append((cand, prof, float(np.sum(lls)), float(np.mean(dists))))
    prior = family_log_prior([(r[0].format, r[0].space) for r in rows])
    logits = np.array([r[2] for r in rows]) / calib.temperature + prior
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    cands = [
        Candidate(
            cand.format,
            cand.space,
            cand.spatial_ratio,
            probability=float(p),
            loglik=ll,
            distance=dist,
            fits=dist <= calib.fit_threshold,
            profile=_profile_note(prof),
            profile_kind=prof.kind,
            also=cand.also,
            unpacked=cand.unpacked,
            same_spaces=cand.same_spaces,
        )
        for (cand, prof, ll, dist), p in zip(rows, probs, strict=True)
    ]
    cands.sort(key=lambda c: -c.probability)
    return result(tuple(cands), tuple(shape_only), groups)
