"""Which space the latent's spread says it is in: raw, model, scaled twice or unscaled twice (:func:`space_test`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from latentbridge.checks.findings import Finding
from latentbridge.formats import LatentFormat, NormStats
from latentbridge.profiles import (
    Calibration,
    Profile,
    affine,
    feature_fit,
    is_identity,
    latent_features,
    profile_from_norm_stats,
    raw_owner,
    transform_profile,
)

SPACE_DECISION = 0.95  # probability a space hypothesis needs before the check relies on it


# When a format has no measured profile, its scale factor is the only clue to the raw spread: most were
# chosen as 1/std of raw latents (SD1's 0.18215, SDXL, SD3, FLUX.1, Sana …). Real images scatter around it
# (SD1 raw std 2.5–7 over the bundled photos, i.e. ±0.45 in log), so the log-std of one latent is scored with
# this spread.
SCALE_ONLY_LOGSTD_SPREAD = 0.45


@dataclass(frozen=True, slots=True)
class SpaceTest:
    """Which application count of the format's raw→model map explains the latent's spread.

    ``probabilities`` maps k to a probability: -1 "divided by the scale twice", 0 raw, 1 model, 2 "scaled
    twice". ``expected_std`` holds the overall std expected under each k, ``observed_std`` the latent's.
    """

    probabilities: Mapping[int, float]
    expected_std: Mapping[int, float]
    observed_std: float
    reference: str

    @property
    def best(self) -> int:
        """The most probable k."""
        return max(self.probabilities, key=lambda k: self.probabilities[k])

    @property
    def decided(self) -> bool:
        """The best k is probable enough to act on."""
        return self.probabilities[self.best] >= SPACE_DECISION


STEP_NAMES: Mapping[int, str] = {-1: "unscaled twice", 0: "raw", 1: "model", 2: "scaled twice"}


def raw_profile(
    fmt: LatentFormat, profiles: Mapping[tuple[str, str], Profile], stats: NormStats | None, calib: Calibration
) -> Profile | None:
    prof = profiles.get((fmt.name, "raw")) or profiles.get((raw_owner(fmt.name), "raw"))
    if prof is None and stats is not None and fmt.norm_source == "vae":
        prof = profile_from_norm_stats(fmt, stats, calib.transfer)
    return prof


def space_test(x: torch.Tensor, fmt: LatentFormat, raw_profile: Profile | None, calib: Calibration) -> SpaceTest | None:
    """Score raw / model / scaled-twice / unscaled-twice for a canonical latent of ``fmt``.

    Args:
        x: [N, C, (T,) H, W] canonical, finite, not constant.
        fmt: the latent's (assumed) format; its raw↔model map must be per-channel affine.
        raw_profile: the format's raw-space profile; without one, the overall spread is compared with
            1/scale (the way scale factors are chosen), which needs ``fmt.scale`` ≠ 1.
        calib: the shipped calibration (temperature).

    Returns:
        A SpaceTest, or None when the format's spaces cannot be told apart by statistics (scale 1 and no
        normalisation, packed or file-normalised formats without a raw profile).
    """
    if is_identity(fmt) or fmt.patch != 1 or fmt.norm_source == "vae":
        return None
    if x.shape[1] != fmt.channels:
        return None
    steps = (-1, 0, 1, 2)
    observed = float(x.double().std())
    if raw_profile is not None and raw_profile.channels == fmt.channels:
        feats = latent_features(x)
        logliks, expected = {}, {}
        for k in steps:
            prof = transform_profile(raw_profile, fmt, k)
            logliks[k] = sum(feature_fit(f, prof, ("mean", "logstd"))[0] for f in feats)
            expected[k] = prof.overall_std
        reference = f"{raw_profile.kind} profile of {raw_profile.format} raw ({raw_profile.source})"
        temperature = calib.temperature
    else:
        if fmt.scale == 1.0 or fmt.norm_source != "none":
            return None
        per_item = x.double().flatten(1).std(1).clamp_min(1e-30).log().numpy()
        log_raw = -math.log(fmt.scale)
        logliks, expected = {}, {}
        for k in steps:
            centre = log_raw + k * math.log(fmt.scale)
            z = (per_item - centre) / SCALE_ONLY_LOGSTD_SPREAD
            logliks[k] = float(-0.5 * np.square(z).sum())
            expected[k] = math.exp(centre)
        reference = f"1/scale of {fmt.name} ({fmt.scale:g}): raw latents have std ≈ {math.exp(log_raw):.3g}"
        temperature = 1.0
    values = np.array([logliks[k] for k in steps]) / temperature
    probs = np.exp(values - values.max())
    probs /= probs.sum()
    return SpaceTest(dict(zip(steps, probs.tolist(), strict=True)), expected, observed, reference)


def space_findings(test: SpaceTest, fmt: LatentFormat, space: str, source: str, add: Any) -> tuple[str, str]:
    """Findings from the space statistics; returns the (possibly estimated) space and its source."""
    k = test.best
    ratio = test.observed_std / test.expected_std[0]
    evidence = (
        ("observed_std", round(test.observed_std, 5)),
        ("expected_std_raw", round(test.expected_std[0], 5)),
        ("expected_std_model", round(test.expected_std[1], 5)),
        ("ratio_to_raw", round(ratio, 5)),
        ("probabilities", {STEP_NAMES[s]: round(p, 4) for s, p in test.probabilities.items()}),
        ("reference", test.reference),
    )
    a = affine(fmt)[0]
    gain = float(np.exp(np.mean(np.log(a))))
    if not test.decided:
        if space == "unknown":
            add(
                Finding(
                    "space-unknown",
                    "warn",
                    f"the space is not recorded and the statistics cannot tell it: std {test.observed_std:.3g} vs "
                    f"{test.expected_std[0]:.3g} expected raw and {test.expected_std[1]:.3g} model "
                    f"({fmt.name}'s raw→model gain {gain:.3g} is within image-to-image spread)",
                    "record the space: --space raw (ComfyUI LATENT, VAE output) or --space model (diffusers, "
                    "TAESD, training caches)",
                    evidence,
                )
            )
        return space, source
    if k in (-1, 2):
        twice = "scaled twice" if k == 2 else "un-scaled twice"
        how = "the raw→model scaling was applied twice" if k == 2 else "model→raw was applied to a raw latent"
        add(
            Finding(
                "scaled-twice" if k == 2 else "unscaled-twice",
                "error",
                f"the latent looks {twice}: std {test.observed_std:.4g} is {ratio:.3g}× {fmt.name}'s raw spread "
                f"({test.expected_std[0]:.3g}); raw is 1×, model {gain:.3g}×, {twice} {gain**k:.3g}× — {how}",
                (
                    f"undo one application: x / {gain:.5g} per channel (latentbridge: convert model→raw once) and "
                    "treat the result as model space"
                    if k == 2
                    else f"redo one application: x × {gain:.5g} (convert raw→model once) and treat it as raw space"
                ),
                evidence,
            )
        )
        return ("model" if k == 2 else "raw"), "statistics"
    found = "raw" if k == 0 else "model"
    if space == "unknown":
        add(
            Finding(
                "space-estimated",
                "info",
                f"the space is not recorded; the statistics say {found} (std {test.observed_std:.3g}: raw "
                f"{test.expected_std[0]:.3g}, model {test.expected_std[1]:.3g}; "
                f"{test.probabilities[k]:.0%})",
                f"record it (--space {found}) to skip the estimate",
                evidence,
            )
        )
        return found, "statistics"
    if found != space:
        add(
            Finding(
                "space-mismatch",
                "error",
                f"the latent is recorded as {space} space but its statistics are {found} space: std "
                f"{test.observed_std:.4g} vs {test.expected_std[0]:.3g} raw / {test.expected_std[1]:.3g} model for "
                f"{fmt.name} ({test.probabilities[k]:.0%}); decoding it as {space} would scale it by "
                f"{(1 / gain if space == 'model' else gain):.3g} too much",
                f"pass --space {found} (or fix the record)",
                evidence,
            )
        )
        return found, "statistics"
    return space, source
