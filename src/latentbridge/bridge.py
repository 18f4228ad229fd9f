"""Learned bridges: map one VAE's latents straight to another's, without decoding to pixels.

Two converters are fitted from the same data — the same image crops encoded by both VAEs:

* a **linear map** (the baseline): one 1×1 convolution with bias, i.e. per-position channel mixing, solved in
  closed form by least squares;
* a **conv bridge**: that linear map plus a small residual convolutional network (3×3 convolutions, SiLU)
  whose output layer starts at zero, so training starts exactly at the linear baseline and can only move
  away from it where the validation loss improves.

Both work in each VAE's *native* space (what ``VAE.encode`` returns and ``VAE.decode`` takes; "raw" for KL
VAEs, "model" for TAESD-family decoders), normalised per channel with statistics of the training latents.
When the two VAEs have different spatial ratios (say 8× → 16×), the bridge pixel-unshuffles its input (or
pixel-shuffles its output) by the ratio between them; the ratios must divide one another.

A bridge file is safetensors: the tensors of both converters (``linear.*``, ``conv.*``) and one metadata
entry ``latentbridge.bridge`` holding JSON with both VAEs' names, sha256 and formats, their spaces, the
data size, validation scores of the linear map and the conv bridge, the architecture and the training
curve. Nothing in it is executed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from latentbridge import codec
from latentbridge._atomic import atomic_write
from latentbridge._guard import load_json
from latentbridge.errors import FileFormatError, IncompatibleError, LatentBridgeError, ShapeError
from latentbridge.latent import Latent, as_space
from latentbridge.models.bridgenet import BRIDGE_KINDS, BridgeConfig, BridgeKind, BridgeNet
from latentbridge.run import Run
from latentbridge.vae import VAE, VaeIdentity
from latentbridge.weights.hashes import same_autoencoder

__all__ = [
    "BRIDGE_KINDS",
    "BUILTIN_PREFIX",
    "FILE_VERSION",
    "FIT_TARGETS",
    "IMAGE_SUFFIXES",
    "META_KEY",
    "WEIGHTINGS",
    "Bridge",
    "BridgeConfig",
    "BridgeKind",
    "BridgeNet",
    "EpochLog",
    "FitEvent",
    "FitResult",
    "NamedImage",
    "TuneLog",
    "Views",
    "check_bridge_input",
    "check_bridge_tensor",
    "decoder_weights",
    "fit_bridge",
    "identity_from_record",
    "identity_record",
    "load_bridge",
    "load_images",
    "plot_curve",
    "random_views",
    "save_bridge",
    "solve_linear",
    "tune_through_decoder",
]

META_KEY = "latentbridge.bridge"
FILE_VERSION = 1
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
BUILTIN_PREFIX = "builtin:"
FIT_TARGETS: tuple[str, ...] = ("reencode", "image")
WEIGHTINGS: tuple[str, ...] = ("decoder", "uniform")


# --- identity of both ends ------------------------------------------------------------------------------


def identity_record(vae: VaeIdentity) -> dict[str, Any]:
    """How a bridge file records one of its VAEs (the keys bridge files have always used)."""
    return {
        "vae_name": vae.name,
        "vae_sha256": vae.sha256,
        "format": vae.format.name if vae.format is not None else "",
        "space": vae.native_space,
        "channels": vae.channels,
        "spatial_ratio": vae.spatial_ratio,
    }


def identity_from_record(record: Mapping[str, Any]) -> VaeIdentity:
    """The :class:`~latentbridge.vae.VaeIdentity` a bridge file's record names (inverse of :func:`identity_record`;
    the record does not hold the architecture, so it is "")."""
    from latentbridge.formats import get_format

    fmt = get_format(record["format"]) if record["format"] else None
    return VaeIdentity(
        str(record["vae_name"]),
        str(record["vae_sha256"]),
        "",
        fmt,
        as_space(str(record["space"]), unknown=False),  # type: ignore[arg-type]
        int(record["channels"]),
        int(record["spatial_ratio"]),
        fmt.dims if fmt is not None else 2,
    )


# --- the bridge value -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Bridge:
    """A fitted converter from one VAE's native latents to another's.

    Attributes:
        kind: "linear" (closed-form baseline) or "conv" (learned bridge).
        src: the VAE and space it reads.
        dst: the VAE and space it writes.
        net: the network (eval mode, float32, CPU).
        meta: everything recorded at fit time (data size, validation scores, curve), JSON-ready.
        sha256: content hash of the file it was loaded from ("" when fitted in memory).
        path: that file ("" when fitted in memory).
    """

    kind: str
    src: VaeIdentity
    dst: VaeIdentity
    net: BridgeNet
    meta: Mapping[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: str = ""

    @property
    def config(self) -> BridgeConfig:
        """The architecture."""
        return self.net.cfg

    @property
    def name(self) -> str:
        """'conv bridge zoo-a->zoo-b' for tables and provenance."""
        return f"{self.kind} bridge {self.src.name}->{self.dst.name}"

    def map(self, x: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Map source latents to target latents.

        Args:
            x: [N, C_src, h, w] source latents in ``src.space`` (native space of the source VAE).
            batch_size: latents per forward pass.

        Returns:
            float32 [N, C_dst, h·r_src/r_dst, w·r_src/r_dst] target latents in ``dst.space``.
        """
        check_bridge_tensor(x, self)
        with torch.no_grad():
            out = [self.net(chunk.float()) for chunk in x.split(max(1, batch_size))]
        return torch.cat(out)


