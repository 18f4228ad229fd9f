"""Findings from the statistical fingerprint (:func:`latentbridge.identify`) against the VAE's family."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from latentbridge.checks.findings import Finding
from latentbridge.checks.geometry import temporal_clash
from latentbridge.fingerprint import Identification
from latentbridge.formats import LatentFormat, formats
from latentbridge.profiles import (
    Profile,
    raw_owner,
)
from latentbridge.vae import VaeIdentity
from latentbridge.zoo import is_zoo_name

# The fingerprint's calibrated probability that the latent belongs to the VAE's family decides: below 5 % the
# pairing is wrong with 95 % confidence (an error); below 20 % it is probably wrong (a warning).
FAMILY_ERROR = 0.05


FAMILY_DOUBT = 0.2


def family_findings(
    ident: Identification,
    lat_fmt: LatentFormat | None,
    vae_fmt: LatentFormat | None,
    facts: VaeIdentity,
    profiles: Mapping[tuple[str, str], Profile],
    add: Any,
    space: str | None = None,
) -> None:
    """Findings from the statistical fingerprint against the VAE's (and the record's) family.

    The VAE's probability is the calibrated probability of every hypothesis the VAE decodes correctly, each
    counted once: its own format in either space, and the raw space it shares with other formats — for an SDXL
    VAE "sdxl raw (= playground25 raw)" and "sdxl model", not "playground25 model" (the same VAE, but converted
    with SDXL's scale a Playground-normalised latent decodes wrong) — given ``space`` when the user recorded it.
    """
    best = ident.best
    evidence: tuple[tuple[str, Any], ...] = (
        ("fingerprint", ident.summary),
        ("probabilities", {c.label: round(c.probability, 4) for c in ident.candidates}),
    )
    if vae_fmt is None:
        if best is not None and ident.confident:
            add(
                Finding(
                    "vae-family-unknown",
                    "info",
                    f"{facts.name} does not say which latent space it belongs to; the latent's statistics say "
                    f"{ident.summary}",
                    "pass the VAE's format (--vae-format) to have the pairing checked",
                    evidence,
                )
            )
        return
    owner = raw_owner(vae_fmt.name)
    has_profile = any(raw_owner(name) == owner for name, _ in profiles)
    if not has_profile:
        calibrate = f"latentbridge calibrate --vae {facts.name or 'FILE'} --images DIR --format {vae_fmt.name}"
        # Only a profile measured on a real VAE is sharp enough to doubt a family that has none: a published
        # (pooled mean/std) profile is broad, and a zoo demo VAE's says nothing about real latents — a FLUX.1 or
        # SD3 latent (no profile) may well fit zoo-c's, as a HunyuanVideo latent may fit Wan's published numbers.
        sharp = (
            best is not None
            and not is_zoo_name(best.format)
            and _profile_kinds(profiles, raw_owner(best.format)) & {"measured", "user"}
        )
        if best is not None and sharp and ident.confident and raw_owner(best.format) != raw_owner(vae_fmt.name):
            fmt_best = formats().get(best.format)
            ratio = ""
            if fmt_best is not None and fmt_best.spatial_ratio != vae_fmt.spatial_ratio:
                ratio = f" ({best.format} is {fmt_best.spatial_ratio}×, {vae_fmt.name} {vae_fmt.spatial_ratio}×)"
            elif fmt_best is not None and temporal_clash(fmt_best, vae_fmt, 1):
                ratio = (
                    f" ({best.format} is {fmt_best.temporal_ratio}× in time, frames {fmt_best.frame_rule}; "
                    f"{vae_fmt.name} {vae_fmt.temporal_ratio}×, {vae_fmt.frame_rule})"
                )
            add(
                Finding(
                    "family-doubt",
                    "warn",
                    f"the latent's statistics fit {best.label} well ({best.probability:.0%}){ratio}; "
                    f"{vae_fmt.name} has no reference profile to compare, so the pairing is unconfirmed",
                    f"check where the latent came from; to compare properly, build a profile: {calibrate}",
                    evidence,
                )
            )
            return
        add(
            Finding(
                "no-profile",
                "info",
                f"no reference profile for {vae_fmt.name}, so the statistics cannot confirm the pairing "
                f"(fingerprint: {ident.summary})",
                f"build one: {calibrate}",
                evidence,
            )
        )
        return
    if best is None:
        return
    pairs = ident.conditional(space) if space in ("raw", "model") else ()
    given = f" of {space} latents" if pairs else ""
    if pairs:
        evidence += (("given_space", space), ("probabilities_given_space", {c.label: round(p, 4) for c, p in pairs}))
    else:
        pairs = tuple((c, c.probability) for c in ident.candidates)
    best, best_p = pairs[0]
    vae_p = sum(p for c, p in pairs if _decodes_right(c, vae_fmt))
    if not best.fits:
        add(
            Finding(
                "no-fit",
                "info",
                f"the latent's statistics fit no reference profile well (nearest: {best.label}, distance "
                f"{best.distance:.1f}), so they cannot confirm or refute the pairing with {vae_fmt.name}",
                "",
                evidence,
            )
        )
        return
    recorded_clash = lat_fmt is not None and raw_owner(lat_fmt.name) != raw_owner(vae_fmt.name)
    if recorded_clash:
        return  # the record already disagrees with the VAE (reported as a recorded family/ratio mismatch)
    recorded = f" (recorded as {lat_fmt.name})" if lat_fmt is not None else ""
    vae_kind = _profile_kinds(profiles, owner)
    if vae_p < FAMILY_ERROR:
        add(
            Finding(
                "fingerprint-mismatch",
                "error",
                f"the latent's statistics say {best.label} ({best_p:.0%}{given}){recorded}, but {facts.name} is "
                f"{vae_fmt.name} ({vae_p:.1%} by the same statistics): "
                + (
                    "the same VAE, another model-space normalisation"
                    if raw_owner(best.format) == owner
                    else "same shapes, different latent spaces"
                ),
                (
                    f"the VAE is right but the latent is normalised as {best.format}: record its format "
                    f"(--format {best.format}) so that it is converted with {best.format}'s numbers"
                    if raw_owner(best.format) == owner
                    else f"decode with a {best.format} VAE, or move the latent with `latentbridge transfer` "
                    f"({best.format} → {vae_fmt.name})"
                ),
                evidence,
            )
        )
    elif vae_p < FAMILY_DOUBT:
        published = (
            f"; {vae_fmt.name} is known only from published statistics (pooled channel means and stds), which "
            "one latent cannot test sharply — a batch of latents of the same source decides"
            if vae_kind == {"published"}
            else ""
        )
        add(
            Finding(
                "family-doubt",
                "warn",
                f"{best.label} or {vae_fmt.name} — the statistics cannot tell for sure: {best.label} "
                f"{best_p:.0%}{given}, {facts.name}'s {vae_fmt.name} {vae_p:.0%}{recorded}{published}",
                "check where the latent came from, or run with --preflight to compare decodes",
                evidence,
            )
        )


def _decodes_right(cand: Any, vae_fmt: LatentFormat) -> bool:
    """A latent of hypothesis ``cand`` decodes right with a VAE of ``vae_fmt`` (converted with its numbers)."""
    if cand.format == vae_fmt.name:
        return True
    return (cand.space == "raw" or cand.same_spaces) and raw_owner(cand.format) == raw_owner(vae_fmt.name)


def _profile_kinds(profiles: Mapping[tuple[str, str], Profile], owner: str) -> set[str]:
    """Kinds of the profiles behind a raw space's hypotheses, derived ones traced to what they came from."""
    kinds = {p.kind for (name, _), p in profiles.items() if raw_owner(name) == owner}
    if kinds - {"derived"}:
        kinds.discard("derived")
    return kinds
