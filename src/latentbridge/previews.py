"""Latent previews in milliseconds: published latent→RGB factors, factors fitted to any VAE, tiny decoders.

Every preview method has one signature (a :data:`Previewer`)::

    preview(latent: Latent) -> Tensor[B', 3, H, W] float32 in [0, 1]

* ``rgb``: the format's published linear factors (``LatentFormat.rgb_factors`` / ``rgb_bias``, from
  ComfyUI's previewer). They map the **model-space** latent — for packed formats (FLUX.2) the *unpacked*,
  still-normalised latent — to RGB in about [-1, 1]: ``rgb[k] = sum_c z[c] * F[c][k] + bias[k]``.
  Output at latent resolution.
* ``fitted``: the same linear form with factors fitted by least squares for one VAE file
  (:func:`fit_preview`), stored per VAE sha256 in a per-user folder (:func:`default_fits_dir`) and found
  again from a latent's provenance or format (:func:`find_fit`).
* ``tiny``: a small decoder (TAESD family incl. TAEF2, VAEApprox) given as a :class:`~latentbridge.vae.VAE`.
  Output at the decoder's resolution (8× the latent for TAESD/TAEF2, 2× for VAEApprox).

Video latents [B, C, T, H, W] are previewed frame by frame: the frames are folded into the batch,
batch-major (``B' = B·T``, item ``b`` frame ``t`` at index ``b·T + t``); :func:`image_grid` lays them out
one row per item, one column per latent frame.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from latentbridge import codec
from latentbridge._atomic import atomic_write
from latentbridge._guard import read_json_file
from latentbridge.errors import FileFormatError, IncompatibleError, LatentBridgeError, NonFiniteError, ShapeError
from latentbridge.formats import LatentFormat, unpack
from latentbridge.latent import Latent
from latentbridge.run import Run
from latentbridge.vae import VAE, as_vae

__all__ = [
    "FIT_FILE_VERSION",
    "METHODS",
    "PreviewFit",
    "Previewer",
    "apply_linear",
    "check_values",
    "choose_previewer",
    "decode_images",
    "default_fits_dir",
    "downsample_to",
    "find_fit",
    "fit_for_vae",
    "fit_linear",
    "fit_path",
    "fit_preview",
    "fitted_previewer",
    "fold_frames",
    "frames_per_item",
    "has_published_factors",
    "image_grid",
    "linear_psnr",
    "list_fits",
    "load_fit",
    "png_bytes",
    "preview",
    "preview_grid",
    "preview_space_latent",
    "rgb_preview",
    "save_fit",
    "sha_parts",
    "tiny_previewer",
    "to_pil",
    "write_png",
]

Previewer = Callable[[Latent], torch.Tensor]
"""``preview(latent) -> Tensor[B', 3, H, W]`` float32 in [0, 1] (``B' = B·T`` for video)."""

METHODS: tuple[str, ...] = ("auto", "rgb", "fitted", "tiny")
FIT_FILE_VERSION = 1
_FIT_MAGIC = "latentbridge-preview-fit"


# --- latent plumbing ------------------------------------------------------------------------------------


def _require_format_and_space(latent: Latent, why: str) -> LatentFormat:
    fmt = latent.require_format(why)
    if latent.space == "unknown":
        raise ValueError(
            f"this latent's space is unknown (raw VAE output or model space?), so latentbridge cannot {why}; "
            "pass --space raw|model, or run `latentbridge check` to have it estimated"
        )
    return fmt


def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B·T, C, H, W] batch-major (item b, frame t at b·T + t); 4-D input unchanged."""
    if x.ndim == 4:
        return x
    if x.ndim != 5:
        raise ShapeError(f"expected an image [B, C, H, W] or video [B, C, T, H, W] latent, got {tuple(x.shape)}")
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)


def frames_per_item(latent: Latent) -> int:
    """Latent frames per batch item: T for video latents, 1 for images."""
    return latent.dim("T")


