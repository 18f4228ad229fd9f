"""The check itself: :func:`check` runs every finding of the package in order and gathers the :class:`Report`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from latentbridge.checks.facts import (
    accepted_channels,
    as_latent,
    vae_identity,
)
from latentbridge.checks.family import family_findings
from latentbridge.checks.findings import SEVERITIES, Finding, worst
from latentbridge.checks.geometry import shape_findings
from latentbridge.checks.layout import layout_findings, value_findings
from latentbridge.checks.preflight import run_preflight
from latentbridge.checks.result import LatentFacts, Report
from latentbridge.checks.space import raw_profile, space_findings, space_test
from latentbridge.fingerprint import Identification, identify, value_flags
from latentbridge.formats import LatentFormat, formats, get_format
from latentbridge.latent import Latent
from latentbridge.profiles import (
    Calibration,
    Profile,
    calibration,
    profile_from_norm_stats,
    profile_set,
    user_profile_dir,
)
from latentbridge.run import Run
from latentbridge.vae import VAE, VaeIdentity, as_vae


def check(
    latent: Latent | torch.Tensor,
    vae: VAE | VaeIdentity | Any,
    *,
    format: str | LatentFormat | None = None,
    space: str | None = None,
    profiles: Mapping[tuple[str, str], Profile] | None = None,
    calib: Calibration | None = None,
    user_dir: Path | None = None,
    preflight: bool = False,
    preflight_cells: int = 32,
    fingerprint: Identification | None = None,
    cycle_reference: float | None = None,
    run: Run | None = None,
) -> Report:
    """Check that a latent and a VAE belong together before decoding.

    Args:
        latent: a Latent (recorded format, space, layout and provenance are used) or a bare tensor (its layout
            is taken as canonical for its rank and checked against the VAE).
        vae: a loaded VAE, VaeIdentity, or a weights description (see :func:`vae_identity`).
        format: the latent's format when it is not recorded (overrides the record).
        space: the latent's space, "raw" or "model", when it is not recorded (overrides the record).
        profiles: (format, space) -> Profile; default: built-in plus user profiles.
        calib: calibration; default: the shipped one.
        user_dir: user-profile folder (default :func:`~latentbridge.profiles.user_profile_dir`).
        preflight: also decode a small crop with every candidate family and score the images (needs a loaded
            VAE for the VAE's own decode; rgb previews for the other candidates).
        preflight_cells: side of the centre crop, in latent cells, that preflight decodes.
        fingerprint: :func:`~latentbridge.fingerprint.identify` of this latent, when already computed (checking
            one latent against many VAEs); it must come from the same tensor and profiles.
        cycle_reference: :func:`cycle_reference` of this VAE at ``preflight_cells``, when already computed
            (checking many latents against one VAE); computed by preflight when needed and not given.
        run: how preflight's test decodes run (default: on the VAE's own device and dtype); its cancel token
            stops them.

    Returns:
        A Report; its verdict is "error" when decoding would fail or silently give a wrong image.
    """
    if isinstance(vae, torch.nn.Module):
        vae = as_vae(vae)  # a diffusers autoencoder module (pipe.vae)
    facts = vae_identity(vae)
    lat, declared = as_latent(latent, facts)
    if format is not None:
        lat = lat.replace(format=get_format(format))
    if space is not None:
        if space not in ("raw", "model", "unknown"):
            raise ValueError(f"space must be 'raw', 'model' or 'unknown', got {space!r}")
        lat = lat.replace(space=space)
    format_source = "given" if format is not None else ("recorded" if lat.format is not None else "unknown")
    space_source = "given" if space is not None else ("recorded" if lat.space != "unknown" else "unknown")
    calib = calib or calibration()
    if profiles is None:
        profiles = profile_set(user_dir=user_dir if user_dir is not None else user_profile_dir())
    vfmt = facts.format
    if (
        vfmt is not None
        and facts.stats is not None
        and vfmt.norm_source == "vae"
        and (vfmt.name, "raw") not in profiles
    ):
        profiles = {**profiles, (vfmt.name, "raw"): profile_from_norm_stats(vfmt, facts.stats, calib.transfer)}
    findings: list[Finding] = []
    add = findings.append

    # layout and rank, then the values (on the canonical layout)
    accepted = accepted_channels(facts)
    shape = tuple(lat.tensor.shape)
    lat, x, found = layout_findings(lat, facts, declared, accepted)
    findings.extend(found)
    frames = lat.dim("T")
    flags, flag_evidence = value_flags(x)  # on the canonical layout: the lags run along H and W
    findings.extend(value_findings(flags, flag_evidence))

    # channels, packing, recorded family, ratios, sizes
    channels = int(x.shape[1])
    lat_fmt = lat.format
    vae_fmt = facts.format
    geometry, space_now, space_source = shape_findings(lat, x, facts, accepted, space_source, frames)
    findings.extend(geometry)

    # space from statistics, family from the fingerprint
    ident: Identification | None = None
    fingerprintable = not (set(flags) & {"non-finite", "all-zero", "constant", "noise-like"})
    if fingerprintable and channels in accepted:
        space_fmt = lat_fmt or vae_fmt
        if space_fmt is not None and x.shape[1] == space_fmt.channels:
            test = space_test(x, space_fmt, raw_profile(space_fmt, profiles, facts.stats, calib), calib)
            if test is not None:
                space_now, space_source = space_findings(test, space_fmt, space_now, space_source, add)
        ident = fingerprint if fingerprint is not None else identify(x, profiles=profiles, calib=calib)
        # a space the user recorded (and the statistics did not contradict) rules out the other space's hypotheses
        known_space = space_now if space_source in ("recorded", "given", "shape") else None
        family_findings(ident, lat_fmt, vae_fmt, facts, profiles, add, known_space)
        if lat_fmt is None and ident.confident and ident.best is not None:
            format_source = "identified"
            lat_fmt = formats().get(ident.best.format)

    if not facts.has_decoder:
        add(
            Finding(
                "no-decoder",
                "warn",
                f"{facts.name} holds no decoder ({facts.architecture or 'encoder only'})",
                "pass the full VAE file or a decoder file of the same family",
            )
        )

    findings.sort(key=lambda f: -SEVERITIES.index(f.severity))
    facts_out = LatentFacts(
        shape=shape,
        layout=lat.layout,
        format=lat_fmt.name if lat_fmt is not None else "",
        format_source=format_source if lat_fmt is not None else "unknown",
        space=space_now,
        space_source=space_source if space_now != "unknown" else "unknown",
    )
    report = Report(worst(findings), tuple(findings), facts_out, facts, ident)
    if preflight and fingerprintable and channels in accepted:
        scores, extra = run_preflight(
            x, vae, report, cells=preflight_cells, cycle_reference=cycle_reference, calib=calib, run=run
        )
        all_findings = tuple(sorted((*report.findings, *extra), key=lambda f: -SEVERITIES.index(f.severity)))
        report = dataclasses.replace(
            report, findings=all_findings, verdict=worst(list(all_findings)), preflight=tuple(scores)
        )
    return report
