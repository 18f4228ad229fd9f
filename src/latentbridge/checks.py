"""Catch a wrong latent/VAE pairing before it costs a decode: shapes, layouts, spaces, families, values.

:func:`check` compares what is known about a latent (its tensor, recorded format/space/layout, provenance) with
what is known about a VAE (a loaded :class:`~latentbridge.vae.VAE`, or the header facts of a weight file) and
returns a :class:`Report`: a verdict ("ok", "warn", "error") and findings, each with a code, a severity, a
message naming what was found and what was expected, the numbers behind it and a concrete fix.

What it looks at, in order: values (NaN/inf, all zeros, constant, noise), layout (missing batch dimension,
channels-last, frames-first), image vs video, channel count (naming the registered formats that fit), packed
vs unpacked (FLUX.2), spatial/temporal ratio and recorded family, the family's size and frame rules, the space
(raw, model, scaled twice, unscaled twice — from the statistics against the reference profile), and the
statistical fingerprint (:func:`latentbridge.fingerprint.identify`) against the VAE's family. ``preflight=True``
adds cheap decodes of a small crop with every candidate family, scored for how natural they look, and — for a
VAE with both halves — a decode→encode cycle test: a latent of the VAE's own space is (nearly) a fixed point of
encode∘decode, a latent of another space is not (:func:`cycle_ratio`).

Exit codes of ``latentbridge check``: 0 ok, 1 warn, 2 error — and 2 as well when the check could not run
(unreadable file, bad option), with an ``error:`` line on stderr instead of a report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentbridge import codec
from latentbridge.errors import InputTypeError
from latentbridge.fingerprint import Identification, identify, value_flags
from latentbridge.formats import LatentFormat, NormStats, find_formats, formats, get_format, latent_frames
from latentbridge.latent import LAYOUT_NAMES, Latent, alternative_layouts, to_layout
from latentbridge.profiles import (
    Calibration,
    Profile,
    affine,
    calibration,
    feature_fit,
    is_identity,
    latent_features,
    profile_from_norm_stats,
    profile_set,
    raw_owner,
    transform_profile,
    user_profile_dir,
)
from latentbridge.run import COMPUTE_DTYPES, Run
from latentbridge.vae import VAE, VaeIdentity, as_vae
from latentbridge.zoo import is_zoo_name

__all__ = [
    "CYCLE_PHOTOS",
    "EXIT_CODES",
    "FAMILY_DOUBT",
    "FAMILY_ERROR",
    "FRAME_KEYS",
    "PER_ITEM_CACHES",
    "PREFLIGHT_MARGIN",
    "PREFLIGHT_NATURAL",
    "SCALE_ONLY_LOGSTD_SPREAD",
    "SCORE_NAMES",
    "SEVERITIES",
    "SIZE_KEYS",
    "SPACE_DECISION",
    "STEP_NAMES",
    "VERDICTS",
    "WIDTH_KEYS",
    "Z_CAP",
    "Finding",
    "LatentFacts",
    "PreflightScore",
    "Report",
    "SpaceTest",
    "check",
    "cycle_ratio",
    "cycle_reference",
    "image_scores",
    "preflight_candidates",
    "rgb_preview_of",
    "run_preflight",
    "space_test",
    "test_run",
    "vae_identity",
]

SEVERITIES: tuple[str, ...] = ("info", "warn", "error")
PER_ITEM_CACHES: tuple[str, ...] = ("kohya-ss/sd-scripts latent cache", "musubi-tuner latent cache")
"""Writers (``Provenance.tool``) whose files hold one latent without a batch axis, by design."""
VERDICTS: tuple[str, ...] = ("ok", "warn", "error")
EXIT_CODES: Mapping[str, int] = {"ok": 0, "warn": 1, "error": 2}

SPACE_DECISION = 0.95  # probability a space hypothesis needs before the check relies on it
# The fingerprint's calibrated probability that the latent belongs to the VAE's family decides: below 5 % the
# pairing is wrong with 95 % confidence (an error); below 20 % it is probably wrong (a warning).
FAMILY_ERROR = 0.05
FAMILY_DOUBT = 0.2
# When a format has no measured profile, its scale factor is the only clue to the raw spread: most were
# chosen as 1/std of raw latents (SD1's 0.18215, SDXL, SD3, FLUX.1, Sana …). Real images scatter around it
# (SD1 raw std 2.5–7 over the bundled photos, i.e. ±0.45 in log), so the log-std of one latent is scored with
# this spread.
SCALE_ONLY_LOGSTD_SPREAD = 0.45
# Provenance keys that may hold the source image size / frame count (ComfyUI workflows, our own records).
SIZE_KEYS: tuple[str, ...] = ("height", "image_height", "pixel_height")
WIDTH_KEYS: tuple[str, ...] = ("width", "image_width", "pixel_width")
FRAME_KEYS: tuple[str, ...] = ("frames", "num_frames", "length", "video_length")


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the check noticed.

    Attributes:
        code: stable identifier ("channel-mismatch", "scaled-twice", …).
        severity: "info", "warn" or "error".
        message: what was found and what was expected.
        fix: a concrete next step ("" for purely informative findings).
        evidence: the numbers behind it, as (name, value) pairs.
    """

    code: str
    severity: str
    message: str
    fix: str = ""
    evidence: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"finding {self.code!r}: severity must be one of {SEVERITIES}, got {self.severity!r}")

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "fix": self.fix,
            "evidence": dict(self.evidence),
        }


