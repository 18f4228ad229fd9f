"""Decode one latent with several candidate VAEs and lay the pictures out side by side with their numbers.

The point is the compatible-vs-incompatible picture: the right VAE gives the photo, a VAE of the same shape
but another latent space (SD1 vs SDXL, zoo-a vs zoo-b) gives a plausible-looking but wrong one. Each tile
carries its metrics — PSNR against the reference (a reference image, else the decode of the VAE named in the
latent's provenance, else the first candidate's decode), colourfulness and dynamic range — and, where
``latentbridge.checks`` is available, the check verdict.

A candidate whose format differs from the latent's is decoded anyway, reading the tensor as that format in
the same space (what a mix-up does), and its caption says so; a candidate that cannot take the tensor at all
(another channel count) gets a grey tile with the reason.
"""

from __future__ import annotations

import io
import json
import math
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from latentbridge import metrics
from latentbridge._atomic import atomic_write
from latentbridge.errors import LatentBridgeError, ShapeError
from latentbridge.latent import Latent
from latentbridge.previews import decode_images, to_pil
from latentbridge.run import Run
from latentbridge.vae import VAE

__all__ = [
    "CAPTION_LINES",
    "Candidate",
    "Comparison",
    "caption_lines",
    "colourfulness",
    "compare",
    "comparison_grid",
    "dynamic_range",
    "grid_png",
    "luminance",
    "save_grid",
    "short_name",
]


def colourfulness(image: torch.Tensor) -> float:
    """Colourfulness of Hasler & Süsstrunk (2003), on the 0–255 scale.

    ``M = sqrt(σ_rg² + σ_yb²) + 0.3·sqrt(μ_rg² + μ_yb²)`` with ``rg = R − G`` and ``yb = (R + G)/2 − B``.
    About 0 for a grey image, 30–60 for typical photos, above 100 for saturated ones.

    Args:
        image: [3, H, W] in [0, 1].
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ShapeError(f"colourfulness takes one RGB image [3, H, W], got {tuple(image.shape)}")
    r, g, b = (image.double() * 255.0).unbind(0)
    rg = r - g
    yb = 0.5 * (r + g) - b
    spread = math.sqrt(float(rg.var(unbiased=False)) + float(yb.var(unbiased=False)))
    centre = math.sqrt(float(rg.mean()) ** 2 + float(yb.mean()) ** 2)
    return spread + 0.3 * centre


def luminance(image: torch.Tensor) -> torch.Tensor:
    """Rec. 709 luma of [3, H, W] in [0, 1] (no gamma handling): [H, W] in [0, 1]."""
    r, g, b = image.double().unbind(0)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def dynamic_range(image: torch.Tensor) -> float:
    """Luminance spread: 99th minus 1st percentile of the Rec. 709 luma, in [0, 1] (a flat image gives 0)."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ShapeError(f"dynamic_range takes one RGB image [3, H, W], got {tuple(image.shape)}")
    y = luminance(image).flatten()
    q = torch.quantile(y, torch.tensor([0.01, 0.99], dtype=torch.float64))
    return float(q[1] - q[0])


@dataclass(frozen=True, slots=True, eq=False)
class Candidate:
    """One VAE's decode of the compared latent, or why there is none.

    Attributes:
        name: the VAE's name.
        sha256: the VAE file's sha256 ("" when unknown).
        format: the VAE's latent format ("" when unknown).
        image: [3, H, W] float32 in [0, 1], or None when it could not decode.
        psnr: dB against the comparison's reference (inf for the reference itself), None without an image.
        colourfulness: Hasler–Süsstrunk M (0–255 scale), None without an image.
        dynamic_range: 1st–99th percentile luma spread in [0, 1], None without an image.
        relabelled: True when the latent was read as the VAE's (different) format.
        verdict: ``latentbridge.checks``'s verdict, "" when check is unavailable.
        findings: check's findings as lines.
        error: why it could not decode ("" when it did).
    """

    name: str
    sha256: str
    format: str
    image: torch.Tensor | None
    psnr: float | None
    colourfulness: float | None
    dynamic_range: float | None
    relabelled: bool
    verdict: str
    findings: tuple[str, ...]
    error: str

    def to_dict(self) -> dict:
        """JSON-ready numbers (no image); inf PSNR becomes "inf"."""
        p = self.psnr
        return {
            "name": self.name,
            "sha256": self.sha256,
            "format": self.format,
            "psnr_db": "inf" if p is not None and math.isinf(p) else p,
            "colourfulness": self.colourfulness,
            "dynamic_range": self.dynamic_range,
            "relabelled": self.relabelled,
            "verdict": self.verdict,
            "findings": list(self.findings),
            "error": self.error,
        }


