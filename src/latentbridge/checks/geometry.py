"""Findings from shapes and records: channel counts, packing, spatial and temporal ratios, recorded families, the
family's size multiple and frame rule, a source size the provenance records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from latentbridge.checks.facts import (
    FRAME_KEYS,
    SIZE_KEYS,
    WIDTH_KEYS,
    provenance_int,
)
from latentbridge.checks.findings import Finding
from latentbridge.checks.layout import count_noun
from latentbridge.formats import LatentFormat, find_formats, latent_frames
from latentbridge.latent import Latent
from latentbridge.profiles import (
    raw_owner,
)
from latentbridge.vae import VaeIdentity


def _fmt_list(fmts: list[LatentFormat], space: str) -> str:
    if not fmts:
        return "none"
    return ", ".join(f"{f.name} ({space} {f.space_shape(space)[0]} ch / {f.space_shape(space)[1]}×)" for f in fmts)


def formats_with_channels(channels: int, dims: int | None) -> str:
    """Human list of the registry formats whose raw space, or packed model space, has ``channels`` channels."""
    raw = find_formats(channels=channels, dims=dims, space="raw")
    packed = [f for f in find_formats(channels=channels, dims=dims, space="model") if f.patch > 1]
    parts = [_fmt_list(raw, "raw")] if raw else []
    if packed:
        parts.append(_fmt_list(packed, "model"))
    return "; ".join(parts) if parts else "none in the registry"


def pixel_frames(fmt: LatentFormat, latent_t: int) -> int:
    if fmt.dims == 2:
        return 1
    return (latent_t - 1) * fmt.temporal_ratio + 1 if fmt.causal_first_frame else latent_t * fmt.temporal_ratio


def temporal_clash(lat_fmt: LatentFormat, vae_fmt: LatentFormat, frames: int) -> str:
    """How two video formats' temporal compression differs for a latent of ``frames`` latent frames ("" if not).

    Two video VAEs differ in time when their temporal ratio or their frame rule (a causal first frame kept alone:
    4n+1, or not: 4n) differ. Even where one latent frame decodes to one frame in both, the VAEs are different
    networks with different latent spaces.
    """
    if lat_fmt.dims != 3 or vae_fmt.dims != 3:
        return ""
    if (lat_fmt.temporal_ratio, lat_fmt.causal_first_frame) == (vae_fmt.temporal_ratio, vae_fmt.causal_first_frame):
        return ""
    ours, theirs = pixel_frames(lat_fmt, frames), pixel_frames(vae_fmt, frames)
    rules = (
        f"{lat_fmt.name} is {lat_fmt.temporal_ratio}× in time (frames {lat_fmt.frame_rule}), {vae_fmt.name} "
        f"{vae_fmt.temporal_ratio}× ({vae_fmt.frame_rule})"
    )
    if ours == theirs:
        return (
            f"{rules}; {count_noun(frames, 'latent frame')} decode{'s' if frames == 1 else ''} to "
            f"{count_noun(ours, 'frame')} in both, but through another VAE's latent space"
        )
    return (
        f"{rules}: {count_noun(frames, 'latent frame')} {'is' if frames == 1 else 'are'} "
        f"{count_noun(ours, 'frame')} in {lat_fmt.name} but would decode to {count_noun(theirs, 'frame')} with "
        f"{vae_fmt.name}"
    )


def pixel_size_findings(
    lat: Latent, x: torch.Tensor, fmt: LatentFormat, facts: VaeIdentity, space: str, add: Any
) -> None:
    """Recorded pixel size vs ratio, the family's size multiple, and its frame rule."""
    ratio = fmt.model_spatial_ratio if space == "model" and x.shape[1] == fmt.model_channels else fmt.spatial_ratio
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = h * ratio, w * ratio
    rec_h, rec_w = provenance_int(lat, SIZE_KEYS), provenance_int(lat, WIDTH_KEYS)
    if rec_h is not None and rec_w is not None and (abs(rec_h - ph) >= ratio or abs(rec_w - pw) >= ratio):
        fits = [
            f.name
            for f in find_formats(channels=int(x.shape[1]), dims=fmt.dims, space=space if space != "unknown" else "raw")
            if abs(h * f.space_shape(space if space != "unknown" else "raw")[1] - rec_h) < ratio
        ]
        add(
            Finding(
                "source-size-mismatch",
                "error",
                f"the source image was {rec_w}×{rec_h} px (provenance) but a {w}×{h} latent at {fmt.name}'s "
                f"{ratio}× decodes to {pw}×{ph} px",
                f"the latent's ratio is {rec_h / h:g}×: decode it with a VAE of that ratio"
                + (f" (formats that fit: {', '.join(fits)})" if fits else ""),
                (("source_size", [rec_w, rec_h]), ("decoded_size", [pw, ph]), ("vae_ratio", ratio)),
            )
        )
    if (ph % fmt.size_multiple or pw % fmt.size_multiple) and facts.format is not None:
        lo_h, hi_h = ph - ph % fmt.size_multiple, ph + (-ph) % fmt.size_multiple
        lo_w, hi_w = pw - pw % fmt.size_multiple, pw + (-pw) % fmt.size_multiple
        add(
            Finding(
                "size-multiple",
                "warn",
                f"{w}×{h} cells = {pw}×{ph} px, but {fmt.name} models take multiples of {fmt.size_multiple} px "
                f"({fmt.source('size_multiple')}); it decodes, but cannot go back into the diffusion model"
                + (" or be packed to model space" if fmt.patch > 1 and space != "model" else ""),
                f"crop the latent to {lo_w // ratio}×{lo_h // ratio} cells ({lo_w}×{lo_h} px) or pad it to "
                f"{hi_w // ratio}×{hi_h // ratio} cells ({hi_w}×{hi_h} px)",
                (("pixel_size", [pw, ph]), ("size_multiple", fmt.size_multiple)),
            )
        )
    if fmt.dims == 3 and x.ndim == 5:
        t = int(x.shape[2])
        rec_frames = provenance_int(lat, FRAME_KEYS)
        if rec_frames is not None:
            try:
                expected_t = latent_frames(fmt, rec_frames)
            except ValueError as exc:
                add(
                    Finding(
                        "frame-rule",
                        "error",
                        f"the source video had {rec_frames} frames, which breaks {fmt.name}'s rule "
                        f"({fmt.frame_rule}): {exc}",
                        f"re-encode a clip of {fmt.frame_rule} frames (e.g. {pixel_frames(fmt, t)})",
                        (("frames", rec_frames), ("latent_frames", t), ("rule", fmt.frame_rule)),
                    )
                )
                return
            if expected_t != t:
                add(
                    Finding(
                        "frame-rule",
                        "error",
                        f"{rec_frames} pixel frames make {expected_t} latent frames in {fmt.name} "
                        f"({fmt.frame_rule}), but the latent has {t}: it was made with another temporal ratio",
                        f"decode with the VAE that encoded it ({t} latent frames decode to "
                        f"{pixel_frames(fmt, t)} frames here)",
                        (("frames", rec_frames), ("latent_frames", t), ("expected_latent_frames", expected_t)),
                    )
                )


