"""Catch a wrong latent/VAE pairing before it costs a decode: shapes, layouts, spaces, families, values.

:func:`check` compares what is known about a latent (its tensor, recorded format/space/layout, provenance) with
what is known about a VAE (a loaded :class:`~latentbridge.vae.VAE`, a diffusers autoencoder module, or the
identity a weight file's header gives) and returns a :class:`Report`: a verdict ("ok", "warn", "error") and
findings, each with a code from the catalogue :data:`FINDINGS`, a severity, the kind of evidence it rests on
(fact, provenance, a test with the VAE, statistics), a message naming what was found and what was expected, the
numbers behind it and a concrete fix.

What it looks at, in order (one module each): values (NaN/inf, all zeros, constant, noise) and layout (missing
batch dimension, channels-last, frames-first, image vs video) in :mod:`~latentbridge.checks.layout`; channel
count (naming the registered formats that fit), packed vs unpacked (FLUX.2), spatial/temporal ratio and recorded
family, the family's size and frame rules, a source size recorded in the provenance in
:mod:`~latentbridge.checks.geometry`; the space (raw, model, scaled twice, unscaled twice — from the statistics
against the reference profile) in :mod:`~latentbridge.checks.space`; the statistical fingerprint
(:func:`latentbridge.identify`) against the VAE's family in :mod:`~latentbridge.checks.family`. ``preflight=True``
adds cheap decodes of a small crop with every candidate family, scored for how natural they look, and — for a
VAE with both halves — a decode→encode cycle test: a latent of the VAE's own space is (nearly) a fixed point of
encode∘decode, a latent of another space is not (:func:`cycle_ratio`; :mod:`~latentbridge.checks.preflight`).
:mod:`~latentbridge.checks.pairing` runs them in that order.

Exit codes of ``latentbridge check``: 0 ok, 1 warn, 2 error — and 2 as well when the check could not run
(unreadable file, bad option), with an ``error:`` line on stderr instead of a report.
"""

from __future__ import annotations

from latentbridge.checks.facts import vae_identity
from latentbridge.checks.findings import (
    EVIDENCE_KINDS,
    FINDINGS,
    SEVERITIES,
    VERDICTS,
    EvidenceKind,
    Finding,
    FindingKind,
    Severity,
)
from latentbridge.checks.pairing import check
from latentbridge.checks.preflight import (
    CYCLE_PHOTOS,
    PREFLIGHT_MARGIN,
    PREFLIGHT_NATURAL,
    PreflightScore,
    cycle_ratio,
    cycle_reference,
    image_scores,
    preflight_candidates,
    rgb_preview_of,
    run_preflight,
)
from latentbridge.checks.result import EXIT_CODES, LatentFacts, Report
from latentbridge.checks.space import SpaceTest, space_test

__all__ = [
    "CYCLE_PHOTOS",
    "EVIDENCE_KINDS",
    "EXIT_CODES",
    "FINDINGS",
    "PREFLIGHT_MARGIN",
    "PREFLIGHT_NATURAL",
    "SEVERITIES",
    "VERDICTS",
    "EvidenceKind",
    "Finding",
    "FindingKind",
    "LatentFacts",
    "PreflightScore",
    "Report",
    "Severity",
    "SpaceTest",
    "check",
    "cycle_ratio",
    "cycle_reference",
    "image_scores",
    "preflight_candidates",
    "rgb_preview_of",
    "run_preflight",
    "space_test",
    "vae_identity",
]