def preview_space_latent(latent: Latent) -> torch.Tensor:
    """The tensor linear previews read: model space, unpacked, frames folded into the batch.

    Args:
        latent: a latent with a known format and space (raw or model). Raw latents of formats normalised
            with statistics from the VAE file (FLUX.2) need ``latent.stats``.

    Returns:
        float32 [B·T, C, H, W]: the model-space latent; for packed formats (FLUX.2) the unpacked,
        still-normalised latent ([B, 32, H/8, W/8] for FLUX.2), which the published factors expect.
    """
    fmt = _require_format_and_space(latent, "preview it")
    x = fold_frames(latent.to_space("model").tensor.float())
    return unpack(x, fmt.patch)


def _to_unit(rgb: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped, float32."""
    return ((rgb.float() + 1.0) * 0.5).clamp(0.0, 1.0)


def apply_linear(z: torch.Tensor, factors: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``rgb = z @ factors + bias`` per latent cell, mapped from [-1, 1] to [0, 1].

    Args:
        z: [N, C, H, W] latent in the space the factors were made for.
        factors: [C, 3].
        bias: [3].

    Returns:
        [N, 3, H, W] float32 in [0, 1].
    """
    if z.shape[1] != factors.shape[0]:
        raise ShapeError(f"the latent has {z.shape[1]} channels but the factors have {factors.shape[0]} rows")
    rgb = torch.einsum("nchw,ck->nkhw", z.float(), factors.float()) + bias.float().view(1, 3, 1, 1)
    return _to_unit(rgb)


# --- rgb: published factors -----------------------------------------------------------------------------


def has_published_factors(fmt: LatentFormat) -> bool:
    """True when the registry carries latent→RGB factors for ``fmt``."""
    return bool(fmt.rgb_factors)


def rgb_preview(latent: Latent) -> torch.Tensor:
    """Preview with the format's published latent→RGB factors (ComfyUI's previewer numbers).

    Args:
        latent: raw or model-space latent of a registry format that has ``rgb_factors``.

    Returns:
        [B·T, 3, H', W'] float32 in [0, 1] at the unpacked latent's resolution (pixels / spatial_ratio).
    """
    fmt = _require_format_and_space(latent, "preview it with published factors")
    if not has_published_factors(fmt):
        raise LatentBridgeError(
            f"format {fmt.name!r} has no published latent→RGB factors ({fmt.source('rgb')}); "
            "fit some with `latentbridge fit-preview --vae FILE --images DIR` and use --method fitted, "
            "or use --method tiny --vae FILE with a tiny decoder"
        )
    factors, bias = torch.tensor(fmt.rgb_factors), torch.tensor(fmt.rgb_bias)
    return apply_linear(preview_space_latent(latent), factors, bias)


# --- fitted factors -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreviewFit:
    """Latent→RGB factors fitted by least squares for one VAE file.

    ``rgb = z @ factors + bias`` maps a latent in ``space`` (model space, unpacked, when the format is known;
    the VAE's native space when it is not) to RGB in about [-1, 1], like the published factors.
    """

    vae_sha256: str  # sha256 of the VAE weight file the fit belongs to
    vae_name: str  # what the user called it
    format: str  # registry format name, "" when the VAE's format is unknown
    space: str  # "model" (unpacked) or the VAE's native space when format == ""
    factors: tuple[tuple[float, float, float], ...]  # one row per latent channel
    bias: tuple[float, float, float]
    images: tuple[str, ...]  # the images fitted on
    cells: int  # latent cells (rows of the least-squares system)
    fit_psnr: float  # dB, [0, 1] scale, of the fit on its own images at latent resolution
    published_psnr: float | None  # the format's published factors on the same cells (None: format has none)
    created: str  # ISO-8601 UTC

    def __post_init__(self) -> None:
        if not self.factors or any(len(row) != 3 for row in self.factors):
            raise ValueError(f"preview fit for {self.vae_name!r}: factors need one (R, G, B) row per channel")
        if len(self.bias) != 3:
            raise ValueError(f"preview fit for {self.vae_name!r}: bias needs 3 values, got {len(self.bias)}")
        if self.space not in ("raw", "model"):
            raise ValueError(f"preview fit for {self.vae_name!r}: space must be 'raw' or 'model', got {self.space!r}")

    @property
    def channels(self) -> int:
        """Latent channels the factors read."""
        return len(self.factors)

    def to_dict(self) -> dict:
        """JSON-ready dict (what the fits folder stores)."""
        return {
            "kind": _FIT_MAGIC,
            "version": FIT_FILE_VERSION,
            "vae_sha256": self.vae_sha256,
            "vae_name": self.vae_name,
            "format": self.format,
            "space": self.space,
            "factors": [list(r) for r in self.factors],
            "bias": list(self.bias),
            "images": list(self.images),
            "cells": self.cells,
            "fit_psnr": self.fit_psnr,
            "published_psnr": self.published_psnr,
            "created": self.created,
        }

    @staticmethod
    def from_dict(data: dict, where: str = "preview fit") -> PreviewFit:
        """Inverse of :meth:`to_dict`; raises FileFormatError naming ``where`` on anything else."""
        if not isinstance(data, dict) or data.get("kind") != _FIT_MAGIC:
            raise FileFormatError(
                f"{where} is not a latentbridge preview fit (expected a JSON object with kind {_FIT_MAGIC!r}); "
                "delete it and run `latentbridge fit-preview` again"
            )
        if data.get("version") != FIT_FILE_VERSION:
            raise FileFormatError(
                f"{where} is a preview fit of version {data.get('version')!r}, this latentbridge reads version "
                f"{FIT_FILE_VERSION}; run `latentbridge fit-preview` again to rewrite it"
            )
        try:
            return PreviewFit(
                vae_sha256=str(data["vae_sha256"]),
                vae_name=str(data["vae_name"]),
                format=str(data["format"]),
                space=str(data["space"]),
                factors=tuple((float(r[0]), float(r[1]), float(r[2])) for r in data["factors"]),
                bias=(float(data["bias"][0]), float(data["bias"][1]), float(data["bias"][2])),
                images=tuple(str(i) for i in data["images"]),
                cells=int(data["cells"]),
                fit_psnr=float(data["fit_psnr"]),
                published_psnr=None if data["published_psnr"] is None else float(data["published_psnr"]),
                created=str(data["created"]),
            )
        except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:  # missing, mistyped, inf
            raise FileFormatError(
                f"{where} is a damaged preview fit ({type(exc).__name__}: {exc}); "
                "delete it and run `latentbridge fit-preview` again"
            ) from exc


def _pooled_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two image batches in [0, 1] (peak 1), over all values; inf when identical."""
    if a.shape != b.shape:
        raise ShapeError(f"PSNR needs images of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0.0 else 10.0 * math.log10(1.0 / mse)


def downsample_to(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Area-average images [N, 3, H, W] to ``size`` (h, w): the exact cell mean when H/h and W/w are integers."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images.float()
    return F.interpolate(images.float(), size=size, mode="area")


def fit_linear(
    latents: Sequence[torch.Tensor], images: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """Least-squares latent→RGB factors with a bias column.

    Each image is area-downsampled to its latent's size; every latent cell is one row of
    ``[z, 1] @ [factors; bias] ≈ 2·rgb − 1``, solved in float64.

    Args:
        latents: [N_i, C, h_i, w_i] latents (the space the factors will read), one entry per image batch.
        images: [N_i, 3, H_i, W_i] in [0, 1], the pictures those latents encode (or decode to).

    Returns:
        (factors [C, 3], bias [3], PSNR in dB of the fit on its own cells ([0, 1] scale), number of cells).
    """
    if len(latents) != len(images) or not latents:
        raise ValueError(f"fit_linear needs one image batch per latent batch, got {len(latents)} and {len(images)}")
    channels = latents[0].shape[1]
    rows, targets = [], []
    for z, img in zip(latents, images, strict=True):
        if z.ndim != 4 or z.shape[1] != channels or img.ndim != 4 or img.shape[:2] != (z.shape[0], 3):
            raise ShapeError(
                f"fit_linear needs latents [N, {channels}, h, w] and images [N, 3, H, W]; "
                f"got {tuple(z.shape)} and {tuple(img.shape)}"
            )
        small = downsample_to(img, (z.shape[2], z.shape[3]))
        rows.append(z.double().permute(0, 2, 3, 1).reshape(-1, channels))
        targets.append(small.double().permute(0, 2, 3, 1).reshape(-1, 3) * 2.0 - 1.0)
    design = torch.cat(rows)
    target = torch.cat(targets)
    if design.shape[0] < 4 * (channels + 1):
        raise ValueError(
            f"only {design.shape[0]} latent cells for {channels + 1} unknowns per colour; "
            "fit on more or larger images (at least a few hundred latent cells)"
        )
    if not torch.isfinite(design).all():
        raise ValueError("the latents hold NaN or inf values: the encoder failed on these images; check the VAE")
    design = torch.cat([design, torch.ones(design.shape[0], 1, dtype=design.dtype)], 1)
    solution = torch.linalg.lstsq(design, target, driver="gelsd").solution
    fit = _to_unit(design @ solution)
    quality = _pooled_psnr(fit, ((target + 1.0) * 0.5).clamp(0, 1))
    return solution[:-1].float(), solution[-1].float(), quality, int(design.shape[0])


def linear_psnr(
    latents: Sequence[torch.Tensor], images: Sequence[torch.Tensor], factors: torch.Tensor, bias: torch.Tensor
) -> float:
    """PSNR in dB ([0, 1] scale, pooled over every cell) of a linear preview against area-downsampled images.

    Args:
        latents: [N_i, C, h_i, w_i] in the space the factors read.
        images: [N_i, 3, H_i, W_i] in [0, 1].
        factors: [C, 3]; bias: [3].
    """
    previews, targets = [], []
    for z, img in zip(latents, images, strict=True):
        previews.append(apply_linear(z, factors, bias).flatten())
        targets.append(downsample_to(img, (z.shape[2], z.shape[3])).clamp(0, 1).flatten())
    return _pooled_psnr(torch.cat(previews), torch.cat(targets))


def _encode_for_fit(vae: VAE, image: torch.Tensor, run: Run) -> tuple[torch.Tensor, str]:
    """Encode one [1, 3, H, W] image in [0, 1]; return the latent the fit reads and its space."""
    if vae.encode is None:
        raise LatentBridgeError(
            f"VAE {vae.name!r} has no encoder, and fitting preview factors needs one to encode the images; "
            "pass the full VAE file (encoder and decoder)"
        )
    x = image * 2.0 - 1.0
    if vae.dims == 3:
        x = x.unsqueeze(2)  # a one-frame video: [1, 3, 1, H, W]
    latent = codec.encode(vae, x, run)
    if vae.format is None:
        return fold_frames(latent.tensor.float()), latent.space
    return preview_space_latent(latent), "model"


def fit_preview(vae: VAE, images: Sequence[torch.Tensor], names: Sequence[str] = (), *, run: Run = Run()) -> PreviewFit:
    """Fit latent→RGB preview factors for ``vae`` on ``images``.

    Each image is encoded with :func:`latentbridge.codec.encode` (posterior mean, fp32), converted to model space
    and unpacked when the VAE's format is known (else kept in the VAE's native space), and the image is
    area-downsampled to the latent size;
    :func:`fit_linear` solves the least squares with a bias column.

    Args:
        vae: a VAE with an encoder; its ``sha256`` names the fit.
        images: [1, 3, H, W] tensors in [0, 1], H and W multiples of the VAE's spatial ratio.
        names: one name per image (kept in the fit for the record).
        run: how the encodes run (default fp32 on the CPU).

    Returns:
        The fit (not yet stored: see :func:`save_fit`).
    """
    if not images:
        raise ValueError("fit_preview needs at least one image")
    if names and len(names) != len(images):
        raise ValueError(f"got {len(names)} names for {len(images)} images")
    latents, pictures, space = [], [], "model"
    for image in images:
        if image.ndim != 4 or image.shape[:2] != (1, 3):
            raise ShapeError(f"fit_preview takes images [1, 3, H, W] in [0, 1], got {tuple(image.shape)}")
        z, space = _encode_for_fit(vae, image.float(), run)
        latents.append(z)
        pictures.append(image.float())
    factors, bias, quality, cells = fit_linear(latents, pictures)
    published = None
    if vae.format is not None and has_published_factors(vae.format):
        published = linear_psnr(
            latents, pictures, torch.tensor(vae.format.rgb_factors), torch.tensor(vae.format.rgb_bias)
        )
    return PreviewFit(
        vae_sha256=vae.sha256,
        vae_name=vae.name,
        format=vae.format.name if vae.format is not None else "",
        space=space,
        factors=tuple(tuple(float(v) for v in row) for row in factors.tolist()),  # type: ignore[misc]
        bias=tuple(float(v) for v in bias.tolist()),  # type: ignore[arg-type]
        images=tuple(names) if names else tuple(f"image {i}" for i in range(len(images))),
        cells=cells,
        fit_psnr=quality,
        published_psnr=published,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )


def fitted_previewer(fit: PreviewFit) -> Previewer:
    """A previewer that applies ``fit``'s factors.

    The returned function maps a latent of ``fit.format`` (raw or model space; the fit's own space when the
    format is unknown) to [B·T, 3, H', W'] float32 in [0, 1] at the unpacked latent's resolution.
    """
    factors, bias = torch.tensor(fit.factors), torch.tensor(fit.bias)

    def preview(latent: Latent) -> torch.Tensor:
        if fit.format:
            if latent.format is not None and latent.format.name != fit.format:
                raise IncompatibleError(
                    f"the preview fit of VAE {fit.vae_name!r} reads {fit.format} latents, this latent is "
                    f"{latent.format.name}; fit factors for a {latent.format.name} VAE or use --method rgb"
                )
            lat = latent if latent.format is not None else latent.replace(format=fit.format)
            z = preview_space_latent(lat)
        else:
            if latent.space != fit.space:
                raise ValueError(
                    f"the preview fit of VAE {fit.vae_name!r} (format unknown) reads {fit.space}-space latents, "
                    f"this latent is in {latent.space} space; pass --space {fit.space} if that is what it holds"
                )
            z = fold_frames(latent.canonical().tensor if latent.format else latent.tensor).float()
        if z.shape[1] != fit.channels:
            raise IncompatibleError(
                f"the preview fit of VAE {fit.vae_name!r} reads {fit.channels}-channel latents, this latent has "
                f"{z.shape[1]}; use a fit made for this latent's VAE"
            )
        return apply_linear(z, factors, bias)

    return preview


# --- the fits folder ------------------------------------------------------------------------------------


def default_fits_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Where fitted factors live: ``<home>/previews``, or ``~/.cache/latentbridge/previews`` without a home.

    The library never reads the environment: the CLI passes ``$LATENTBRIDGE_HOME`` (or ``--home``) here.
    """
    root = Path(home).expanduser() if home else Path.home() / ".cache" / "latentbridge"
    return root / "previews"