def check_bridge_tensor(x: torch.Tensor, bridge: Bridge) -> None:
    """Raise IncompatibleError / ShapeError when ``x`` [N, C, h, w] cannot go through ``bridge``."""
    cfg = bridge.config
    if x.ndim != 4:
        raise ShapeError(
            f"a bridge maps image latents [N, C, h, w], got shape {tuple(x.shape)}; "
            "video latents go through latentbridge.transfers.transfer (frame by frame)"
        )
    if x.shape[1] != cfg.src_channels:
        raise IncompatibleError(
            f"this latent has {x.shape[1]} channels in {bridge.src.native_space} space but the bridge reads "
            f"{cfg.src_channels}-channel latents of {bridge.src.describe()}; use a bridge fitted from this "
            "latent's VAE (latentbridge fit-bridge --src-vae ...) or transfer with --method reencode"
        )
    k = cfg.unshuffle
    if k > 1 and (x.shape[2] % k or x.shape[3] % k):
        raise ShapeError(
            f"this bridge pixel-unshuffles by {k} ({cfg.src_ratio}× -> {cfg.dst_ratio}×), so the latent's height "
            f"and width must be multiples of {k}, got {x.shape[2]}×{x.shape[3]}; crop the latent to "
            f"{x.shape[2] - x.shape[2] % k}×{x.shape[3] - x.shape[3] % k}"
        )


def check_bridge_input(latent: Latent, bridge: Bridge) -> None:
    """Refuse a latent that does not belong to the bridge's source VAE.

    Checks, in order: the latent's format against the bridge's source format, the VAE hash recorded in the
    latent's provenance against the bridge's source hash (when both are known), and the channel count.

    Raises:
        IncompatibleError: with what was found, what the bridge expects, and the fix.
    """
    src = bridge.src
    fmt = latent.format_name
    if fmt and src.format is not None and fmt != src.format.name:
        raise IncompatibleError(
            f"this latent is a {fmt} latent but the bridge maps latents of {src.describe()} to "
            f"{bridge.dst.name}; use a bridge fitted from a {fmt} VAE "
            f"(latentbridge fit-bridge --src-vae <{fmt} VAE> ...) or transfer with --method reencode"
        )
    made_by = latent.provenance.vae_sha256
    if made_by and src.sha256 and not same_autoencoder(made_by, src.sha256):
        who = latent.provenance.vae_name or "another VAE"
        raise IncompatibleError(
            f"this latent was made by {who} (sha256 {made_by[:12]}) but the bridge was fitted on latents of "
            f"{src.describe()}; a bridge only holds for the exact VAE it was fitted on: fit one from "
            f"{who} (latentbridge fit-bridge --src-vae ...) or transfer with --method reencode"
        )
    channels = latent.dim("C")
    if latent.space == src.native_space and channels != src.channels:
        raise IncompatibleError(
            f"this latent has {channels} channels in {latent.space} space but the bridge reads {src.channels}-channel "
            f"latents of {src.describe()}; use a bridge fitted from this latent's VAE or --method reencode"
        )


# --- training data --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NamedImage:
    """A training image: its name and uint8 RGB pixels [H, W, 3]."""

    name: str
    pixels: np.ndarray


def load_images(spec: str | Path) -> tuple[NamedImage, ...]:
    """Images to fit a bridge on.

    Args:
        spec: a folder of PNG/JPEG files (read in name order, not recursively), or ``builtin:train`` /
            ``builtin:heldout`` for latentbridge's bundled photos (offline, no user files needed).

    Returns:
        The images, uint8 RGB [H, W, 3] each.
    """
    text = str(spec)
    if text.startswith(BUILTIN_PREFIX):
        from latentbridge import photos

        sets = {"train": photos.TRAIN_PHOTOS, "heldout": photos.HELDOUT_PHOTOS}
        which = text[len(BUILTIN_PREFIX) :]
        if which not in sets:
            raise LatentBridgeError(
                f"unknown built-in image set {text!r}: expected one of "
                f"{', '.join(BUILTIN_PREFIX + k for k in sets)}, or a folder of PNG/JPEG files"
            )
        return tuple(NamedImage(name, photos.load_photo(name)) for name in sets[which])
    folder = Path(text)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"--images {text!r} is not a folder: expected a folder of PNG/JPEG files or builtin:train"
        )
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LatentBridgeError(
            f"no PNG/JPEG files in {folder} (found {sum(1 for _ in folder.iterdir())} other entries); "
            "point --images at a folder of .png/.jpg images, or use builtin:train"
        )
    out = []
    for path in files:
        try:
            with Image.open(path) as image:
                out.append(NamedImage(path.name, np.asarray(image.convert("RGB"))))
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"cannot read image {path}: {exc}; remove it or replace it with a PNG/JPEG") from exc
    return tuple(out)


