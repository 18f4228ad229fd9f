"""The check's result: what it concluded about the latent (:class:`LatentFacts`) and the :class:`Report`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from latentbridge.checks.findings import Finding
from latentbridge.fingerprint import Identification
from latentbridge.vae import VaeIdentity

EXIT_CODES: Mapping[str, int] = {"ok": 0, "warn": 1, "error": 2}


@dataclass(frozen=True, slots=True)
class LatentFacts:
    """What the check concluded about the latent before comparing it with the VAE.

    Attributes:
        shape: the tensor's shape as given.
        layout: the layout the check used (declared, or detected when the declared one cannot be right).
        format: the latent's format name ("" when unknown).
        format_source: "recorded", "given" (``format=``), "identified" (confident fingerprint) or "unknown".
        space: "raw", "model" or "unknown".
        space_source: "recorded", "given", "shape" (channel count decides), "statistics" or "unknown".
    """

    shape: tuple[int, ...]
    layout: str
    format: str
    format_source: str
    space: str
    space_source: str

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return dataclasses.asdict(self) | {"shape": list(self.shape)}


@dataclass(frozen=True, slots=True)
class Report:
    """The result of :func:`check`.

    Attributes:
        verdict: "ok", "warn" or "error": the worst finding's severity ("info" counts as ok).
        findings: every finding, worst first.
        latent: what was concluded about the latent.
        vae: the VAE's facts.
        identification: the statistical fingerprint, or None when the values cannot be fingerprinted.
        preflight: preflight scores (empty unless requested).
    """

    verdict: str
    findings: tuple[Finding, ...]
    latent: LatentFacts
    vae: VaeIdentity
    identification: Identification | None = None
    preflight: tuple[Any, ...] = field(default=())

    @property
    def exit_code(self) -> int:
        """0 ok, 1 warn, 2 error."""
        return EXIT_CODES[self.verdict]

    def codes(self, severity: str | None = None) -> tuple[str, ...]:
        """Finding codes (of one severity, or all)."""
        return tuple(f.code for f in self.findings if severity is None or f.severity == severity)

    def finding(self, code: str) -> Finding:
        """The finding with ``code``; KeyError naming the codes present when there is none."""
        for f in self.findings:
            if f.code == code:
                return f
        raise KeyError(f"no finding {code!r}; the report has {list(self.codes())}")

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "latent": self.latent.to_dict(),
            "vae": self.vae.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
            "identification": self.identification.to_dict() if self.identification is not None else None,
            "preflight": [p.to_dict() for p in self.preflight],
        }