def shape_findings(
    lat: Latent, x: torch.Tensor, facts: VaeIdentity, accepted: Mapping[int, str], space_source: str, frames: int
) -> tuple[list[Finding], str, str]:
    """Channels, packing, the recorded family against the VAE's, ratios, the family's size and frame rules.

    Args:
        lat: the latent with the layout the check uses; x: its tensor in canonical layout.
        facts: the VAE's identity; accepted: the channel counts it takes (:func:`accepted_channels`).
        space_source: where the latent's space came from so far; frames: its latent frames.

    Returns:
        (findings, the space, its source): a channel count can settle the space of a packed format.
    """
    out: list[Finding] = []
    add = out.append
    channels = int(x.shape[1])
    lat_fmt = lat.format
    vae_fmt = facts.format
    space_now = lat.space
    if channels not in accepted:
        expected = " or ".join(f"{c} ({s})" for c, s in accepted.items())
        add(
            Finding(
                "channel-mismatch",
                "error",
                f"the latent has {channels} channels; {facts.name} takes {expected}",
                f"use a VAE for a {channels}-channel latent space — registered formats with {channels} channels: "
                f"{formats_with_channels(channels, None)}",
                (("latent_channels", channels), ("vae_channels", sorted(accepted))),
            )
        )
    elif vae_fmt is not None and vae_fmt.patch > 1:
        packed_c = vae_fmt.model_channels
        if channels == packed_c and space_now == "raw":
            add(
                Finding(
                    "packed-as-raw",
                    "error",
                    f"{channels} channels is {vae_fmt.name}'s packed model space ({packed_c} ch / "
                    f"{vae_fmt.model_spatial_ratio}×), but the latent is recorded as raw ({vae_fmt.channels} ch / "
                    f"{vae_fmt.spatial_ratio}×)",
                    "record it as model space (--space model); latentbridge unpacks and un-normalises it before "
                    "decoding",
                    (("channels", channels), ("recorded_space", "raw")),
                )
            )
            space_now, space_source = "model", "shape"
        elif channels == vae_fmt.channels and space_now == "model":
            add(
                Finding(
                    "unpacked-model",
                    "error",
                    f"the latent is recorded as {vae_fmt.name} model space but has {channels} channels at "
                    f"{vae_fmt.spatial_ratio}×: model space is packed {vae_fmt.patch}×{vae_fmt.patch} to "
                    f"{packed_c} ch / {vae_fmt.model_spatial_ratio}× (the unpacked normalised layout is what the TAEF2 "
                    "network itself reads and writes)",
                    f"if it is raw VAE output, pass --space raw; if it is normalised but unpacked, pack it: "
                    f"latentbridge.formats.pack(x, {vae_fmt.patch})",
                    (("channels", channels), ("recorded_space", "model"), ("model_channels", packed_c)),
                )
            )
        elif space_now == "unknown":
            space_now = "model" if channels == packed_c else "raw"
            space_source = "shape"
            add(
                Finding(
                    "space-from-shape",
                    "info",
                    f"{channels} channels: {vae_fmt.name} {space_now} space "
                    f"({'packed, normalised' if space_now == 'model' else 'unpacked VAE output'})",
                    "",
                    (("channels", channels),),
                )
            )

    # recorded family, ratios, sizes
    if lat_fmt is not None and vae_fmt is not None and lat_fmt.name != vae_fmt.name:
        same_raw = raw_owner(lat_fmt.name) == raw_owner(vae_fmt.name)
        lat_c, lat_r = lat_fmt.space_shape("raw")
        if same_raw:
            add(
                Finding(
                    "shared-raw-space",
                    "info",
                    f"{lat_fmt.name} and {vae_fmt.name} share one VAE (same raw space); the latent is converted "
                    f"with {lat_fmt.name}'s own normalisation",
                    "",
                    (("latent_format", lat_fmt.name), ("vae_format", vae_fmt.name)),
                )
            )
        elif lat_c == vae_fmt.channels and lat_fmt.dims == vae_fmt.dims and lat_r != vae_fmt.spatial_ratio:
            in_time = temporal_clash(lat_fmt, vae_fmt, frames)
            add(
                Finding(
                    "ratio-mismatch",
                    "error",
                    f"the latent is recorded as {lat_fmt.name} ({lat_c} ch / {lat_r}×) but {facts.name} is "
                    f"{vae_fmt.name} ({vae_fmt.channels} ch / {vae_fmt.spatial_ratio}×): same channels, different "
                    f"spatial ratio — a {x.shape[-2]}×{x.shape[-1]} latent is "
                    f"{x.shape[-2] * lat_r}×{x.shape[-1] * lat_r} px in {lat_fmt.name} but would decode to "
                    f"{x.shape[-2] * vae_fmt.spatial_ratio}×{x.shape[-1] * vae_fmt.spatial_ratio} px"
                    + (f"; and in time: {in_time}" if in_time else ""),
                    f"decode with a {lat_fmt.name} VAE, or fix the recorded format if it is wrong (--format)",
                    (("latent_ratio", lat_r), ("vae_ratio", vae_fmt.spatial_ratio)),
                )
            )
        elif lat_c == vae_fmt.channels and lat_fmt.dims == vae_fmt.dims == 3 and temporal_clash(lat_fmt, vae_fmt, 1):
            add(
                Finding(
                    "temporal-mismatch",
                    "error",
                    f"the latent is recorded as {lat_fmt.name} but {facts.name} is {vae_fmt.name}: same channels and "
                    f"spatial ratio, different temporal compression — {temporal_clash(lat_fmt, vae_fmt, frames)}",
                    f"decode with a {lat_fmt.name} VAE ({lat_fmt.temporal_ratio}× in time, frames "
                    f"{lat_fmt.frame_rule}), or fix the recorded format if it is wrong (--format)",
                    (
                        ("latent_temporal_ratio", lat_fmt.temporal_ratio),
                        ("vae_temporal_ratio", vae_fmt.temporal_ratio),
                        ("latent_frame_rule", lat_fmt.frame_rule),
                        ("vae_frame_rule", vae_fmt.frame_rule),
                        ("latent_frames", frames),
                        ("pixel_frames", [pixel_frames(lat_fmt, frames), pixel_frames(vae_fmt, frames)]),
                    ),
                )
            )
        elif lat_c == vae_fmt.channels and lat_fmt.dims == vae_fmt.dims:
            add(
                Finding(
                    "family-mismatch",
                    "error",
                    f"the latent is recorded as {lat_fmt.name} but {facts.name} is {vae_fmt.name}: same shapes, "
                    "different latent spaces — the decode runs and gives a wrong-coloured, blotchy image",
                    f"decode with a {lat_fmt.name} VAE, or move the latent across with `latentbridge transfer` "
                    f"({lat_fmt.name} → {vae_fmt.name})",
                    (("latent_format", lat_fmt.name), ("vae_format", vae_fmt.name)),
                )
            )
    ref_fmt = lat_fmt or vae_fmt
    if ref_fmt is not None and channels in accepted:
        pixel_size_findings(lat, x, ref_fmt, facts, space_now, add)
    elif ref_fmt is None and channels in accepted:
        ratios = sorted(
            {
                f.space_shape(s)[1]
                for s in ("raw", "model")
                for f in find_formats(channels=channels, dims=facts.dims, space=s)
            }
        )
        if len(ratios) > 1:
            add(
                Finding(
                    "ratio-ambiguous",
                    "info",
                    f"neither the latent nor the VAE records a format; {channels} channels occur at "
                    f"{', '.join(f'{r}×' for r in ratios)}, and the shape alone cannot tell which: the VAE decodes "
                    f"at {facts.spatial_ratio}× ({x.shape[-2] * facts.spatial_ratio}×"
                    f"{x.shape[-1] * facts.spatial_ratio} px)",
                    "record the format (--format) so that a wrong ratio can be caught",
                    (("ratios", ratios),),
                )
            )
    return out, space_now, space_source