def _is_sha(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def sha_parts(sha256: str, what: str = "VAE") -> tuple[str, ...]:
    """The file hashes in a VAE's ``sha256``: one, or several joined by "+" (a TAESD encoder + decoder pair).

    Raises ValueError naming ``what`` when a part is not 64 lowercase hex digits.
    """
    parts = tuple(sorted(p for p in sha256.split("+") if p))
    if not parts or not all(_is_sha(p) for p in parts):
        raise ValueError(
            f"{what}: a preview fit is stored under the VAE file's sha256 (64 lowercase hex digits, several "
            f"joined by '+'), got {sha256!r}; load the VAE from a weight file so that it has one"
        )
    return parts


def fit_path(folder: str | os.PathLike[str], sha256: str) -> Path:
    """The file that holds the fit for the VAE whose weight file(s) have this sha256: ``<folder>/<sha>.json``."""
    return Path(folder) / f"{'+'.join(sha_parts(sha256, 'fit_path'))}.json"


def save_fit(fit: PreviewFit, folder: str | os.PathLike[str]) -> Path:
    """Store ``fit`` as ``<folder>/<vae sha256>.json`` (atomic write); returns the path."""
    sha_parts(fit.vae_sha256, f"VAE {fit.vae_name!r}")
    path = fit_path(folder, fit.vae_sha256)
    return atomic_write(path, (json.dumps(fit.to_dict(), indent=1) + "\n").encode(), parents=True)


def load_fit(path: str | os.PathLike[str]) -> PreviewFit:
    """Read one stored fit; FileFormatError names the file when it is not a fit."""
    path = Path(path)
    fix = "expected a latentbridge preview fit: delete it and run `latentbridge fit-preview` again"
    data = read_json_file(path, "not a preview fit", fix)
    return PreviewFit.from_dict(data, where=str(path))


def list_fits(folder: str | os.PathLike[str]) -> list[PreviewFit]:
    """Every fit stored in ``folder`` (none when it does not exist), sorted by file name."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return [load_fit(p) for p in sorted(folder.glob("*.json"))]


def fit_for_vae(folder: str | os.PathLike[str], sha256: str) -> PreviewFit | None:
    """The stored fit for the VAE with this ``sha256``, or None.

    A VAE loaded from several files has a composite hash ("decoder+encoder"); a fit made with both halves is
    also found from either half alone (``--vae taef2_decoder.pth``) and vice versa — the newest fit sharing a
    file wins. A malformed hash finds nothing.
    """
    if not sha256 or not all(_is_sha(p) for p in sha256.split("+") if p):
        return None
    path = fit_path(folder, sha256)
    if path.is_file():
        return load_fit(path)
    want = set(sha_parts(sha256))
    sharing = [f for f in list_fits(folder) if want & set(f.vae_sha256.split("+"))]
    return max(sharing, key=lambda f: (f.created, f.vae_sha256)) if sharing else None


def find_fit(latent: Latent, folder: str | os.PathLike[str]) -> tuple[PreviewFit, str] | None:
    """The stored fit to use for ``latent``, and why; None when there is none.

    The fit of the VAE named by the latent's provenance (``vae_sha256``, see :func:`fit_for_vae`) comes first;
    otherwise a fit for the latent's format (the newest when several VAEs of that format have fits — the
    reason says so).
    """
    folder = Path(folder)
    sha = latent.provenance.vae_sha256
    fit = fit_for_vae(folder, sha)
    if fit is not None:
        if fit.format and latent.format is not None and fit.format != latent.format.name:
            raise IncompatibleError(
                f"the latent's provenance names VAE {sha[:12]}…, whose preview fit reads {fit.format} latents, "
                f"but the latent is labelled {latent.format.name}; fix the label (--format {fit.format}) "
                f"or delete {fit_path(folder, fit.vae_sha256)}"
            )
        return fit, f"fit for the VAE named in the latent's provenance ({fit.vae_name})"
    if latent.format is None:
        return None
    same = [f for f in list_fits(folder) if f.format == latent.format.name]
    if not same:
        return None
    same.sort(key=lambda f: (f.created, f.vae_sha256))
    fit = same[-1]
    why = f"fit for format {fit.format} (VAE {fit.vae_name}, {fit.vae_sha256[:12]}…)"
    if sha:
        why += "; the VAE named in the latent's provenance has no fit of its own"
    if len(same) > 1:
        why += f"; the newest of {len(same)} fits for this format"
    return fit, why


# --- tiny decoders --------------------------------------------------------------------------------------


def _relabel_for(latent: Latent, vae: VAE) -> Latent:
    """``latent`` read as the VAE's format (same space): what a mix-up does. Refuses another channel count."""
    if vae.format is None or latent.format is None or vae.format.name == latent.format.name:
        return latent
    want = vae.format.space_shape(latent.space)[0] if latent.space in ("raw", "model") else vae.channels
    if latent.dim("C") != want:
        raise IncompatibleError(
            f"VAE {vae.name!r} reads {want}-channel {latent.space}-space {vae.format.name} latents, this "
            f"{latent.format.name} latent has {latent.dim('C')} channels: it cannot even be fed to this decoder"
        )
    return latent.replace(format=vae.format)


