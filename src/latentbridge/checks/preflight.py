"""Preflight: cheap test decodes of a small centre crop with every candidate family, scored for how natural they
look, and — for a VAE with both halves — the decode→encode cycle test (:func:`cycle_ratio`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch

from latentbridge import codec
from latentbridge.checks.findings import Finding
from latentbridge.checks.result import Report
from latentbridge.formats import LatentFormat, Space, find_formats, get_format
from latentbridge.latent import Latent
from latentbridge.profiles import (
    Calibration,
    calibration,
)
from latentbridge.run import Run
from latentbridge.vae import VAE

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
    spaces: list[Space] = [cast(Space, space)] if space in ("raw", "model") else ["raw", "model"]
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
        read_as = lat_fmt or vae_fmt
        for sp in spaces:
            try:
                lat = Latent(crop, read_as, sp)
                native = crop if read_as is None else lat.to_space(vae.native_space, facts.stats).tensor
                image = codec.decode_native(vae, native, preflight_run(vae, run))
            except ValueError:  # no conversion for this space, or a decode that is not finite even in fp32
                continue
            image = ((image.float() + 1) / 2).clamp(0, 1)
            pooled = torch.nn.functional.adaptive_avg_pool2d(image, (int(crop.shape[-2]), int(crop.shape[-1])))
            values, z, penalty = _score(pooled, reference)
            name = read_as.name if read_as is not None else "?"
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
    if own and others and vae_fmt is not None:
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


# Bundled training photos (never the benchmark's held-out ones) whose own latents give each VAE's cycle baseline.
CYCLE_PHOTOS: tuple[str, ...] = ("coffee", "rocket")


def preflight_run(vae: VAE, run: Run | None = None) -> Run:
    """The run of the check's test decodes: the caller's, else the VAE's own device and dtype (no cast copy)."""
    return run if run is not None else vae.own_run()


def _cycle(z: torch.Tensor, vae: VAE, run: Run | None = None) -> torch.Tensor:
    """encode(decode(z)) in the VAE's native space through the codec, the image clamped to [-1, 1] in between."""
    image = codec.decode_native(vae, z, preflight_run(vae, run)).clamp(-1, 1)
    return codec.encode_native(vae, image, preflight_run(vae, run))


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
        z = codec.encode_native(vae, photo_tensor(name, cells * vae.spatial_ratio), preflight_run(vae, run))
        ratios.append(cycle_ratio(z, vae, run)[2])
    return float(np.median(ratios))


def _cycle_findings(
    crop: torch.Tensor,
    vae: VAE,
    fmt: LatentFormat | None,
    spaces: list[Space],
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