def vae_identity(vae: Any) -> VaeIdentity:
    """The :class:`~latentbridge.vae.VaeIdentity` the check compares with: of a loaded VAE (or diffusers
    autoencoder module), a VaeIdentity itself, or a weight file's header description (``WeightsInfo``)."""
    if isinstance(vae, VaeIdentity):
        return vae.identity
    if isinstance(vae, torch.nn.Module):
        return as_vae(vae).identity
    from latentbridge.weights import WeightsInfo  # local: the weights package is only needed for files

    if isinstance(vae, WeightsInfo):
        return vae.identity()
    raise InputTypeError(
        "check needs a VAE, a VaeIdentity, a WeightsInfo or a diffusers autoencoder module for the VAE, got "
        f"{type(vae).__name__}: load one with latentbridge.load_vae(path) or wrap pipe.vae with latentbridge.as_vae"
    )


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


# --- helpers -----------------------------------------------------------------------------------------------


def _fmt_list(fmts: list[LatentFormat], space: str) -> str:
    if not fmts:
        return "none"
    return ", ".join(f"{f.name} ({space} {f.space_shape(space)[0]} ch / {f.space_shape(space)[1]}×)" for f in fmts)


def _formats_with_channels(channels: int, dims: int | None) -> str:
    """Human list of the registry formats whose raw space, or packed model space, has ``channels`` channels."""
    raw = find_formats(channels=channels, dims=dims, space="raw")
    packed = [f for f in find_formats(channels=channels, dims=dims, space="model") if f.patch > 1]
    parts = [_fmt_list(raw, "raw")] if raw else []
    if packed:
        parts.append(_fmt_list(packed, "model"))
    return "; ".join(parts) if parts else "none in the registry"


def _accepted_channels(vae: VaeIdentity) -> dict[int, str]:
    """Channel counts the VAE can take (after the codec's space conversion) -> which space that is."""
    fmt = vae.format
    if fmt is None:
        return {vae.channels: vae.native_space}
    out = {fmt.channels: "raw", fmt.model_channels: "model"}
    if fmt.channels == fmt.model_channels:
        out[fmt.channels] = "raw or model"
    return out


def _provenance_int(latent: Latent, keys: tuple[str, ...]) -> int | None:
    extra = dict(latent.provenance.extra)
    for key in keys:
        if key in extra:
            try:
                value = int(float(extra[key]))
            except ValueError:
                continue
            if value > 0:
                return value
    return None


def _canonical_for(ndim: int, vae_dims: int) -> str:
    """The layout a tensor of ``ndim`` dims is assumed to be in when nothing is declared."""
    return {3: "CHW", 4: "NCHW", 5: "NCTHW"}.get(ndim, "")


# --- space statistics --------------------------------------------------------------------------------------


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