def decode_images(vae: VAE, latent: Latent, *, relabel: bool = False, run: Run = Run()) -> torch.Tensor:
    """Decode ``latent`` with ``vae`` through :func:`latentbridge.codec.decode` (as ``run`` says: fp32 whole images
    by default).

    Args:
        vae: any decoder (full VAE, TAESD family incl. TAEF2, VAEApprox, VAElight).
        latent: raw or model space; the codec converts it to the decoder's native space.
        relabel: when the latent's format differs from the VAE's, read the tensor as if it were the VAE's
            format (same space) instead of refusing — what a mix-up does; used to *show* a wrong pairing.

    Returns:
        [B·T, 3, H·r, W·r] float32 in [0, 1] (``r = vae.output_ratio``), frames folded into the batch.
    """
    if relabel:
        latent = _relabel_for(latent, vae)
    return fold_frames(codec.decode(vae, latent, run))


def tiny_previewer(vae: VAE, run: Run = Run()) -> Previewer:
    """A previewer that runs a small decoder (TAESD family incl. TAEF2, VAEApprox) — or any VAE's decoder.

    The returned function maps a latent (raw or model space; converted to the decoder's native space) to
    [B·T, 3, H·r, W·r] float32 in [0, 1], ``r = vae.output_ratio`` (TAESD/TAEF2: 8, VAEApprox: 2), decoded as
    ``run`` says.
    """
    if vae.decode is None:
        raise LatentBridgeError(f"VAE {vae.name!r} has no decoder; pass a decoder file for --method tiny")

    def preview(latent: Latent) -> torch.Tensor:
        return decode_images(vae, latent, run=run)

    return preview