def random_views(image: np.ndarray, count: int, size: int, step: int, generator: torch.Generator) -> list[torch.Tensor]:
    """``count`` views of one image: resized, cropped and flipped at random, whole-image scale.

    View 0 has its short side at ``size`` and is not flipped; the others have it at a random size in
    [``size``, 1.5·``size``] and are flipped left-right with probability 1/2. The long side is cut to at most 1.5×
    the short side at a random position, and both sides to a multiple of ``step``.

    Args:
        image: uint8 RGB [H, W, 3].
        count: number of views.
        size: short side of the first view in pixels.
        step: both sides become multiples of this (the VAEs' spatial ratios).
        generator: seeded torch generator (reproducible data).

    Returns:
        ``count`` float32 tensors [1, 3, h, w] in [-1, 1] (sizes differ).
    """
    pil = Image.fromarray(image)
    h, w = image.shape[:2]
    out = []
    for i in range(count):
        u = torch.rand(4, generator=generator).tolist()
        short = size if i == 0 else size * (1 + 0.5 * u[0])
        scale = short / min(h, w)
        sw, sh = max(step, round(w * scale)), max(step, round(h * scale))
        scaled = pil if (sw, sh) == (w, h) else pil.resize((sw, sh), Image.Resampling.BICUBIC)
        cap = int(1.5 * (min(sw, sh) // step * step))
        cw, ch = min(sw, cap) // step * step, min(sh, cap) // step * step
        left, top = int(u[1] * (sw - cw + 1)), int(u[3] * (sh - ch + 1))
        view = np.asarray(scaled.crop((left, top, left + cw, top + ch)), dtype=np.float32)
        if i > 0 and u[2] < 0.5:  # flip
            view = view[:, ::-1]
        out.append(torch.from_numpy(view.copy()).permute(2, 0, 1)[None] / 127.5 - 1.0)
    return out


def _native_run(vae: VAE, run: Run, batch_size: int) -> Run:
    """The codec run for the bridge's own encodes/decodes: where the VAE lives, in its own dtype (no copy)."""
    return vae.own_run().replace(batch_size=batch_size, cancel=run.cancel)


def _encode_native(vae: VAE, images: torch.Tensor, batch_size: int, run: Run = Run()) -> torch.Tensor:
    """images [N, 3, H, W] in [-1, 1] -> native latents, float32 on the CPU, through the codec (NaN guard)."""
    if vae.encode is None:
        raise IncompatibleError(
            f"{vae.name} has no encoder (decoder-only file); fitting a bridge encodes the same images with both "
            "VAEs: pass a file that holds the encoder too"
        )
    return codec.encode_native(vae, images, _native_run(vae, run, batch_size)).cpu()


def _decode_native(vae: VAE | None, latents: torch.Tensor, batch_size: int, run: Run = Run()) -> torch.Tensor | None:
    """native latents -> images [N, 3, H, W] in [0, 1] (clamped) through the codec, or None without a decoder."""
    if vae is None or vae.decode is None:
        return None
    return codec.decode_native(vae, latents, _native_run(vae, run, batch_size)).cpu().clamp(-1, 1).add(1).div(2)


# --- fitting --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EpochLog:
    """One epoch of bridge training: the loss, normalised MSE weighted per channel (about 1.0 = predicting the
    per-channel mean; see ``fit_bridge``'s ``weighting``)."""

    epoch: int
    train_nmse: float
    val_nmse: float
    seconds: float


@dataclass(frozen=True, slots=True)
class FitEvent:
    """Progress of :func:`fit_bridge`, for a progress bar: a stage, how far it is, and the last epoch."""

    stage: str  # "encode" | "train" | "tune"
    done: int
    total: int
    epoch: EpochLog | None = None


@dataclass(frozen=True, slots=True, eq=False)
class FitResult:
    """Both fitted converters and what the fit measured.

    Attributes:
        linear: the closed-form per-pixel linear map (baseline).
        conv: the learned conv bridge (best validation epoch).
        curve: one EpochLog per epoch trained.
        scores: validation numbers: ``nmse_zero`` (predict the mean: 1 by construction), ``nmse_identity``
            (the source latent used as is; NaN when the shapes differ), ``nmse_linear``, ``nmse_conv`` and,
            when both VAEs decode, ``psnr_*``/``ssim_*`` of the target decode of each converter's output
            against the source decode of the source latent.
        stopped_early: True when patience ran out before ``epochs``.
    """

    linear: Bridge
    conv: Bridge
    curve: tuple[EpochLog, ...]
    scores: Mapping[str, float]
    stopped_early: bool


def solve_linear(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares per-pixel linear map with bias, in closed form.

    Solves ``min ||x W^T + b - y||²`` over all positions via the normal equations in float64, with a tiny
    ridge (``ridge`` × mean diagonal) so that constant input channels do not make it singular.

    Args:
        x: [N, C_in, h, w] inputs.
        y: [N, C_out, h, w] targets, same N, h, w.

    Returns:
        (weight [C_out, C_in], bias [C_out]), float32.
    """
    xs = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    ys = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])
    return _solve_flat(xs, ys, ridge)


def _solve_flat(xs: torch.Tensor, ys: torch.Tensor, ridge: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`solve_linear` on flattened positions: xs [P, C_in], ys [P, C_out]."""
    design = torch.cat([xs.double(), torch.ones(len(xs), 1, dtype=torch.float64)], 1)
    gram = design.T @ design
    gram += torch.eye(len(gram), dtype=torch.float64) * ridge * gram.diagonal().mean()
    sol = torch.linalg.solve(gram, design.T @ ys.double())  # [C_in + 1, C_out]
    return sol[:-1].T.float().contiguous(), sol[-1].float().contiguous()


Views = list[torch.Tensor]  # latents of whole-image views, [1, C, h, w] each (sizes differ)


def _channel_stats(views: Views) -> tuple[torch.Tensor, torch.Tensor]:
    flat = torch.cat([v.flatten(2)[0] for v in views], 1).double()  # [C, positions]
    return flat.mean(1).float(), flat.std(1).clamp_min(1e-6).float()


def _nmse(net: BridgeNet, xs: Views, ys_norm: Views, weights: torch.Tensor | None = None) -> float:
    """Normalised MSE of ``net`` over whole views (what inference on whole images sees), optionally weighted
    per target channel (``weights`` [C_dst] with mean 1)."""
    w = 1.0 if weights is None else weights.view(1, -1, 1, 1)
    with torch.no_grad():
        err = sum(((net.normalised(x) - y).pow(2) * w).sum().item() for x, y in zip(xs, ys_norm, strict=True))
    return err / sum(y.numel() for y in ys_norm)


def decoder_weights(vae: VAE, latent: torch.Tensor, std: torch.Tensor, eps: float = 0.05) -> torch.Tensor | None:
    """How much each latent channel moves the decoded image: a per-channel weight for the bridge loss.

    For each channel c, a random ±``eps``·std[c] change of channel c alone is decoded and the pixel MSE it
    causes is divided by the latent MSE (finite differences: the decoder's squared gain per normalised unit,
    channel by channel). Normalised to mean 1 and clipped to [0.05, 20] so no channel is ignored outright.

    Args:
        vae: the target VAE (its decoder).
        latent: [1, C, h, w] native latents to probe around (a small window keeps this cheap).
        std: [C] per-channel standard deviation of the target latents (the normalisation unit).
        eps: change size in normalised units (small: the linear regime of the decoder).

    Returns:
        float32 [C] weights with mean 1, or None when the VAE has no decoder.
    """
    base = _decode_native(vae, latent, 1)
    if base is None:
        return None
    gen = torch.Generator().manual_seed(0)
    gains = []
    for c in range(latent.shape[1]):
        probe = latent.clone()
        probe[:, c] += eps * std[c] * (torch.randint(0, 2, latent[:, c].shape, generator=gen) * 2 - 1)
        moved = _decode_native(vae, probe, 1)
        gains.append(float((moved - base).pow(2).mean()) / eps**2)  # type: ignore[operator]
    w = torch.tensor(gains, dtype=torch.float64)
    w = w / w.mean().clamp_min(1e-12)
    return w.clamp(0.05, 20.0).div(w.clamp(0.05, 20.0).mean()).float()


def _split(n_images: int, val_split: float, generator: torch.Generator) -> tuple[list[int], list[int], str]:
    """(train image indices, val image indices, "image"), or ([0], [0], "view") for a single image."""
    if not 0.0 < val_split < 1.0:
        raise ValueError(
            f"val_split must be between 0 and 1 (exclusive), got {val_split}: early stopping needs validation data"
        )
    if n_images < 2:
        return [0], [0], "view"
    order = torch.randperm(n_images, generator=generator).tolist()
    n_val = min(n_images - 1, max(1, round(val_split * n_images)))
    return sorted(order[n_val:]), sorted(order[:n_val]), "image"


@dataclass(frozen=True, slots=True)
class _Windows:
    """Aligned random windows of source/target latent pairs (same pixels on both sides)."""

    xs: Views
    ys: Views
    crop: int  # window side in pixels
    src_ratio: int
    dst_ratio: int
    step: int  # window offsets are multiples of this many pixels (the coarser ratio)

    def picks(self, count: int, generator: torch.Generator) -> list[tuple[int, int, int]]:
        """``count`` random windows as (view, top px, left px), views weighted by area."""
        areas = torch.tensor([float(x.shape[-1] * x.shape[-2]) for x in self.xs])
        views = torch.multinomial(areas, count, replacement=True, generator=generator).tolist()
        out = []
        for v in views:
            x = self.xs[v]
            rows = (x.shape[-2] * self.src_ratio - self.crop) // self.step + 1
            cols = (x.shape[-1] * self.src_ratio - self.crop) // self.step + 1
            oy = int(torch.randint(rows, (1,), generator=generator)) * self.step
            ox = int(torch.randint(cols, (1,), generator=generator)) * self.step
            out.append((v, oy, ox))
        return out

    def sample(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        ws, wd = self.crop // self.src_ratio, self.crop // self.dst_ratio
        bx, by = [], []
        for v, oy, ox in self.picks(count, generator):
            sy, sx, dy, dx = oy // self.src_ratio, ox // self.src_ratio, oy // self.dst_ratio, ox // self.dst_ratio
            bx.append(self.xs[v][0, :, sy : sy + ws, sx : sx + ws])
            by.append(self.ys[v][0, :, dy : dy + wd, dx : dx + wd])
        return torch.stack(bx), torch.stack(by)

    def sample_pixels(self, count: int, generator: torch.Generator, pixels: Views) -> tuple[torch.Tensor, torch.Tensor]:
        """Source latent windows and the same windows of ``pixels`` (one image [1, 3, H, W] per view)."""
        ws = self.crop // self.src_ratio
        bx, bp = [], []
        for v, oy, ox in self.picks(count, generator):
            sy, sx = oy // self.src_ratio, ox // self.src_ratio
            bx.append(self.xs[v][0, :, sy : sy + ws, sx : sx + ws])
            bp.append(pixels[v][0, :, oy : oy + self.crop, ox : ox + self.crop])
        return torch.stack(bx), torch.stack(bp)


def fit_bridge(
    src_vae: VAE,
    dst_vae: VAE,
    images: str | Path | Sequence[NamedImage] = "builtin:train",
    *,
    epochs: int = 200,
    val_split: float = 0.2,
    patience: int = 15,
    view_size: int = 256,
    views_per_image: int = 2,
    crop: int = 128,
    windows_per_view: int = 8,
    hidden: int = 64,
    blocks: int = 2,
    lr: float = 2e-3,
    batch_size: int = 16,
    seed: int = 0,
    target: str = "reencode",
    weighting: str = "decoder",
    max_seconds: float | None = None,
    tune_seconds: float = 0.0,
    tune_steps: int = 0,
    on_event: Callable[[FitEvent], None] | None = None,
    run: Run = Run(),
) -> FitResult:
    """Fit a linear map and a conv bridge from ``src_vae``'s latents to ``dst_vae``'s.

    Data: each image gives ``views_per_image`` whole-image views (short side ``view_size`` px for the first,
    up to 1.5× that for the others, random position, the others flipped left-right at random), and each view
    is encoded by both VAEs (posterior means, native spaces). With ``target="reencode"`` (the default) the
    target VAE encodes the source VAE's *decode* of the view, so the bridge learns exactly what decode→re-encode
    does to a latent (the transfer it replaces); with ``target="image"`` it encodes the view itself, so the
    bridge learns what the target VAE would have made of the original picture.

    Training: the closed-form linear map is solved over every position of every training view. The conv bridge
    trains with Adam on the normalised MSE of aligned random ``crop``-pixel windows of the views
    (``windows_per_view`` per view and epoch; the cells whose receptive field reaches the window's zero padding
    are left out of the loss), validates on whole held-out views — as inference sees whole images — stops when
    the validation loss has not improved for ``patience`` epochs (or after ``max_seconds``), and keeps its best
    validation epoch. Whole images are held out for validation (``val_split`` of them, at least one); a single
    image is split by views instead.

    Args:
        src_vae, dst_vae: loaded VAEs with encoders (decoders: the source's for ``target="reencode"``, both for
            the validation PSNR/SSIM).
        images: a folder of PNG/JPEG files, ``builtin:train``, or images from :func:`load_images`.
        epochs, val_split, patience: training length, validation fraction, early-stopping patience (epochs).
        view_size, views_per_image: short side in pixels and count of the views of each image.
        crop, windows_per_view: training window side in pixels (a multiple of both VAEs' spatial ratios, at most
            ``view_size``) and windows per view and epoch.
        hidden, blocks: width and residual blocks of the conv body.
        lr, batch_size, seed: optimiser step size, windows per step, seed of data and initialisation.
        target: "reencode" or "image": what the target latents are (see above).
        weighting: "decoder" (default) weights each target channel's error by how much it moves the target
            decode (:func:`decoder_weights`; uniform when the target VAE has no decoder), "uniform" does not.
        max_seconds: optional wall-clock cap on the whole fit, encoding included: training stops at the first
            step past it, after a last validation (the first epoch always completes; the best epoch is kept).
        tune_seconds: after the latent-space training, fine-tune the conv bridge for this long on what the
            transfer is judged by: the target decode of its output against the source decode, through the frozen
            target decoder (a torch network; see :func:`tune_through_decoder`). 0 (default) skips it; it is not
            counted in ``max_seconds``.
        tune_steps: a step budget for that tuning instead of (or with) ``tune_seconds``: it stops at whichever
            comes first (0: no step budget). Steps make the result independent of the machine's speed.
        on_event: called with progress (encoding, then once per epoch, then "tune" steps).
        run: where the VAEs encode and decode the views (device, batching) and the cancel token, checked
            before every training and tuning step.

    Returns:
        A FitResult with both bridges, the validation curve and the scores.
    """
    fit_start = time.perf_counter()
    counts = (epochs, patience, views_per_image, windows_per_view, batch_size)
    if min(counts) < 1:
        raise ValueError(
            "epochs, patience, views_per_image, windows_per_view and batch_size must be positive, got "
            + ", ".join(map(str, counts))
        )
    if target not in FIT_TARGETS:
        raise ValueError(f"target must be one of {FIT_TARGETS}, got {target!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    src, dst = src_vae.identity, dst_vae.identity
    base = BridgeConfig(src.channels, dst.channels, src.spatial_ratio, dst.spatial_ratio, hidden, blocks, "conv")
    step = max(src.spatial_ratio, dst.spatial_ratio)
    if crop < step or crop % step:
        lo, hi = max(step, crop - crop % step), crop + (-crop) % step
        raise ShapeError(
            f"crop must be a multiple of {step} px (both VAEs' spatial ratios), got {crop}; use {lo} or {hi}"
        )
    if view_size < crop:
        raise ShapeError(f"view_size ({view_size} px) must be at least the training crop ({crop} px)")
    named = load_images(images) if isinstance(images, (str, Path)) else tuple(images)
    if not named:
        raise LatentBridgeError("fit_bridge got no images; pass a folder of PNG/JPEG files or builtin:train")
    gen = torch.Generator().manual_seed(seed)
    train_idx, val_idx, split_by = _split(len(named), val_split, gen)
    if split_by == "view" and views_per_image < 2:
        raise ValueError("with a single image, views_per_image must be at least 2 (one view is held out)")

    # Encode the same views with both VAEs.
    xs: list[Views] = []
    ys: list[Views] = []
    total, done = len(named) * views_per_image, 0
    for img in named:
        xs.append([])
        ys.append([])
        for view in random_views(img.pixels, views_per_image, view_size, step, gen):
            xs[-1].append(_encode_native(src_vae, view, 1))
            if target == "reencode":
                decoded = _decode_native(src_vae, xs[-1][-1], 1)
                if decoded is None:
                    raise IncompatibleError(
                        f"{src_vae.name} has no decoder, so target='reencode' cannot decode its latents; pass a "
                        "file with the decoder too, or fit with target='image'"
                    )
                view = decoded * 2 - 1
            ys[-1].append(_encode_native(dst_vae, view, 1))
            done += 1
            if on_event is not None:
                on_event(FitEvent("encode", done, total))
    if split_by == "image":
        x_tr, y_tr = [v for i in train_idx for v in xs[i]], [v for i in train_idx for v in ys[i]]
        x_va, y_va = [v for i in val_idx for v in xs[i]], [v for i in val_idx for v in ys[i]]
    else:
        x_tr, y_tr, x_va, y_va = xs[0][1:], ys[0][1:], xs[0][:1], ys[0][:1]

    # Normalisation statistics and the closed-form linear map (in normalised units).
    src_mean, src_std = _channel_stats(x_tr)
    dst_mean, dst_std = _channel_stats(y_tr)

    def prepared(cfg: BridgeConfig) -> BridgeNet:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = BridgeNet(cfg)
        net.src_mean.copy_(src_mean)
        net.src_std.copy_(src_std)
        net.dst_mean.copy_(dst_mean)
        net.dst_std.copy_(dst_std)
        return net

    def dst_norm(views: Views) -> Views:
        return [(y - dst_mean.view(1, -1, 1, 1)) / dst_std.view(1, -1, 1, 1) for y in views]

    def features(x: torch.Tensor) -> torch.Tensor:
        x = (x - src_mean.view(1, -1, 1, 1)) / src_std.view(1, -1, 1, 1)
        return F.pixel_unshuffle(x, base.unshuffle) if base.unshuffle > 1 else x

    def goal(y: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(y, base.shuffle) if base.shuffle > 1 else y

    y_tr_n, y_va_n = dst_norm(y_tr), dst_norm(y_va)
    weights, weights_note = None, "uniform"
    if weighting == "decoder":
        cells = max(1, 64 // dst.spatial_ratio)  # probe a 64-px window: cheap, and enough texture
        weights = decoder_weights(dst_vae, y_tr[0][..., :cells, :cells], dst_std)
        weights_note = "decoder gain per channel" if weights is not None else "uniform (the target has no decoder)"
    linear_net = prepared(dataclasses.replace(base, blocks=0, kind="linear"))
    design = torch.cat([features(x).flatten(2)[0].T for x in x_tr])
    wanted = torch.cat([goal(y).flatten(2)[0].T for y in y_tr_n])
    weight, bias = _solve_flat(design, wanted)
    with torch.no_grad():
        linear_net.linear.weight.copy_(weight[:, :, None, None])
        cast(torch.Tensor, linear_net.linear.bias).copy_(bias)  # Conv2d(..., bias=True) always has one
    linear_net.eval()

    # The conv bridge: the linear map plus a residual body that starts at zero, trained on random windows.
    net = prepared(base)
    net.linear.load_state_dict(linear_net.linear.state_dict())
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    windows = _Windows(x_tr, y_tr_n, crop, src.spatial_ratio, dst.spatial_ratio, step)
    reach = 1 + 2 * blocks  # receptive-field radius of the body, in cells of its grid
    margin = min(math.ceil(reach * base.body_ratio / dst.spatial_ratio), (crop // dst.spatial_ratio) // 4)
    steps = math.ceil(windows_per_view * len(x_tr) / batch_size)
    best_val, since_best, curve = _nmse(net, x_va, y_va_n, weights), 0, []
    w4 = 1.0 if weights is None else weights.view(1, -1, 1, 1)
    best_state = {k: v.clone() for k, v in net.state_dict().items()}
    start, stopped_early = time.perf_counter(), False

    def out_of_time() -> bool:
        return max_seconds is not None and time.perf_counter() - fit_start > max_seconds

    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        net.train()
        loss_sum, done_steps = 0.0, 0
        for _ in range(steps):
            if done_steps and epoch > 1 and out_of_time():  # the cap may cut the last epoch short
                break
            done_steps += 1
            bx, by = windows.sample(batch_size, gen)
            err = (net.normalised(bx) - by).pow(2) * w4
            if margin:
                err = err[..., margin:-margin, margin:-margin]
            loss = err.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
        net.eval()
        val = _nmse(net, x_va, y_va_n, weights)
        log = EpochLog(epoch, loss_sum / done_steps, val, time.perf_counter() - t0)
        curve.append(log)
        if on_event is not None:
            on_event(FitEvent("train", epoch, epochs, log))
        if val < best_val:
            best_val, since_best = val, 0
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        else:
            since_best += 1
        if since_best >= patience or out_of_time():
            stopped_early = epoch < epochs
            break
    net.load_state_dict(best_state)
    net.eval()
    tuned: TuneLog | None = None
    if tune_seconds > 0 or tune_steps > 0:
        tuned = tune_through_decoder(
            net,
            src_vae,
            dst_vae,
            windows,
            x_va,
            tune_seconds or None,
            steps=tune_steps or None,
            lr=lr / 5,
            seed=seed,
            on_event=on_event,
            run=run,
        )

    same_shape = all(x.shape == y.shape for x, y in zip(x_va, y_va, strict=True))
    identity = [(x - dst_mean.view(1, -1, 1, 1)) / dst_std.view(1, -1, 1, 1) for x in x_va] if same_shape else []
    scores: dict[str, float] = {
        "nmse_zero": sum(y.pow(2).sum().item() for y in y_va_n) / sum(y.numel() for y in y_va_n),
        "nmse_identity": (
            sum((a - b).pow(2).sum().item() for a, b in zip(identity, y_va_n, strict=True))
            / sum(y.numel() for y in y_va_n)
            if same_shape
            else math.nan
        ),
        "nmse_linear": _nmse(linear_net, x_va, y_va_n),
        "nmse_conv": _nmse(net, x_va, y_va_n),
    }
    if weights is not None:
        scores["wnmse_zero"] = sum((y.pow(2) * w4).sum().item() for y in y_va_n) / sum(y.numel() for y in y_va_n)
        scores["wnmse_linear"] = _nmse(linear_net, x_va, y_va_n, weights)
        scores["wnmse_conv"] = _nmse(net, x_va, y_va_n, weights)
    scores.update(_decoded_scores(src_vae, dst_vae, x_va, {"linear": linear_net, "conv": net}))
    meta = {
        "version": FILE_VERSION,
        "src": identity_record(src),
        "dst": identity_record(dst),
        "spaces": {"src": src.native_space, "dst": dst.native_space},
        "data": {
            "images": len(named),
            "image_names": [img.name for img in named][:64],
            "views_per_image": views_per_image,
            "view_size_px": view_size,
            "train_views": len(x_tr),
            "val_views": len(x_va),
            "train_positions": int(sum(x.shape[-1] * x.shape[-2] for x in x_tr)),
            "crop_px": crop,
            "windows_per_view": windows_per_view,
            "val_split": val_split,
            "val_split_by": split_by,
            "seed": seed,
            "target": target,
        },
        "training": {
            "epochs_run": len(curve),
            "best_epoch": min(curve, key=lambda e: e.val_nmse).epoch if curve else 0,
            "stopped_early": stopped_early,
            "seconds": round(time.perf_counter() - start, 2),
            "fit_seconds": round(time.perf_counter() - fit_start, 2),
            "lr": lr,
            "batch_size": batch_size,
            "patience": patience,
            "loss_margin_cells": margin,
            "loss": "MSE of per-channel normalised target latents (1.0 = predicting the mean), each channel "
            "weighted by " + weights_note,
            "channel_weights": None if weights is None else [round(float(v), 4) for v in weights],
        },
        "tune": None if tuned is None else dataclasses.asdict(tuned),
        "scores": {k: (None if math.isnan(v) else round(v, 6)) for k, v in scores.items()},
        "curve": [[e.epoch, round(e.train_nmse, 6), round(e.val_nmse, 6)] for e in curve],
    }
    return FitResult(
        linear=Bridge("linear", src, dst, linear_net, meta),
        conv=Bridge("conv", src, dst, net, meta),
        curve=tuple(curve),
        scores=scores,
        stopped_early=stopped_early,
    )


@dataclass(frozen=True, slots=True)
class TuneLog:
    """What decoder-loss tuning did: steps and seconds run, validation PSNR (dB, target decode of the bridge's
    output vs source decode, held-out views) before and after (the best validated state is kept)."""

    steps: int
    seconds: float
    psnr_before: float
    psnr_after: float


def tune_through_decoder(
    net: BridgeNet,
    src_vae: VAE,
    dst_vae: VAE,
    windows: _Windows,
    x_va: Views,
    seconds: float | None = None,
    *,
    steps: int | None = None,
    lr: float = 4e-4,
    batch_size: int = 8,
    validate_every: int = 25,
    seed: int = 0,
    on_event: Callable[[FitEvent], None] | None = None,
    run: Run = Run(),
) -> TuneLog:
    """Fine-tune ``net`` in place so that ``dst_vae.decode(net(z))`` matches ``src_vae.decode(z)`` in pixels.

    The latent-space loss weighs every target channel alike near the optimum, but the target decoder amplifies
    some directions far more than others; this stage trains on the pixel MSE itself, through the frozen target
    decoder, on random windows of the training views against the same windows of the source decode of the
    whole view (computed once; a 1/8-window margin is left out of the loss: the target decode of a window
    differs from a whole-image decode near its edges). The held-out views are scored every
    ``validate_every`` steps and the best state (the start included) is kept, so it never makes the bridge worse
    on them.

    Args:
        net: the conv bridge (native source latents -> native target latents), trained in latent space.
        src_vae: source VAE (its decoder makes the pixel targets; any implementation).
        dst_vae: target VAE whose decoder is a torch network (gradients flow through it; weights stay frozen).
        windows: aligned training windows (their source latents are used).
        x_va: held-out source views [1, C, h, w] for validation.
        seconds: wall-clock budget (None: none).
        steps: step budget (None: none); tuning stops at the first budget reached, and needs at least one.
        lr, batch_size, validate_every, seed: Adam step size, windows per step, validation interval, data seed.
        on_event: called with FitEvent("tune", step, 0) after each validation.
        run: its cancel token is checked before every step.

    Returns:
        A TuneLog.

    Raises:
        IncompatibleError: a VAE without decoder, or a target decoder that is not a torch network (ONNX).
    """
    if src_vae.decode is None or dst_vae.decode is None:
        raise IncompatibleError(
            "tuning through the decoder needs both decoders (the source's makes the targets, the target's is "
            "trained through); pass files that hold them, or fit without --tune-seconds"
        )
    if not isinstance(dst_vae.module, nn.Module):
        raise IncompatibleError(
            f"{dst_vae.name} ({dst_vae.architecture}) is not a torch network (an ONNX model has no gradients), so "
            "the bridge cannot be tuned through its decoder; fit without --tune-seconds"
        )
    if seconds is None and steps is None:
        raise ValueError("tuning needs a budget: pass seconds=, steps= or both (--tune-seconds / --tune-steps)")
    gen = torch.Generator().manual_seed(seed + 1)

    def score() -> float:
        net.eval()
        return _decoded_scores(src_vae, dst_vae, x_va, {"conv": net}).get("psnr_conv", math.nan)

    start = time.perf_counter()
    best = before = score()
    best_state = {k: v.clone() for k, v in net.state_dict().items()}
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    done = 0
    with torch.no_grad():  # the source decodes of the whole training views, once (the pixel targets)
        pixels = [src_vae.decode(x).float().clamp(-1, 1) for x in windows.xs]
    for x, px in zip(windows.xs, pixels, strict=True):
        if px.shape[-2:] != (x.shape[-2] * windows.src_ratio, x.shape[-1] * windows.src_ratio):
            raise IncompatibleError(
                f"{src_vae.name} decodes a {tuple(x.shape[-2:])}-cell latent to {tuple(px.shape[-2:])} px, not "
                f"{windows.src_ratio}× its size; the bridge cannot be tuned on its decodes: fit without --tune-seconds"
            )
    params = list(net.parameters())
    # gradients go into the bridge only: the target decoder (possibly shared) is never written to
    while (seconds is None or time.perf_counter() - start < seconds) and (steps is None or done < steps):
        run.check_cancelled("tuning the bridge through the decoder")
        net.train()
        bx, ref = windows.sample_pixels(batch_size, gen, pixels)
        out = dst_vae.decode(net(bx)).float()
        if out.shape != ref.shape:
            raise IncompatibleError(
                f"the target decoder gives {tuple(out.shape)} for a window the source decodes to "
                f"{tuple(ref.shape)}; these VAEs cannot be compared pixel for pixel: fit without --tune-seconds"
            )
        m = max(1, out.shape[-1] // 8)
        loss = (out - ref)[..., m:-m, m:-m].pow(2).mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        opt.step()
        done += 1
        if done % validate_every == 0:
            now = score()
            if now > best:
                best, best_state = now, {k: v.clone() for k, v in net.state_dict().items()}
            if on_event is not None:
                on_event(FitEvent("tune", done, steps or 0))
    now = score()
    if now > best:
        best, best_state = now, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(best_state)
    net.eval()
    return TuneLog(done, round(time.perf_counter() - start, 2), round(before, 3), round(best, 3))


def _decoded_scores(src_vae: VAE, dst_vae: VAE, x_va: Views, nets: Mapping[str, BridgeNet]) -> dict[str, float]:
    """Mean PSNR/SSIM of the target decode of each converter's output against the source decode (≤ 4 views)."""
    from latentbridge.metrics import fidelity

    if src_vae.decode is None or dst_vae.decode is None:
        return {}
    sums: dict[str, float] = {}
    views = x_va[:4]
    for x in views:
        reference = _decode_native(src_vae, x, 1)
        for kind, net in nets.items():
            with torch.no_grad():
                decoded = _decode_native(dst_vae, net(x), 1)
            if decoded is None or reference is None or decoded.shape != reference.shape:
                return {}
            fid = fidelity(decoded, reference)
            sums[f"psnr_{kind}"] = sums.get(f"psnr_{kind}", 0.0) + fid.psnr / len(views)
            sums[f"ssim_{kind}"] = sums.get(f"ssim_{kind}", 0.0) + fid.ssim / len(views)
    return sums


# --- files ----------------------------------------------------------------------------------------------


def save_bridge(result: FitResult, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write both converters and their metadata to one safetensors file, atomically.

    Returns:
        The path written.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass overwrite=True (--overwrite) or choose another -o path")
    tensors = {f"linear.{k}": v.detach().contiguous() for k, v in result.linear.net.state_dict().items()}
    tensors.update({f"conv.{k}": v.detach().contiguous() for k, v in result.conv.net.state_dict().items()})
    meta = dict(result.conv.meta)
    meta["configs"] = {"linear": result.linear.config.to_dict(), "conv": result.conv.config.to_dict()}
    atomic_write(path, save(tensors, metadata={META_KEY: json.dumps(meta, sort_keys=True)}), parents=True)
    return path


def load_bridge(path: str | Path, kind: str = "conv") -> Bridge:
    """Load one converter ("conv" or "linear") from a bridge file written by :func:`save_bridge`.

    Raises:
        FileFormatError: not a bridge file, or its tensors do not match its recorded architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    if kind not in BRIDGE_KINDS:
        raise ValueError(f"bridge kind must be one of {BRIDGE_KINDS}, got {kind!r}")
    from latentbridge.files import read_safetensors_header

    path = Path(path)
    try:
        _, file_meta = read_safetensors_header(path)  # a regular file whose header fields are all checked
    except FileFormatError as exc:
        raise FileFormatError(f"{exc}; expected a bridge from fit-bridge") from exc
    data = path.read_bytes()
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as exc:
        raise FileFormatError(f"{path} is not a safetensors file ({exc}); expected a bridge from fit-bridge") from exc
    raw_meta = file_meta.get(META_KEY)
    if raw_meta is None:
        raise FileFormatError(
            f"{path} is a safetensors file without {META_KEY!r} metadata, so it is not a latentbridge bridge; "
            "fit one with `latentbridge fit-bridge`"
        )
    meta = load_json(raw_meta, str(path), "unreadable bridge metadata", "refit it with `latentbridge fit-bridge`")
    if not isinstance(meta, dict):
        raise FileFormatError(
            f"{path}: its {META_KEY} metadata is not a JSON object; refit it with `latentbridge fit-bridge`"
        )
    try:
        if meta.get("version") != FILE_VERSION:
            raise FileFormatError(
                f"{path} is a bridge file of version {meta.get('version')!r}; this latentbridge reads version "
                f"{FILE_VERSION}: refit it with `latentbridge fit-bridge`"
            )
        _check_records(path, meta["src"], meta["dst"])
        src, dst = identity_from_record(meta["src"]), identity_from_record(meta["dst"])
        cfg = BridgeConfig(**meta["configs"][kind])
    except (KeyError, TypeError, ValueError) as exc:  # a field missing, of the wrong type or out of range
        raise FileFormatError(
            f"{path} has unreadable bridge metadata ({type(exc).__name__}: {exc}); "
            "refit it with `latentbridge fit-bridge`"
        ) from exc
    _check_config(path, cfg)
    with torch.device("meta"):  # the recorded architecture is built for real only once the file's tensors fit it
        want = BridgeNet(cfg).state_dict()
    prefix = f"{kind}."
    state = {k[len(prefix) :]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
    missing, unexpected = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    bad_shapes = sorted(k for k in set(want) & set(state) if want[k].shape != state[k].shape)
    if missing or unexpected or bad_shapes:
        raise FileFormatError(
            f"{path}: the {kind} bridge tensors do not match its recorded architecture {cfg.to_dict()}: "
            f"missing {missing}, unexpected {unexpected}, wrong shapes {bad_shapes}; the file is damaged: refit it"
        )
    net = BridgeNet(cfg)
    net.load_state_dict(state)
    net.eval()
    return Bridge(kind, src, dst, net, meta, hashlib.sha256(data).hexdigest(), str(path))


# Channels, ratios, width and depth a bridge file may record: far above any fit-bridge makes (hidden 64, 2 blocks,
# at most 128 channels and 32× ratios), low enough that the recorded architecture can always be built to compare.
MAX_BRIDGE_FIELD = 65_536


# The fields of a bridge file's VAE record (see identity_record) and the type each holds.
RECORD_FIELDS: tuple[tuple[str, type], ...] = (
    ("vae_name", str),
    ("vae_sha256", str),
    ("format", str),
    ("space", str),
    ("channels", int),
    ("spatial_ratio", int),
)


def _bad_field(path: Path, name: str, value: object, kind: type) -> FileFormatError:
    names: dict[type, str] = {str: "a string", dict: "a JSON object"}
    expected = names.get(kind, f"an integer from 0 to {MAX_BRIDGE_FIELD}")
    return FileFormatError(
        f"{path} has unreadable bridge metadata: {name} is {str(value)[:40]!r}, expected {expected}; "
        "refit it with `latentbridge fit-bridge`"
    )


def _field_ok(value: object, kind: type) -> bool:
    if kind is str:
        return isinstance(value, str)
    return type(value) is int and 0 <= value <= MAX_BRIDGE_FIELD


def _check_records(path: Path, *records: object) -> None:
    """The two recorded VAEs (src, dst) are objects whose fields hold the types :func:`identity_record` writes."""
    for side, record in zip(("src", "dst"), records, strict=True):
        if not isinstance(record, dict):
            raise _bad_field(path, side, record, dict)
        for name, kind in RECORD_FIELDS:
            if not _field_ok(record[name], kind):
                raise _bad_field(path, f"{side}.{name}", record[name], kind)


def _check_config(path: Path, cfg: BridgeConfig) -> None:
    """The recorded architecture holds values of the types its dataclass declares, in a range it can be built at."""
    for f in dataclasses.fields(cfg):
        kind = str if f.type == "str" else int
        if not _field_ok(getattr(cfg, f.name), kind):
            raise _bad_field(path, f"configs.{f.name}", getattr(cfg, f.name), kind)


# --- the validation curve -------------------------------------------------------------------------------


def plot_curve(result: FitResult, path: str | Path) -> Path:
    """Save the validation curve (train/val normalised MSE per epoch, linear baseline) as a PNG, atomically."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    epochs = [e.epoch for e in result.curve]
    ax.plot(epochs, [e.train_nmse for e in result.curve], label="train (conv)")
    ax.plot(epochs, [e.val_nmse for e in result.curve], label="validation (conv)")
    linear = result.scores.get("wnmse_linear", result.scores["nmse_linear"])
    ax.axhline(linear, color="grey", linestyle="--", label="validation (linear map)")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("weighted normalised MSE")
    ax.set_title(f"bridge {result.conv.src.name} -> {result.conv.dst.name}")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path = Path(path)
    atomic_write(path, buf.getvalue(), parents=True)
    return path