def _raw_profile(
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


# --- the check ---------------------------------------------------------------------------------------------


def _worst(findings: list[Finding]) -> str:
    if any(f.severity == "error" for f in findings):
        return "error"
    if any(f.severity == "warn" for f in findings):
        return "warn"
    return "ok"


def _as_latent(latent: Latent | torch.Tensor, vae: VaeIdentity) -> tuple[Latent, bool]:
    """(Latent, layout declared?) — a bare tensor gets the canonical layout for its rank."""
    if isinstance(latent, Latent):
        return latent, True
    if not isinstance(latent, torch.Tensor):
        raise TypeError(f"check needs a Latent or a torch.Tensor, got {type(latent).__name__}")
    layout = _canonical_for(latent.ndim, vae.dims)
    if not layout:
        raise ValueError(
            f"a latent is 3-D (C, H, W), 4-D (N, C, H, W) or 5-D (N, C, T, H, W); got shape {tuple(latent.shape)}. "
            "Reshape it, or wrap it in a Latent with its layout."
        )
    return Latent(latent, layout=layout), False


def _value_findings(flags: tuple[str, ...], flag_evidence: tuple[tuple[str, float], ...]) -> list[Finding]:
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


def _layout_findings(
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
                f"a video-shaped latent ({_count(frames, 'frame')}, {canonical}) for an image VAE ({facts.name}): "
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
                f"{_vae_family(facts)}"
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
                f"a video latent ({_count(frames, 'latent frame')}, {canonical}"
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
                f"of {_vae_family(facts)}"
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


def _count(n: int, noun: str) -> str:
    """'1 latent frame', '5 latent frames'."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _vae_family(facts: VaeIdentity) -> str:
    """'flux1 (flux1-vae.safetensors)' or the VAE's name when its format is unknown."""
    return f"{facts.format.name} ({facts.name})" if facts.format is not None else facts.name


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
    lat, declared = _as_latent(latent, facts)
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
    accepted = _accepted_channels(facts)
    shape = tuple(lat.tensor.shape)
    lat, x, layout_findings = _layout_findings(lat, facts, declared, accepted)
    findings.extend(layout_findings)
    frames = lat.dim("T")
    flags, flag_evidence = value_flags(x)  # on the canonical layout: the lags run along H and W
    findings.extend(_value_findings(flags, flag_evidence))

    # channels, packing, space from shape
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
                f"{_formats_with_channels(channels, None)}",
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
            in_time = _temporal_clash(lat_fmt, vae_fmt, frames)
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
        elif lat_c == vae_fmt.channels and lat_fmt.dims == vae_fmt.dims == 3 and _temporal_clash(lat_fmt, vae_fmt, 1):
            add(
                Finding(
                    "temporal-mismatch",
                    "error",
                    f"the latent is recorded as {lat_fmt.name} but {facts.name} is {vae_fmt.name}: same channels and "
                    f"spatial ratio, different temporal compression — {_temporal_clash(lat_fmt, vae_fmt, frames)}",
                    f"decode with a {lat_fmt.name} VAE ({lat_fmt.temporal_ratio}× in time, frames "
                    f"{lat_fmt.frame_rule}), or fix the recorded format if it is wrong (--format)",
                    (
                        ("latent_temporal_ratio", lat_fmt.temporal_ratio),
                        ("vae_temporal_ratio", vae_fmt.temporal_ratio),
                        ("latent_frame_rule", lat_fmt.frame_rule),
                        ("vae_frame_rule", vae_fmt.frame_rule),
                        ("latent_frames", frames),
                        ("pixel_frames", [_pixel_frames(lat_fmt, frames), _pixel_frames(vae_fmt, frames)]),
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
        _pixel_size_findings(lat, x, ref_fmt, facts, space_now, add)
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

    # space from statistics, family from the fingerprint
    ident: Identification | None = None
    fingerprintable = not (set(flags) & {"non-finite", "all-zero", "constant", "noise-like"})
    if fingerprintable and channels in accepted:
        space_fmt = lat_fmt or vae_fmt
        if space_fmt is not None and x.shape[1] == space_fmt.channels:
            test = space_test(x, space_fmt, _raw_profile(space_fmt, profiles, facts.stats, calib), calib)
            if test is not None:
                space_now, space_source = _space_findings(test, space_fmt, space_now, space_source, add)
        ident = fingerprint if fingerprint is not None else identify(x, profiles=profiles, calib=calib)
        # a space the user recorded (and the statistics did not contradict) rules out the other space's hypotheses
        known_space = space_now if space_source in ("recorded", "given", "shape") else None
        _family_findings(ident, lat_fmt, vae_fmt, facts, profiles, add, known_space)
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
    report = Report(_worst(findings), tuple(findings), facts_out, facts, ident)
    if preflight and fingerprintable and channels in accepted:
        scores, extra = run_preflight(
            x, vae, report, cells=preflight_cells, cycle_reference=cycle_reference, calib=calib, run=run
        )
        all_findings = tuple(sorted((*report.findings, *extra), key=lambda f: -SEVERITIES.index(f.severity)))
        report = dataclasses.replace(
            report, findings=all_findings, verdict=_worst(list(all_findings)), preflight=tuple(scores)
        )
    return report


def _pixel_frames(fmt: LatentFormat, latent_t: int) -> int:
    if fmt.dims == 2:
        return 1
    return (latent_t - 1) * fmt.temporal_ratio + 1 if fmt.causal_first_frame else latent_t * fmt.temporal_ratio


def _temporal_clash(lat_fmt: LatentFormat, vae_fmt: LatentFormat, frames: int) -> str:
    """How two video formats' temporal compression differs for a latent of ``frames`` latent frames ("" if not).

    Two video VAEs differ in time when their temporal ratio or their frame rule (a causal first frame kept alone:
    4n+1, or not: 4n) differ. Even where one latent frame decodes to one frame in both, the VAEs are different
    networks with different latent spaces.
    """
    if lat_fmt.dims != 3 or vae_fmt.dims != 3:
        return ""
    if (lat_fmt.temporal_ratio, lat_fmt.causal_first_frame) == (vae_fmt.temporal_ratio, vae_fmt.causal_first_frame):
        return ""
    ours, theirs = _pixel_frames(lat_fmt, frames), _pixel_frames(vae_fmt, frames)
    rules = (
        f"{lat_fmt.name} is {lat_fmt.temporal_ratio}× in time (frames {lat_fmt.frame_rule}), {vae_fmt.name} "
        f"{vae_fmt.temporal_ratio}× ({vae_fmt.frame_rule})"
    )
    if ours == theirs:
        return (
            f"{rules}; {_count(frames, 'latent frame')} decode{'s' if frames == 1 else ''} to "
            f"{_count(ours, 'frame')} in both, but through another VAE's latent space"
        )
    return (
        f"{rules}: {_count(frames, 'latent frame')} {'is' if frames == 1 else 'are'} {_count(ours, 'frame')} in "
        f"{lat_fmt.name} but would decode to {_count(theirs, 'frame')} with {vae_fmt.name}"
    )


def _pixel_size_findings(
    lat: Latent, x: torch.Tensor, fmt: LatentFormat, facts: VaeIdentity, space: str, add: Any
) -> None:
    """Recorded pixel size vs ratio, the family's size multiple, and its frame rule."""
    ratio = fmt.model_spatial_ratio if space == "model" and x.shape[1] == fmt.model_channels else fmt.spatial_ratio
    h, w = int(x.shape[-2]), int(x.shape[-1])
    ph, pw = h * ratio, w * ratio
    rec_h, rec_w = _provenance_int(lat, SIZE_KEYS), _provenance_int(lat, WIDTH_KEYS)
    if rec_h is not None and rec_w is not None and (abs(rec_h - ph) >= ratio or abs(rec_w - pw) >= ratio):
        fits = [
            f.name
            for f in find_formats(channels=int(x.shape[1]), dims=fmt.dims, space=space if space != "unknown" else "raw")
            if abs(h * f.space_shape(space if space != "unknown" else "raw")[1] - rec_h) < ratio
        ]
        add(
            Finding(
                "ratio-mismatch",
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
        rec_frames = _provenance_int(lat, FRAME_KEYS)
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
                        f"re-encode a clip of {fmt.frame_rule} frames (e.g. {_pixel_frames(fmt, t)})",
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
                        f"{_pixel_frames(fmt, t)} frames here)",
                        (("frames", rec_frames), ("latent_frames", t), ("expected_latent_frames", expected_t)),
                    )
                )


def _space_findings(test: SpaceTest, fmt: LatentFormat, space: str, source: str, add: Any) -> tuple[str, str]:
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


def _family_findings(
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
        if sharp and ident.confident and raw_owner(best.format) != raw_owner(vae_fmt.name):
            fmt_best = formats().get(best.format)
            ratio = ""
            if fmt_best is not None and fmt_best.spatial_ratio != vae_fmt.spatial_ratio:
                ratio = f" ({best.format} is {fmt_best.spatial_ratio}×, {vae_fmt.name} {vae_fmt.spatial_ratio}×)"
            elif fmt_best is not None and _temporal_clash(fmt_best, vae_fmt, 1):
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
                "family-mismatch",
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


# --- preflight ---------------------------------------------------------------------------------------------

SCORE_NAMES: tuple[str, ...] = ("saturation", "cast", "range", "clipped", "slope")


def image_scores(images: torch.Tensor) -> list[dict[str, float]]:
    """How natural small images look: the numbers preflight compares with real photos.

    Args:
        images: [N, 3, h, w] RGB in [0, 1] (values outside are clamped), h, w ≥ 8 for the spectrum.

    Returns:
        Per image: ``saturation`` (mean HSV saturation), ``cast`` (length of the mean chroma vector: a colour
        cast), ``range`` (1st–99th percentile spread of luminance), ``clipped`` (fraction of channel values at
        0 or 1) and ``slope`` (radially averaged power-spectrum slope of luminance; photos ≈ -2 to -3,
        noise ≈ 0).
    """
    from latentbridge.profiles import spectral_slope

    x = images.detach().double().clamp(0, 1)
    mx, mn = x.amax(1), x.amin(1)
    saturation = ((mx - mn) / mx.clamp_min(1e-6)).flatten(1).mean(1)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    rg = (r - g).flatten(1).mean(1)
    yb = ((r + g) / 2 - b).flatten(1).mean(1)
    cast = (rg.square() + yb.square()).sqrt()
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    q = torch.quantile(luma.flatten(1), torch.tensor([0.01, 0.99], dtype=torch.float64), dim=1)
    value_range = q[1] - q[0]
    clipped = ((x <= 0.002) | (x >= 0.998)).double().flatten(1).mean(1)
    slope = spectral_slope(luma[:, None])[:, 0] if min(x.shape[-2:]) >= 8 else torch.full_like(cast, float("nan"))
    return [
        {
            "saturation": float(saturation[i]),
            "cast": float(cast[i]),
            "range": float(value_range[i]),
            "clipped": float(clipped[i]),
            "slope": float(slope[i]),
        }
        for i in range(x.shape[0])
    ]


# Preflight decides from the sum of squared z-scores of the five image scores against the training photos:
# for natural images that sum follows roughly a chi-square with 5 degrees of freedom, whose 99.9th percentile
# is 20.5. A decode above it does not look like a photo.
PREFLIGHT_NATURAL = 20.5
# Another candidate's decode must be this many times closer to natural before preflight says the VAE's own
# family looks wrong (a factor, not a difference: penalties of wrong families grow with their error).
PREFLIGHT_MARGIN = 3.0
# A score 10 robust standard deviations outside every reference image is "far out"; beyond that the number
# only measures how small the reference's spread happens to be (photos are almost never clipped).
Z_CAP = 10.0


@dataclass(frozen=True, slots=True)
class PreflightScore:
    """How natural one cheap decode of the latent's centre crop looks.

    Attributes:
        label: what decoded it ("zoo-a rgb preview", "VAE decode").
        format: the candidate family.
        decoder: "rgb" (the family's latent→RGB factors) or "vae" (the VAE's own decoder).
        space: the space the latent was read in for this decode.
        scores: :func:`image_scores` of the decode at latent resolution.
        z: each score's z against the training photos at the same resolution.
        penalty: sum of squared z; ≤ ``PREFLIGHT_NATURAL`` looks natural.
        reference: what the scores are compared with: rgb previews of the family's own latents of real photos
            (measured families), or the photos themselves at latent resolution.
    """

    label: str
    format: str
    decoder: str
    space: str
    scores: tuple[tuple[str, float], ...]
    z: tuple[tuple[str, float], ...]
    penalty: float
    reference: str = "photos"

    @property
    def natural(self) -> bool:
        """The decode looks like a photo."""
        return self.penalty <= PREFLIGHT_NATURAL

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return {
            "label": self.label,
            "format": self.format,
            "decoder": self.decoder,
            "space": self.space,
            "scores": {k: round(v, 4) for k, v in self.scores},
            "z": {k: round(v, 3) for k, v in self.z},
            "penalty": round(self.penalty, 3),
            "natural": self.natural,
            "reference": self.reference,
        }


def _score_z(value: float, samples: list[float]) -> float:
    """Rank-based z of ``value`` against reference samples (skew-proof), extended linearly beyond their range.

    Inside the samples' range: Φ⁻¹ of the mid-rank percentile. Beyond it: the edge z plus the distance in
    robust standard deviations (IQR / 1.349), so that a decode far outside every photo scores far out; capped
    at ±``Z_CAP``.
    """
    ref = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(ref)
    below = float(np.sum(ref < value))
    equal = float(np.sum(ref == value))
    p = (below + 0.5 * equal + 0.5) / (n + 1)
    z = float(np.sqrt(2) * _erfinv(2 * p - 1))
    q25, q75 = np.quantile(ref, [0.25, 0.75])
    scale = max(float(q75 - q25) / 1.349, 1e-3)
    if value < ref[0]:
        z -= (ref[0] - value) / scale
    elif value > ref[-1]:
        z += (value - ref[-1]) / scale
    return max(-Z_CAP, min(Z_CAP, z))


def _erfinv(y: float) -> float:
    return float(torch.erfinv(torch.tensor(y, dtype=torch.float64)))


def _score(images: torch.Tensor, reference: Mapping) -> tuple[tuple[tuple[str, float], ...], tuple, float]:
    """Scores of the first image, their z against ``reference`` samples, and the penalty (sum of z²)."""
    scores = image_scores(images[:1])[0]
    z = {k: _score_z(v, reference["samples"][k]) for k, v in scores.items() if math.isfinite(v)}
    return tuple(scores.items()), tuple(z.items()), float(sum(v * v for v in z.values()))


def rgb_preview_of(model: torch.Tensor, fmt: LatentFormat) -> torch.Tensor:
    """Latent→RGB factors of ``fmt`` applied to a model-space latent: [N, 3, h, w] in [0, 1].

    Args:
        model: [N, C, h, w] model-space latent of ``fmt`` (packed latents are unpacked first).
        fmt: a format with rgb factors.
    """
    from latentbridge.formats import unpack

    if model.shape[1] == fmt.model_channels and fmt.patch > 1:
        model = unpack(model, fmt.patch)
    factors = torch.tensor(fmt.rgb_factors, dtype=torch.float64)
    bias = torch.tensor(fmt.rgb_bias, dtype=torch.float64)
    rgb = torch.einsum("nchw,ck->nkhw", model.double(), factors) + bias[None, :, None, None]
    return ((rgb + 1) / 2).clamp(0, 1)


def _centre_crop(x: torch.Tensor, cells: int) -> torch.Tensor:
    """The first batch item's (and frame's) centre crop of at most cells×cells: [1, C, h, w]."""
    img = x[:1, :, 0] if x.ndim == 5 else x[:1]
    h, w = img.shape[-2:]
    ch, cw = min(h, cells), min(w, cells)
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[..., top : top + ch, left : left + cw].float()


def preflight_candidates(channels: int, dims: int, vae_format: LatentFormat | None) -> list[LatentFormat]:
    """Families whose rgb preview can decode a latent of ``channels`` raw channels: the VAE's own first."""
    out = [vae_format] if vae_format is not None and vae_format.rgb_factors else []
    for fmt in find_formats(channels=channels, dims=dims, space="raw"):
        if fmt.rgb_factors and fmt not in out:
            out.append(fmt)
    return out


def run_preflight(
    x: torch.Tensor,
    vae: Any,
    report: Report,
    *,
    cells: int = 32,
    cycle_reference: float | None = None,
    calib: Calibration | None = None,
    run: Run | None = None,
) -> tuple[list[PreflightScore], list[Finding]]:
    """Decode a small centre crop cheaply with every candidate family and score how natural each looks.

    Args:
        x: the canonical latent [N, C, (T,) H, W] (only the first item and frame are used).
        vae: the loaded VAE (its decoder runs on the crop; with an encoder too, the cycle test runs) or header
            facts (rgb previews only).
        report: the check's report so far (its concluded format and space).
        cells: crop side in latent cells (32 cells = 256 px at 8×).
        cycle_reference: :func:`cycle_reference` of ``vae`` at ``cells`` (computed when needed and not given).
        calib: calibration holding the cycle threshold (default: the shipped one).

    Returns:
        (scores, findings): one score per candidate decode, and preflight findings.
    """
    from latentbridge.formats import raw_to_model, unpack
    from latentbridge.profiles import natural_image_reference

    reference = natural_image_reference()
    if not reference:
        return [], [
            Finding(
                "preflight-unavailable",
                "info",
                "preflight needs the natural-image reference in profiles.json, which this installation lacks",
                "rebuild it: scripts/build_profiles.py",
            )
        ]
    facts = report.vae
    crop = _centre_crop(x, cells)
    space = report.latent.space
    spaces = [space] if space in ("raw", "model") else ["raw", "model"]
    vae_fmt = facts.format
    lat_fmt = get_format(report.latent.format) if report.latent.format else None
    raw_channels = crop.shape[1]
    if vae_fmt is not None and vae_fmt.patch > 1 and raw_channels == vae_fmt.model_channels:
        raw_channels = vae_fmt.channels
    scores: list[PreflightScore] = []
    for fmt in preflight_candidates(raw_channels, facts.dims, vae_fmt):
        for sp in spaces:
            try:
                if sp == "raw":
                    stats = facts.stats if fmt is vae_fmt else None
                    model = raw_to_model(crop, fmt, stats)
                else:
                    model = crop
                model = unpack(model, fmt.patch) if model.shape[1] == fmt.model_channels else model
            except ValueError:
                continue  # this family cannot read the crop in this space (statistics in a file we lack)
            if model.shape[1] != fmt.channels or model.shape[-1] < 8 or model.shape[-2] < 8:
                continue
            own = reference.get("previews", {}).get(fmt.name)
            values, z, penalty = _score(rgb_preview_of(model, fmt), own or reference)
            ref_name = f"{fmt.name} previews of real latents" if own else "photos"
            label = f"{fmt.name} rgb preview ({sp})"
            scores.append(PreflightScore(label, fmt.name, "rgb", sp, values, z, penalty, ref_name))
    if isinstance(vae, VAE) and vae.decode is not None and facts.dims == 2:
        fmt = lat_fmt or vae_fmt
        for sp in spaces:
            try:
                lat = Latent(crop, fmt, sp)
                native = crop if fmt is None else lat.to_space(vae.native_space, facts.stats).tensor
                image = codec.decode_native(vae, native, test_run(vae, run))
            except ValueError:  # no conversion for this space, or a decode that is not finite even in fp32
                continue
            image = ((image.float() + 1) / 2).clamp(0, 1)
            pooled = torch.nn.functional.adaptive_avg_pool2d(image, tuple(crop.shape[-2:]))
            values, z, penalty = _score(pooled, reference)
            name = fmt.name if fmt is not None else "?"
            scores.append(PreflightScore(f"VAE decode ({sp} as {name})", name, "vae", sp, values, z, penalty))
    findings: list[Finding] = []
    if isinstance(vae, VAE) and vae.decode is not None and vae.encode is not None and facts.dims == 2:
        findings.extend(
            _cycle_findings(crop, vae, lat_fmt or vae_fmt, spaces, cells, cycle_reference, calib or calibration(), run)
        )
    if not scores:
        return scores, findings
    table = tuple((s.label, round(s.penalty, 2)) for s in scores)
    own = [s for s in scores if vae_fmt is not None and s.format == vae_fmt.name and s.decoder == "rgb"]
    others = [s for s in scores if vae_fmt is not None and s.format != vae_fmt.name and s.decoder == "rgb"]
    if own and others:
        mine = min(own, key=lambda s: s.penalty)
        best = min(others, key=lambda s: s.penalty)
        if not mine.natural and best.natural and best.penalty * PREFLIGHT_MARGIN < mine.penalty:
            add_msg = (
                f"read as {vae_fmt.name} the crop does not look like a photo (penalty {mine.penalty:.1f} > "
                f"{PREFLIGHT_NATURAL}), read as {best.format} it does ({best.penalty:.1f})"
            )
            findings.append(
                Finding(
                    "preflight-mismatch",
                    "warn",
                    add_msg,
                    f"check the latent's family: it may be {best.format}, not {vae_fmt.name}",
                    (("penalties", dict(table)),),
                )
            )
    for s in scores:
        if s.decoder == "vae" and not s.natural and (space != "unknown" or s.space == spaces[0]):
            worst = max(s.z, key=lambda kv: abs(kv[1]))
            findings.append(
                Finding(
                    "preflight-unnatural",
                    "warn",
                    f"the VAE's decode of the centre crop ({s.space} space) does not look like a photo: penalty "
                    f"{s.penalty:.1f} > {PREFLIGHT_NATURAL} (worst: {worst[0]} z = {worst[1]:+.1f})",
                    "look at the decode before using it (latentbridge preview); check the family and the space",
                    (("scores", dict(s.scores)), ("z", dict(s.z))),
                )
            )
            break
    return scores, findings


# --- preflight: the decode→encode cycle --------------------------------------------------------------------

# Bundled training photos (never the benchmark's held-out ones) whose own latents give each VAE's cycle baseline.
CYCLE_PHOTOS: tuple[str, ...] = ("coffee", "rocket")


def test_run(vae: VAE, run: Run | None = None) -> Run:
    """The run of the check's test decodes: the caller's, else the VAE's own device and dtype (no cast copy)."""
    if run is not None:
        return run
    return Run(device=vae.device, dtype=vae.dtype if vae.dtype in COMPUTE_DTYPES.values() else "fp32")


def _cycle(z: torch.Tensor, vae: VAE, run: Run | None = None) -> torch.Tensor:
    """encode(decode(z)) in the VAE's native space through the codec, the image clamped to [-1, 1] in between."""
    image = codec.decode_native(vae, z, test_run(vae, run)).clamp(-1, 1)
    return codec.encode_native(vae, image, test_run(vae, run))


def cycle_ratio(z: torch.Tensor, vae: VAE, run: Run | None = None) -> tuple[float, float, float]:
    """How far one decode→encode cycle moves a latent, relative to how far a second cycle moves the result.

    A latent of the VAE's own space is close to a fixed point of encode∘decode: the first cycle moves it about
    as little as the second (ratio ≈ 1.1–1.7 for the zoo's and TAEF2's own latents). A latent of another space
    decodes to some image whose encoding is a different latent, which then stays put: the first cycle moves it
    several times as far as the second. Dividing by the second cycle cancels how hard the content itself is to
    reconstruct.

    Args:
        z: [1, C, h, w] latent in the VAE's native space (any space the VAE decodes).
        vae: a VAE with both ``encode`` and ``decode`` (images in [-1, 1]).
        run: how the cycles run (default: the VAE's own device and dtype).

    Returns:
        (first, second, ratio): the two moves as fractions of the latent's spread around its channel means,
        and first / second.
    """
    z = z.float()
    spread = float((z - z.mean(dim=(-2, -1), keepdim=True)).norm()) or 1.0
    z2 = _cycle(z, vae, run)
    z3 = _cycle(z2, vae, run)
    first, second = float((z2 - z).norm()) / spread, float((z3 - z2).norm()) / spread
    return first, second, first / max(second, 1e-12)


def cycle_reference(vae: VAE, cells: int = 32, photos: tuple[str, ...] = CYCLE_PHOTOS, run: Run | None = None) -> float:
    """The cycle ratio of the VAE's own latents of bundled photos: the baseline :func:`cycle_ratio` is judged by.

    Args:
        vae: a 2-D VAE with both halves.
        cells: latent side to encode at (the preflight crop's size), i.e. photos of ``cells·ratio`` pixels.
        photos: bundled photo names (:mod:`latentbridge.photos`).
        run: how the encodes and cycles run (default: the VAE's own device and dtype).

    Returns:
        The median ratio over the photos' centre crops.
    """
    from latentbridge.photos import photo_tensor

    if vae.encode is None or vae.decode is None:
        raise ValueError(f"cycle_reference needs a VAE with an encoder and a decoder; {vae.name} lacks one")
    ratios = []
    for name in photos:
        z = codec.encode_native(vae, photo_tensor(name, cells * vae.spatial_ratio), test_run(vae, run))
        ratios.append(cycle_ratio(z, vae, run)[2])
    return float(np.median(ratios))


def _cycle_findings(
    crop: torch.Tensor,
    vae: VAE,
    fmt: LatentFormat | None,
    spaces: list[str],
    cells: int,
    reference: float | None,
    calib: Calibration,
    run: Run | None = None,
) -> list[Finding]:
    """The decode→encode cycle test of the crop in each candidate space, against the VAE's own baseline."""
    if not math.isfinite(calib.cycle_threshold):
        return [
            Finding(
                "preflight-cycle-unavailable",
                "info",
                "the decode→encode cycle test needs its threshold in profiles.json, which this installation lacks",
                "rebuild it: scripts/build_profiles.py",
            )
        ]
    rows = []
    for sp in spaces:
        try:
            native = crop if fmt is None else Latent(crop, fmt, sp).to_space(vae.native_space, vae.stats).tensor
        except ValueError:
            continue  # this space cannot be converted without statistics we lack
        rows.append((sp, *cycle_ratio(native, vae, run)))
    if not rows:
        return []
    ref = reference if reference is not None else cycle_reference(vae, min(cells, *crop.shape[-2:]), run=run)
    sp, first, _, ratio = min(rows, key=lambda r: r[3])
    relative = ratio / ref
    evidence = (
        ("cycle", {r[0]: {"first": round(r[1], 4), "second": round(r[2], 4), "ratio": round(r[3], 3)} for r in rows}),
        ("reference_ratio", round(ref, 3)),
        ("relative_ratio", round(relative, 3)),
        ("threshold", calib.cycle_threshold),
    )
    read = f" ({sp} space)" if len(rows) > 1 or sp != vae.native_space else ""
    if relative > calib.cycle_threshold:
        return [
            Finding(
                "preflight-cycle",
                "warn",
                f"the latent{read} is not a fixed point of {vae.name}: one decode→encode moves it {first:.2f} of its "
                f"spread, {ratio:.2f}× as far as a second cycle does; this VAE's own latents of photos give "
                f"{ref:.2f}×, and {relative:.2f} times that is beyond what its own latents show "
                f"({calib.cycle_threshold:.2f})",
                "the latent is probably from another latent space (or in the wrong space): check its family and "
                "space before decoding",
                evidence,
            )
        ]
    return [
        Finding(
            "preflight-cycle",
            "info",
            f"decode→encode keeps the latent{read} about as well as {vae.name}'s own latents "
            f"({ratio:.2f}× vs {ref:.2f}×)",
            "",
            evidence,
        )
    ]