# --- choosing a method ----------------------------------------------------------------------------------


def choose_previewer(
    latent: Latent,
    method: str = "auto",
    *,
    vae: VAE | None = None,
    fits_dir: str | os.PathLike[str] | None = None,
    run: Run = Run(),
) -> tuple[Previewer, str]:
    """Pick the previewer for ``latent`` and say which one and why.

    ``auto``: with a ``vae``, its stored fit (:func:`fit_for_vae`) or else the VAE itself as a tiny decoder;
    without one, a stored fit for the latent (:func:`find_fit`: its provenance's VAE, then its format) or else the
    published factors. ``rgb``, ``fitted`` and ``tiny`` insist on that method and raise when it is unavailable.

    ``run``: how a tiny decoder runs (device, dtype, cancel).

    Returns:
        (previewer, a one-line description of the choice).
    """
    if method not in METHODS:
        raise ValueError(f"unknown preview method {method!r}: expected one of {', '.join(METHODS)}")
    folder = Path(fits_dir) if fits_dir is not None else None
    if method in ("auto", "fitted") and folder is not None:
        own = fit_for_vae(folder, vae.sha256) if vae is not None else None
        found = (own, f"fit for VAE {own.vae_name}") if own is not None else None
        if found is None and (vae is None or method == "fitted"):
            found = find_fit(latent, folder)
        if found is not None:
            return fitted_previewer(found[0]), f"fitted factors: {found[1]}"
    if method == "fitted":
        where = str(folder) if folder is not None else "(no fits folder given)"
        raise LatentBridgeError(
            f"no fitted preview factors for this latent (format {latent.format_name or 'unknown'}, "
            f"VAE {latent.provenance.vae_sha256[:12] or 'not recorded'}) in {where}; run "
            "`latentbridge fit-preview --vae FILE --images DIR` first, or use --method rgb"
        )
    if method == "tiny" or (method == "auto" and vae is not None):
        if vae is None:
            raise ValueError("--method tiny needs --vae FILE: a tiny decoder (TAESD family, TAEF2, VAEApprox)")
        return tiny_previewer(vae, run), f"decoder {vae.name} ({vae.architecture})"
    if method == "rgb" or (latent.format is not None and has_published_factors(latent.format)):
        fmt = latent.format
        why = f"published factors for {fmt.name} ({fmt.source('rgb')})" if fmt is not None else "published factors"
        return rgb_preview, why
    fmt_name = latent.format_name or "unknown"
    raise LatentBridgeError(
        f"no preview for this {fmt_name} latent: its format has no published factors, no fit is stored and no "
        "decoder was given; run `latentbridge fit-preview --vae FILE --images DIR` or pass --method tiny --vae FILE"
    )


