"""Findings and their catalogue: every code the check can report, with one meaning each.

A :class:`Finding` is one thing the check noticed: a code from :data:`FINDINGS`, a severity within the code's
range, a message (what was found and what was expected), a fix, the numbers behind it (``evidence``) and the
kind of evidence it rests on (``evidence_kind``):

* ``fact``: shapes, channels, ratios, packing, a recorded label (format, space, layout) — what the tensor and the
  files state;
* ``provenance``: what the latent's provenance records about where it came from (its source size and frames);
* ``vae-test``: a test with the given VAE itself (a test decode, the decode→encode cycle);
* ``statistics``: the latent's values compared with reference profiles (spread, fingerprint, image scores).

Shells render and filter findings by code, severity and evidence kind; :data:`FINDINGS` says what each code
means, which severities it takes and which evidence keys it may carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal, cast

Severity = Literal["info", "warn", "error"]
SEVERITIES: tuple[str, ...] = ("info", "warn", "error")
VERDICTS: tuple[str, ...] = ("ok", "warn", "error")
EvidenceKind = Literal["fact", "provenance", "vae-test", "statistics"]
EVIDENCE_KINDS: tuple[str, ...] = ("fact", "provenance", "vae-test", "statistics")

_SPACE_KEYS = ("observed_std", "expected_std_raw", "expected_std_model", "ratio_to_raw", "probabilities", "reference")
_FINGERPRINT_KEYS = ("fingerprint", "probabilities", "given_space", "probabilities_given_space")
_LAYOUT_KEYS = ("shape", "declared_layout", "detected_layout")


@dataclass(frozen=True, slots=True)
class FindingKind:
    """What one finding code means.

    Attributes:
        code: the stable identifier ("channel-mismatch").
        title: what it means, in a few words (one meaning per code).
        severities: the severities a finding of this code can have.
        evidence_kind: what it rests on: "fact", "provenance", "vae-test" or "statistics".
        evidence_keys: the names its ``evidence`` may hold.
    """

    code: str
    title: str
    severities: tuple[Severity, ...]
    evidence_kind: EvidenceKind
    evidence_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.severities or set(self.severities) - set(SEVERITIES):
            raise ValueError(f"finding kind {self.code!r}: severities must come from {SEVERITIES}")
        if self.evidence_kind not in EVIDENCE_KINDS:
            raise ValueError(f"finding kind {self.code!r}: evidence kind must be one of {EVIDENCE_KINDS}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "code": self.code,
            "title": self.title,
            "severities": list(self.severities),
            "evidence_kind": self.evidence_kind,
            "evidence_keys": list(self.evidence_keys),
        }


def _catalogue(kinds: Iterable[FindingKind]) -> Mapping[str, FindingKind]:
    """code -> kind; a code listed twice is an error (one meaning per code)."""
    listed = [kind.code for kind in kinds]
    twice = sorted({code for code in listed if listed.count(code) > 1})
    if twice:
        raise ValueError(f"finding codes {twice} are catalogued twice: one meaning per code")
    return MappingProxyType({kind.code: kind for kind in kinds})


FINDINGS: Mapping[str, FindingKind] = _catalogue(
    [
        # values
        FindingKind("non-finite", "NaN or inf values", ("error",), "fact", ("non_finite_values", "values")),
        FindingKind("all-zero", "an all-zero latent (an empty latent)", ("error",), "fact", ("max_abs",)),
        FindingKind("constant", "every value the same", ("error",), "fact", ("value",)),
        FindingKind(
            "noise-like",
            "uncorrelated values: noise, not an encoded image",
            ("warn",),
            "statistics",
            ("lag1_autocorrelation", "max_cross_correlation"),
        ),
        # layout and rank
        FindingKind("channels-last", "channels-last tensor read as channels-first", ("error",), "fact", _LAYOUT_KEYS),
        FindingKind("frames-first", "frames-first video read as channels-first", ("error",), "fact", _LAYOUT_KEYS),
        FindingKind("missing-batch", "no batch dimension", ("info", "warn"), "fact", ("shape", "layout")),
        FindingKind(
            "image-frames",
            "frames of image latents for an image VAE (AnimateDiff, SVD)",
            ("info",),
            "fact",
            ("frames", "vae_dims", "latent_format"),
        ),
        FindingKind(
            "video-to-image-vae",
            "a video latent given to an image VAE",
            ("warn", "error"),
            "fact",
            ("frames", "vae_dims", "latent_format"),
        ),
        FindingKind(
            "image-to-video-vae",
            "an image latent given to a video VAE",
            ("error",),
            "fact",
            ("shape", "vae_dims", "latent_format"),
        ),
        # channels, packing, recorded family and geometry
        FindingKind(
            "channel-mismatch",
            "a channel count the VAE does not take",
            ("error",),
            "fact",
            ("latent_channels", "vae_channels"),
        ),
        FindingKind(
            "packed-as-raw",
            "a packed model-space latent recorded as raw",
            ("error",),
            "fact",
            ("channels", "recorded_space"),
        ),
        FindingKind(
            "unpacked-model",
            "an unpacked latent recorded as packed model space",
            ("error",),
            "fact",
            ("channels", "recorded_space", "model_channels"),
        ),
        FindingKind("space-from-shape", "the channel count tells the space", ("info",), "fact", ("channels",)),
        FindingKind(
            "shared-raw-space",
            "two formats of one VAE (one raw space)",
            ("info",),
            "fact",
            ("latent_format", "vae_format"),
        ),
        FindingKind(
            "ratio-mismatch",
            "the recorded format's spatial ratio differs from the VAE's",
            ("error",),
            "fact",
            ("latent_ratio", "vae_ratio"),
        ),
        FindingKind(
            "source-size-mismatch",
            "the source image size in the provenance does not fit the VAE's ratio",
            ("error",),
            "provenance",
            ("source_size", "decoded_size", "vae_ratio"),
        ),
        FindingKind(
            "temporal-mismatch",
            "the recorded format's temporal compression differs from the VAE's",
            ("error",),
            "fact",
            (
                "latent_temporal_ratio",
                "vae_temporal_ratio",
                "latent_frame_rule",
                "vae_frame_rule",
                "latent_frames",
                "pixel_frames",
            ),
        ),
        FindingKind(
            "family-mismatch",
            "the recorded format is another latent space than the VAE's",
            ("error",),
            "fact",
            ("latent_format", "vae_format"),
        ),
        FindingKind(
            "ratio-ambiguous",
            "no format recorded and the channel count occurs at several ratios",
            ("info",),
            "fact",
            ("ratios",),
        ),
        FindingKind(
            "size-multiple",
            "a pixel size the family's models do not take",
            ("warn",),
            "fact",
            ("pixel_size", "size_multiple"),
        ),
        FindingKind(
            "frame-rule",
            "the source frame count in the provenance breaks the family's frame rule",
            ("error",),
            "provenance",
            ("frames", "latent_frames", "rule", "expected_latent_frames"),
        ),
        # space from statistics
        FindingKind(
            "space-unknown", "no space recorded and the spread cannot tell it", ("warn",), "statistics", _SPACE_KEYS
        ),
        FindingKind("space-estimated", "no space recorded; the spread tells it", ("info",), "statistics", _SPACE_KEYS),
        FindingKind(
            "space-mismatch", "the spread contradicts the recorded space", ("error",), "statistics", _SPACE_KEYS
        ),
        FindingKind("scaled-twice", "raw→model applied twice", ("error",), "statistics", _SPACE_KEYS),
        FindingKind("unscaled-twice", "model→raw applied to a raw latent", ("error",), "statistics", _SPACE_KEYS),
        # family from the fingerprint
        FindingKind(
            "fingerprint-mismatch",
            "the fingerprint says another family than the VAE's",
            ("error",),
            "statistics",
            _FINGERPRINT_KEYS,
        ),
        FindingKind(
            "family-doubt",
            "the fingerprint doubts the VAE's family",
            ("warn",),
            "statistics",
            _FINGERPRINT_KEYS,
        ),
        FindingKind(
            "vae-family-unknown",
            "the VAE does not say its family; the fingerprint does",
            ("info",),
            "statistics",
            _FINGERPRINT_KEYS,
        ),
        FindingKind(
            "no-profile",
            "no reference profile for the VAE's family",
            ("info",),
            "statistics",
            _FINGERPRINT_KEYS,
        ),
        FindingKind("no-fit", "the values fit no reference profile", ("info",), "statistics", _FINGERPRINT_KEYS),
        # the VAE file
        FindingKind("no-decoder", "the VAE file holds no decoder", ("warn",), "fact"),
        # preflight
        FindingKind("preflight-unavailable", "no natural-image reference for preflight", ("info",), "vae-test"),
        FindingKind(
            "preflight-mismatch",
            "another family's preview of the crop looks more natural",
            ("warn",),
            "statistics",
            ("penalties",),
        ),
        FindingKind(
            "preflight-unnatural",
            "the VAE's test decode does not look like a photo",
            ("warn",),
            "vae-test",
            ("scores", "z"),
        ),
        FindingKind(
            "preflight-cycle-unavailable", "no threshold for the decode→encode cycle test", ("info",), "vae-test"
        ),
        FindingKind(
            "preflight-cycle",
            "the decode→encode cycle test with the VAE",
            ("info", "warn"),
            "vae-test",
            ("cycle", "reference_ratio", "relative_ratio", "threshold"),
        ),
    ]
)
"""The finding catalogue: code -> :class:`FindingKind` (title, severity range, evidence kind, evidence keys)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the check noticed.

    Attributes:
        code: a code of :data:`FINDINGS` ("channel-mismatch", "scaled-twice", …).
        severity: "info", "warn" or "error", within the code's range.
        message: what was found and what was expected.
        fix: a concrete next step ("" for purely informative findings).
        evidence: the numbers behind it, as (name, value) pairs (names from the code's ``evidence_keys``).
        evidence_kind: what it rests on ("fact", "provenance", "vae-test", "statistics"); the code's, when not given.
    """

    code: str
    severity: str
    message: str
    fix: str = ""
    evidence: tuple[tuple[str, Any], ...] = ()
    evidence_kind: EvidenceKind | None = None

    def __post_init__(self) -> None:
        kind = FINDINGS.get(self.code)
        if kind is None:
            raise ValueError(f"finding code {self.code!r} is not in the catalogue (latentbridge.checks.FINDINGS)")
        if self.severity not in kind.severities:
            raise ValueError(f"finding {self.code!r}: severity must be one of {kind.severities}, got {self.severity!r}")
        unknown = sorted({name for name, _ in self.evidence} - set(kind.evidence_keys))
        if unknown:
            raise ValueError(f"finding {self.code!r}: evidence {unknown} is not catalogued ({kind.evidence_keys})")
        if self.evidence_kind is None:
            object.__setattr__(self, "evidence_kind", kind.evidence_kind)
        elif self.evidence_kind != kind.evidence_kind:
            raise ValueError(
                f"finding {self.code!r} rests on {kind.evidence_kind} evidence, not {self.evidence_kind!r}"
            )

    @property
    def title(self) -> str:
        """What the code means (:attr:`FindingKind.title`)."""
        return FINDINGS[self.code].title

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "code": self.code,
            "severity": self.severity,
            "evidence_kind": self.evidence_kind,
            "message": self.message,
            "fix": self.fix,
            "evidence": dict(self.evidence),
        }


def worst(findings: Iterable[Finding]) -> str:
    """The verdict of some findings: "error", "warn" or "ok" ("info" counts as ok)."""
    severities = {f.severity for f in findings}
    if "error" in severities:
        return "error"
    if "warn" in severities:
        return "warn"
    return "ok"


def by_severity(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """The findings worst first (stable within a severity)."""
    return tuple(sorted(findings, key=lambda f: -SEVERITIES.index(f.severity)))


def as_severity(severity: str) -> Severity:
    """``severity`` checked against :data:`SEVERITIES`."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    return cast(Severity, severity)
