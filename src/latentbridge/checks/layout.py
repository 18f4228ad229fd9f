"""Findings about the tensor itself: values that cannot be an image, a missing batch axis, a layout other than the
canonical one (channels-last, frames-first), image vs video."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from latentbridge.checks.findings import Finding
from latentbridge.formats import find_formats
from latentbridge.latent import LAYOUT_NAMES, Latent, alternative_layouts, to_layout
from latentbridge.profiles import (
    raw_owner,
)
from latentbridge.vae import VaeIdentity

PER_ITEM_CACHES: tuple[str, ...] = ("kohya-ss/sd-scripts latent cache", "musubi-tuner latent cache")
"""Writers (``Provenance.tool``) whose files hold one latent without a batch axis, by design."""


def value_findings(flags: tuple[str, ...], flag_evidence: tuple[tuple[str, float], ...]) -> list[Finding]:
    """Findings for values that cannot be decoded into an image (NaN/inf, zeros, a constant, noise)."""
    out: list[Finding] = []
    if "non-finite" in flags:
        ev = dict(flag_evidence)
        out.append(
            Finding(
                "non-finite",
                "error",
                f"the latent has {int(ev['non_finite_values'])} NaN/inf values out of {int(ev['values'])}; "
                "a decoder turns them into a black or garbage image",
                "re-encode in float32 (fp16 VAE encoders overflow: SDXL's VAE in fp16 is the classic case) or "
                "re-run the sampler; latentbridge cannot repair missing values",
                flag_evidence,
            )
        )
    elif "all-zero" in flags:
        out.append(
            Finding(
                "all-zero",
                "error",
                "the latent is all zeros: an empty latent sent to decode (a fresh EmptyLatentImage is all zeros); "
                "it decodes to a flat grey/brown image",
                "sample it first (connect the KSampler output, not the EmptyLatentImage), or check that the file "
                "is the one you meant",
                flag_evidence,
            )
        )
    elif "constant" in flags:
        out.append(
            Finding(
                "constant",
                "error",
                f"every value of the latent is {dict(flag_evidence)['value']:g}: not an encoded image",
                "check the file (a placeholder or a failed write) and encode or sample again",
                flag_evidence,
            )
        )
    elif "noise-like" in flags:
        out.append(
            Finding(
                "noise-like",
                "warn",
                "the latent looks like i.i.d. noise (neighbouring cells and channels are uncorrelated), "
                "not an encoded image: decoding it gives noise",
                "decode the sampler's output after denoising, not the initial noise or an intermediate step",
                flag_evidence,
            )
        )
    return out


def layout_findings(
    lat: Latent, facts: VaeIdentity, declared: bool, accepted: Mapping[int, str]
) -> tuple[Latent, torch.Tensor, list[Finding]]:
    """Layout (missing batch, channels-last, frames-first) and rank (image vs video) against the VAE.

    Returns:
        (the latent with the layout the check will use, its tensor in canonical NCHW / NCTHW order — with a
        time axis of one added for a video VAE —, findings).
    """
    out: list[Finding] = []
    shape = tuple(lat.tensor.shape)
    own_channels = {lat.format.channels, lat.format.model_channels} if lat.format is not None else set()
    if "C" not in lat.layout or (lat.dim("C") not in accepted and lat.dim("C") not in own_channels):
        alternatives = alternative_layouts(shape, set(accepted), facts.dims)
        if alternatives and (not declared or lat.layout in ("NCHW", "NCTHW", "CHW")):
            alt = alternatives[0]
            code, described, permute = LAYOUT_NAMES[alt]
            out.append(
                Finding(
                    code,
                    "error",
                    f"shape {list(shape)} read as {lat.layout} has {lat.dim('C')} channels, which {facts.name} "
                    f"does not take, but read as {described} it has {shape[alt.index('C')]} channels, which it "
                    "does",
                    f"declare the layout (Latent(..., layout={alt!r})) or permute it: {permute}",
                    (("shape", list(shape)), ("declared_layout", lat.layout), ("detected_layout", alt)),
                )
            )
            lat = Latent(lat.tensor, lat.format, lat.space, alt, lat.provenance, lat.stats)
    if len(lat.layout) == 3 or "N" not in lat.layout:
        cache = lat.provenance.tool in PER_ITEM_CACHES  # one latent per file, no batch axis, by design
        want = "[N, C, H, W]" if facts.dims == 2 else "[N, C, T, H, W]"
        out.append(
            Finding(
                "missing-batch",
                "info" if cache else "warn",
                f"the tensor {list(shape)} has no batch dimension ({lat.layout}): "
                + (f"{lat.provenance.tool} files hold one item each, by design; " if cache else "")
                + f"decoders take {want}",
                ""
                if cache
                else "add it with x[None] (or x.unsqueeze(0)); latentbridge adds it itself when the layout is declared",
                (("shape", list(shape)), ("layout", lat.layout)),
            )
        )
    canonical = "NCTHW" if "T" in lat.layout else "NCHW"
    x = to_layout(lat.tensor, lat.layout, canonical)
    is_video = "T" in lat.layout
    frames = lat.dim("T")
    # a recorded format in another latent space than the VAE's: no reshaping makes the pair right
    fmt = lat.format
    other_space = fmt is not None and (facts.format is None or raw_owner(fmt.name) != raw_owner(facts.format.name))
    recorded = (("latent_format", fmt.name),) if fmt is not None else ()
    image_frames = (
        facts.dims == 2
        and is_video
        and x.shape[1] in accepted
        and (fmt.dims == 2 if fmt is not None else not find_formats(channels=x.shape[1], dims=3))
    )
    if image_frames:
        # AnimateDiff and SVD stack an image VAE's latents in time: the frames decode one by one
        out.append(
            Finding(
                "image-frames",
                "info",
                f"a video-shaped latent ({count_noun(frames, 'frame')}, {canonical}) for an image VAE ({facts.name}): "
                + (
                    f"recorded as {fmt.name}, an image format"
                    if fmt is not None
                    else f"no video format has {x.shape[1]} channels"
                )
                + ", so these are frames of image latents (as AnimateDiff and SVD make); they decode one by one",
                "",
                (("frames", frames), ("vae_dims", 2), *recorded),
            )
        )
    elif facts.dims == 2 and is_video:
        video_formats = ", ".join(f.name for f in find_formats(channels=x.shape[1], dims=3)) or "none"
        if fmt is not None and fmt.dims == 3 and other_space:
            sev = "error"
            fix = (
                f"decode it with a {fmt.name} VAE (a video VAE: {fmt.temporal_ratio}× in time, frames "
                f"{fmt.frame_rule}); dropping the time axis does not make a {fmt.name} latent one of "
                f"{vae_family(facts)}"
            )
        else:
            sev = "warn" if frames == 1 else "error"
            fix = (
                "decode it with the video VAE of its family"
                + (", or, if the image VAE's family made it, drop the time axis: x[:, :, 0]" if frames == 1 else "")
                + f" (video formats with {x.shape[1]} channels: {video_formats})"
            )
        out.append(
            Finding(
                "video-to-image-vae",
                sev,
                f"a video latent ({count_noun(frames, 'latent frame')}, {canonical}"
                + (f", recorded as {fmt.name}" if fmt is not None else "")
                + f") given to an image VAE ({facts.name})",
                fix,
                (("frames", frames), ("vae_dims", 2), *recorded),
            )
        )
    elif facts.dims == 3 and not is_video:
        if fmt is not None and fmt.dims == 2 and other_space:
            fix = (
                f"decode it with a {fmt.name} VAE (an image VAE); a time axis does not make a {fmt.name} latent one "
                f"of {vae_family(facts)}"
            )
        else:
            fix = "decode it with an image VAE of its family, or add a time axis of one latent frame: x[:, :, None]"
        out.append(
            Finding(
                "image-to-video-vae",
                "error",
                f"an image latent ({canonical} {list(x.shape)}"
                + (f", recorded as {fmt.name}" if fmt is not None else "")
                + f") given to a video VAE ({facts.name}), which takes [N, C, T, H, W]",
                fix,
                (("shape", list(x.shape)), ("vae_dims", 3))
                + ((("latent_format", fmt.name),) if fmt is not None else ()),
            )
        )
        x = x[:, :, None]
    return lat, x, out


def count_noun(n: int, noun: str) -> str:
    """'1 latent frame', '5 latent frames'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def vae_family(facts: VaeIdentity) -> str:
    """'flux1 (flux1-vae.safetensors)' or the VAE's name when its format is unknown."""
    return f"{facts.format.name} ({facts.name})" if facts.format is not None else facts.name