# float16's largest finite value. No VAE's latents come near it (raw SD latents stay within about ±50, model-space
# ones within ±10), a reduced-precision decode overflows beyond it, and a preview of such values is a picture of
# nothing: a latent past it is refused, as decode refuses it (its check finds the spread absurd).
MAX_ABS_VALUE = 65504.0


def check_values(latent: Latent, where: str = "") -> None:
    """Refuse a latent whose values no preview can show truthfully: NaN/inf, or beyond ±:data:`MAX_ABS_VALUE`.

    ``where`` (the file) starts the message when given.

    Raises:
        NonFiniteError: NaN or inf values (counted). LatentBridgeError: finite values beyond ±65504.
    """
    x = latent.tensor.detach()
    at = f"{where}: " if where else ""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise NonFiniteError(
            f"{at}the latent holds {bad} NaN/inf values out of {x.numel()}; a preview of them is a blank or garbage "
            "picture, and decode refuses them too: regenerate the latent (re-encode in float32, or re-run the sampler)"
        )
    peak = float(x.abs().max()) if x.numel() else 0.0
    if peak > MAX_ABS_VALUE:
        raise LatentBridgeError(
            f"{at}the latent's values reach ±{peak:.3g}, beyond ±{MAX_ABS_VALUE:g} (float16's range): no VAE produces "
            "such values (raw latents stay within about ±50), so a preview would show nothing true and decode "
            "refuses it too; the file is damaged or was scaled wrongly: run `latentbridge check` on it"
        )