@dataclass(frozen=True, slots=True, eq=False)
class Comparison:
    """The candidates' decodes of one item (and frame) of a latent, and what PSNR is measured against."""

    candidates: tuple[Candidate, ...]
    reference: str  # "reference image astronaut.png" / "decode of zoo-a (named in the latent's provenance)"
    item: int
    frame: int

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "reference": self.reference,
            "item": self.item,
            "frame": self.frame,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def _run_check(latent: Latent, vae: VAE) -> tuple[str, tuple[str, ...]]:
    from latentbridge.checks import check  # local: the check loads the reference profiles

    report = check(latent, vae)
    return str(report.verdict), tuple(f"{f.severity}: {f.message}" for f in report.findings)


def _pick(images: torch.Tensor, frames: int, item: int, frame: int) -> torch.Tensor:
    index = item * frames + frame
    if not 0 <= index < images.shape[0]:
        raise ShapeError(f"item {item} frame {frame} is out of range for {images.shape[0]} decoded images")
    return images[index]


def compare(
    latent: Latent,
    vaes: Sequence[VAE],
    *,
    reference: torch.Tensor | None = None,
    reference_name: str = "reference image",
    item: int = 0,
    frame: int = 0,
    run_check: bool = True,
    run: Run = Run(),
) -> Comparison:
    """Decode ``latent`` with each candidate and measure the pictures.

    Args:
        latent: a latent with a known format and space.
        vaes: candidate decoders (at least one).
        reference: optional [3, H, W] or [1, 3, H, W] image in [0, 1] to measure PSNR against; resized
            (area / bicubic) to the decode size when it differs, and ``reference`` says so.
        reference_name: how to call the reference image in captions.
        item: which batch item to compare; frame: which latent frame (video).
        run_check: run :func:`latentbridge.checks` for each candidate.
        run: how the decodes execute (device, dtype, tiling, cancel; progress of each decode).

    Returns:
        :class:`Comparison` with one :class:`Candidate` per VAE, in order.
    """
    if not vaes:
        raise ValueError("compare needs at least one VAE (--vae FILE, repeatable)")
    n, t = latent.dim("N"), latent.dim("T")
    if not (0 <= item < n and 0 <= frame < t):
        raise ShapeError(f"item {item} / frame {frame} out of range: the latent has {n} items and {t} frames")
    one = latent
    decoded: list[tuple[VAE, torch.Tensor | None, bool, str]] = []
    for vae in vaes:
        relabel = vae.format is not None and latent.format is not None and vae.format.name != latent.format.name
        try:
            images = decode_images(vae, one, relabel=relabel, run=run)
            decoded.append((vae, _pick(images, t, item, frame), relabel, ""))
        except LatentBridgeError as exc:
            decoded.append((vae, None, relabel, str(exc)))
    ref_image, ref_desc = None, ""
    if reference is not None:
        ref_image = reference[0] if reference.ndim == 4 else reference
        if ref_image.ndim != 3 or ref_image.shape[0] != 3:
            raise ShapeError(f"the reference image must be [3, H, W] in [0, 1], got {tuple(reference.shape)}")
        ref_desc = reference_name
    else:
        sha = latent.provenance.vae_sha256
        named = [d for d in decoded if d[1] is not None and sha and d[0].sha256 == sha]
        first = named or [d for d in decoded if d[1] is not None]
        if first:
            ref_image = first[0][1]
            why = "named in the latent's provenance" if named else "the first candidate that decoded"
            ref_desc = f"decode of {first[0][0].name} ({why})"
    candidates = []
    for vae, image, relabel, error in decoded:
        verdict, findings = _run_check(latent, vae) if run_check else ("", ())
        p = None
        if image is not None and ref_image is not None:
            target = ref_image.float()
            if target.shape != image.shape:
                target = _resize(target, (int(image.shape[-2]), int(image.shape[-1])))
                if "resized" not in ref_desc:
                    ref_desc += " (resized to each decode's size where they differ)"
            p = float(metrics.psnr(image[None].clamp(0, 1), target[None].clamp(0, 1))[0])
        candidates.append(
            Candidate(
                name=vae.name,
                sha256=vae.sha256,
                format=vae.format.name if vae.format is not None else "",
                image=image,
                psnr=p,
                colourfulness=colourfulness(image) if image is not None else None,
                dynamic_range=dynamic_range(image) if image is not None else None,
                relabelled=relabel,
                verdict=verdict,
                findings=findings,
                error=error,
            )
        )
    return Comparison(candidates=tuple(candidates), reference=ref_desc or "none", item=item, frame=frame)


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[3, H, W] -> [3, h, w]: area when shrinking, bicubic when enlarging."""
    mode = "area" if size[0] <= image.shape[1] and size[1] <= image.shape[2] else "bicubic"
    kwargs = {"align_corners": False} if mode == "bicubic" else {}
    return F.interpolate(image[None].float(), size=size, mode=mode, **kwargs)[0].clamp(0, 1)


# --- the grid picture -----------------------------------------------------------------------------------

CAPTION_LINES = 6
_LINE = 15  # px per caption line with the default font at size 12
_MIN_COLUMN = 240  # px: room for the caption even under small decodes


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=12)


def short_name(name: str) -> str:
    """A VAE name without folders: "a/taef2_encoder.pth + a/taef2_decoder.pth" -> "taef2_encoder.pth + …"."""
    return " + ".join(part.strip().replace("\\", "/").rsplit("/", 1)[-1] for part in name.split(" + "))


def caption_lines(c: Candidate, comparison: Comparison, width: int = 36) -> list[str]:
    """The lines written under one tile (at most ``CAPTION_LINES``, each at most ``width`` characters)."""
    lines = [short_name(c.name)]
    if c.relabelled and c.image is not None:
        lines.append(f"latent read as {c.format}")
    if c.image is None:
        lines.extend(textwrap.wrap("cannot decode: " + c.error, width))
    else:
        if c.psnr is None:
            lines.append("PSNR: no reference")
        elif math.isinf(c.psnr):
            lines.append("the reference" if "decode of" in comparison.reference else "PSNR inf (identical)")
        else:
            lines.append(f"PSNR {c.psnr:.2f} dB")
        lines.append(f"colourfulness {c.colourfulness:.1f}")
        lines.append(f"dynamic range {c.dynamic_range:.2f}")
    if c.verdict:
        lines[min(len(lines), CAPTION_LINES - 1) :] = textwrap.wrap(f"check: {c.verdict}", width)[:1]
    return [line[:width] for line in lines[:CAPTION_LINES]]


def comparison_grid(comparison: Comparison, *, tile: int | None = None, gap: int = 6) -> Image.Image:
    """The candidates side by side, each with its caption below; the numbers also go into the PNG as text.

    Args:
        comparison: from :func:`compare`.
        tile: tile height in pixels (images are resized keeping their aspect: nearest-neighbour for whole
            multiples, bicubic otherwise); default: the decode size, at least 128.
        gap: pixels between tiles.

    Returns:
        RGB image; ``image.info["latentbridge"]`` holds the comparison's JSON (written as a PNG tEXt chunk
        by :func:`grid_png`).
    """
    decoded = [c.image for c in comparison.candidates if c.image is not None]
    h0, w0 = (decoded[0].shape[1], decoded[0].shape[2]) if decoded else (128, 128)
    th = tile or max(h0, 128)  # tiny decodes are enlarged to stay visible beside their captions
    tw = max(1, round(w0 * th / h0))
    font = _font()
    cap_h = CAPTION_LINES * _LINE + 4
    n = len(comparison.candidates)
    tw_text = max(tw, _MIN_COLUMN)
    canvas = Image.new("RGB", (n * tw_text + (n - 1) * gap, th + cap_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, c in enumerate(comparison.candidates):
        x0 = i * (tw_text + gap)
        if c.image is not None:
            picture = to_pil(c.image)
            if picture.size != (tw, th):
                exact = th % h0 == 0 and tw % w0 == 0 and th >= h0
                picture = picture.resize((tw, th), Image.Resampling.NEAREST if exact else Image.Resampling.BICUBIC)
            canvas.paste(picture, (x0, 0))
        else:
            draw.rectangle((x0, 0, x0 + tw - 1, th - 1), fill=(128, 128, 128))
        for k, line in enumerate(caption_lines(c, comparison, width=tw_text // 7)):
            draw.text((x0 + 2, th + 2 + k * _LINE), line, fill=(0, 0, 0), font=font)
    canvas.info["latentbridge"] = json.dumps(comparison.to_dict())
    return canvas


def grid_png(image: Image.Image) -> bytes:
    """PNG bytes of a grid from :func:`comparison_grid`, with its numbers in a ``latentbridge`` tEXt chunk."""
    info = PngImagePlugin.PngInfo()
    if "latentbridge" in image.info:
        info.add_text("latentbridge", image.info["latentbridge"])
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def save_grid(comparison: Comparison, path: str | os.PathLike[str], *, tile: int | None = None) -> Path:
    """Write :func:`comparison_grid` of ``comparison`` as a PNG file, atomically (missing folders are made)."""
    return atomic_write(path, grid_png(comparison_grid(comparison, tile=tile)), parents=True)