def preview(
    latent: Latent,
    method: str = "auto",
    *,
    vae: VAE | Any | None = None,
    fits_dir: str | os.PathLike[str] | None = None,
    run: Run = Run(),
) -> torch.Tensor:
    """A quick picture of ``latent``: [B·T, 3, H, W] float32 in [0, 1] (frames folded into the batch).

    Args:
        latent: a latent with a known format and space.
        method: "auto", "rgb" (published latent→RGB factors), "fitted" (factors from ``fits_dir``) or "tiny" (a
            small decoder given as ``vae``); see :func:`choose_previewer` for what "auto" picks.
        vae: a tiny decoder (TAESD family, TAEF2, VAEApprox) or any VAE, also a diffusers module.
        fits_dir: where fitted factors are stored (``latentbridge fit-preview``).
        run: how a decoder runs.

    Raises:
        NonFiniteError, LatentBridgeError: values no preview can show (:func:`check_values`).
    """
    check_values(latent)
    decoder = as_vae(vae) if vae is not None else None
    previewer, _ = choose_previewer(latent, method, vae=decoder, fits_dir=fits_dir, run=run)
    return previewer(latent)


# --- pictures -------------------------------------------------------------------------------------------


def to_pil(image: torch.Tensor) -> Image.Image:
    """[3, H, W] (or [1, 3, H, W]) float in [0, 1] -> 8-bit RGB PIL image (rounded)."""
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise ShapeError(f"to_pil takes one RGB image [3, H, W], got {tuple(image.shape)}")
    array = (image.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def image_grid(images: torch.Tensor, columns: int, *, upscale: int = 1, gap: int = 2) -> Image.Image:
    """Lay out [N, 3, H, W] images in [0, 1] row by row, ``columns`` per row, on a white background.

    ``upscale`` enlarges each image by nearest-neighbour (latent-resolution previews are small).
    """
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1:
        raise ShapeError(f"image_grid takes [N, 3, H, W] images, got {tuple(images.shape)}")
    if columns < 1 or upscale < 1 or gap < 0:
        raise ValueError(f"columns and upscale must be >= 1 and gap >= 0, got {columns}, {upscale}, {gap}")
    n, _, h, w = images.shape
    h, w = h * upscale, w * upscale
    columns = min(columns, n)
    rows = math.ceil(n / columns)
    canvas = Image.new("RGB", (columns * w + (columns - 1) * gap, rows * h + (rows - 1) * gap), (255, 255, 255))
    for i in range(n):
        tile = to_pil(images[i])
        if upscale > 1:
            tile = tile.resize((w, h), Image.Resampling.NEAREST)
        canvas.paste(tile, ((i % columns) * (w + gap), (i // columns) * (h + gap)))
    return canvas


def png_bytes(image: Image.Image) -> bytes:
    """Encode a PIL image as PNG bytes."""
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def write_png(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Write ``image`` as a PNG file atomically; returns the path."""
    return atomic_write(path, png_bytes(image), parents=True)


def preview_grid(images: torch.Tensor, frames: int = 1, *, upscale: int = 1) -> Image.Image:
    """The picture the CLI writes: images side by side; for video one row per item, one column per frame."""
    return image_grid(images, columns=frames if frames > 1 else images.shape[0], upscale=upscale)
