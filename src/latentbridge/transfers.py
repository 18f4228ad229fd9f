"""Move latents from one VAE family to another: decode→re-encode, or a learned bridge, with measured fidelity.

Every transfer method has one signature, ``Latent -> Latent``::

    transfer(latent, src_vae, dst_vae, method="reencode")   # decode with src_vae, encode with dst_vae
    transfer(latent, src_vae, dst_vae, method=bridge)       # a Bridge from latentbridge.bridge.load_bridge

The output is in ``dst_vae``'s format, in the space the input was in (or the ``space`` asked for), and its
provenance names both VAEs (name + sha256), the method and, for bridges, the bridge file's sha256; the step is
appended to the history. Image latents, batches and video latents go through (video frame by frame for image
VAEs; a 3-D VAE decodes and encodes the whole clip). :func:`transfer_dir` does a folder, resumably.

:func:`fidelity_report` measures each method: PSNR/SSIM of the target decode of the transferred latent against
the source decode of the original, time per latent, and — when the original image is known — the best
achievable (the original image encoded by ``dst_vae`` directly).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latentbridge import codec
from latentbridge._atomic import atomic_write
from latentbridge.bridge import Bridge, check_bridge_input
from latentbridge.errors import Cancelled, FileFormatError, IncompatibleError, LatentBridgeError, ShapeError
from latentbridge.formats import Space
from latentbridge.latent import Latent, Provenance
from latentbridge.metrics import LPIPS_NOTE, fidelity, median_time
from latentbridge.refine import REFINE_STEPS
from latentbridge.run import Run
from latentbridge.vae import VAE, VaeIdentity
from latentbridge.weights.hashes import same_autoencoder

__all__ = [
    "FIDELITY_NOTE",
    "FITS",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "SIDECAR_SUFFIX",
    "FidelityRow",
    "FileOutcome",
    "Method",
    "Refine",
    "as_method",
    "centre_common",
    "check_source",
    "decode_images",
    "fidelity_report",
    "method_name",
    "output_container",
    "transfer",
    "transfer_dir",
]


@dataclass(frozen=True, slots=True)
class Refine:
    """Decode→re-encode, then refine the target latent so its decode matches the source decode (see
    :mod:`latentbridge.refine`): ``steps`` Adam steps per latent through the target decoder (a torch network)."""

    steps: int = REFINE_STEPS

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"refinement needs at least 1 step, got {self.steps}; use method 'reencode' for none")


Method = str | Bridge | Refine
"""A transfer method: "reencode", "refine" (= ``Refine()``), a :class:`Refine`, or a loaded
:class:`~latentbridge.bridge.Bridge` (linear map or conv)."""

MANIFEST_NAME = "latentbridge-transfer.json"
MANIFEST_VERSION = 1
SIDECAR_SUFFIX = ".latentbridge.json"  # files._containers: the record beside an .npy
# names of the latent containers latentbridge writes (files.SUFFIX_CONTAINERS): such a file that cannot be read is a
# failure of the folder run, while any other unreadable file (an image, notes) is left alone as "not a latent"
LATENT_SUFFIXES = (".latent", ".safetensors", ".pt", ".pth", ".npy", ".npz")


# --- identity and provenance ----------------------------------------------------------------------------


def as_method(method: Method) -> Method:
    """The method as the library works with it: "refine" becomes ``Refine()``; anything unknown is an error."""
    if isinstance(method, (Bridge, Refine)) or method == "reencode":
        return method
    if method == "refine":
        return Refine()
    raise ValueError(
        f"unknown transfer method {method!r}: expected 'reencode', 'refine' or a Bridge "
        "(load one with latentbridge.bridge.load_bridge, or pass --bridge FILE)"
    )


def method_name(method: Method) -> str:
    """'reencode', 'reencode+refine 20', 'linear bridge' or 'conv bridge' (what tables and provenance call it)."""
    method = as_method(method)
    if isinstance(method, Bridge):
        return f"{method.kind} bridge"
    if isinstance(method, Refine):
        return f"reencode+refine {method.steps}"
    return "reencode"


def _short(sha: str) -> str:
    return sha[:12] if sha else "no-sha256"


def _identity(vae: VAE | None, bridge_side: VaeIdentity | None) -> tuple[str, str]:
    """(name, sha256) of one end: the VAE if given, else the bridge's record of it."""
    side = vae if vae is not None else bridge_side
    if side is None:
        raise ValueError("a transfer needs each VAE, or a bridge that records it: pass --from-vae and --to-vae")
    return side.name, side.sha256


def _step(method: Method, src: tuple[str, str], dst: tuple[str, str]) -> str:
    via = f" {_short(method.sha256)}" if isinstance(method, Bridge) else ""
    return f"transfer {method_name(method)}{via} {src[0]}[{_short(src[1])}] -> {dst[0]}[{_short(dst[1])}]"


def _provenance(prov: Provenance, method: Method, src: tuple[str, str], dst: tuple[str, str]) -> Provenance:
    extra = dict(prov.extra)
    extra.update(
        {
            "transfer.method": method_name(method),
            "transfer.from_vae": src[0],
            "transfer.from_vae_sha256": src[1],
            "transfer.to_vae": dst[0],
            "transfer.to_vae_sha256": dst[1],
        }
    )
    if isinstance(method, Bridge):
        extra["transfer.bridge_sha256"] = method.sha256
        extra["transfer.bridge_file"] = method.path
    else:
        extra.pop("transfer.bridge_sha256", None)
        extra.pop("transfer.bridge_file", None)
    out = dataclasses.replace(prov, vae_name=dst[0], vae_sha256=dst[1], extra=tuple(sorted(extra.items())))
    return out.then(_step(method, src, dst))


def check_source(latent: Latent, vae: VAE) -> None:
    """Refuse a latent that another VAE made: format mismatch, or a provenance hash that is not ``vae``'s.

    Raises:
        IncompatibleError: naming the latent's format/VAE, ``vae``'s, and the fix.
    """
    if latent.format is not None and vae.format is not None and latent.format.name != vae.format.name:
        raise IncompatibleError(
            f"this is a {latent.format.name} latent but --from-vae {vae.name} reads {vae.format.name} latents; "
            f"pass the {latent.format.name} VAE as --from-vae (or --format if the latent is mislabelled)"
        )
    made_by = latent.provenance.vae_sha256
    if made_by and vae.sha256 and not same_autoencoder(made_by, vae.sha256):
        who = latent.provenance.vae_name or "another VAE"
        raise IncompatibleError(
            f"this latent was made by {who} (sha256 {made_by[:12]}), but --from-vae {vae.name} has sha256 "
            f"{vae.sha256[:12]}; decode it with the VAE that made it: pass that file as --from-vae (when "
            f"{vae.name} is the decoder half of the same VAE, pass both halves: --from-vae ENCODER,DECODER)"
        )


# --- the methods ----------------------------------------------------------------------------------------


def decode_images(vae: VAE, latent: Latent, run: Run = Run()) -> torch.Tensor:
    """Decode with latentbridge.codec: a Latent (any space the format allows) -> images [N, 3, H, W] in [0, 1].

    Video latents of image VAEs decode frame by frame: [N, C, T, h, w] -> [N·T, 3, H, W] (frame-major per clip).
    """
    if _framewise(latent, vae):
        latent = latent.frames_as_batch()
    # Padding recorded at encode time stays on: the target encoder gets the full decoded canvas, and the
    # record (kept in the provenance) still tells where the picture is.
    return codec.decode(vae, latent, run, crop_padding=False)


def _framewise(latent: Latent, vae: VAE) -> bool:
    """True for a video-shaped latent going through an image VAE (frame by frame)."""
    return "T" in latent.layout and vae.dims == 2


def _unframes(frames: Latent, n: int, layout: str) -> Latent:
    """Inverse of :func:`_frames`: a batch of N·T image latents -> [N, C, T, h, w] in ``layout``."""
    x = frames.canonical().tensor if frames.format is not None else frames.tensor
    x = x.reshape(n, -1, *x.shape[1:])  # N T C h w
    out = dataclasses.replace(frames, tensor=x, layout="NTCHW")
    return out.to_layout(layout)


def _out_space(latent: Latent, space: str | None) -> Space:
    if space is not None:
        if space not in ("raw", "model"):
            raise ValueError(f"space must be 'raw' or 'model', got {space!r}")
        return "raw" if space == "raw" else "model"
    return "model" if latent.space == "model" else "raw"


FITS = ("pad", "crop")


def _fit_canvas(images: torch.Tensor, dst_vae: VAE, fit: str | None, prov: Provenance) -> tuple[torch.Tensor, str]:
    """Make the decoded canvas a size the target format takes, and the padding record that then holds.

    Args:
        images: the source decode [N, 3, H, W] in [0, 1] (encode-time padding still on).
        dst_vae: the target VAE (its format's ``size_multiple``; its spatial ratio when it has no format).
        fit: None (a size the target cannot take is an error naming --pad/--crop), "pad" (reflect-pad to the
            next multiple) or "crop" (centre-crop to the previous one).
        prov: the source latent's provenance (its encode-time padding record, if any).

    Returns:
        (images, padding record "top,bottom,left,right" for the output's provenance; "" for none).
    """
    from latentbridge.images import PADDING_KEY, Padding, fit_size

    old = dict(prov.extra).get(PADDING_KEY, "")
    multiple = dst_vae.size_multiple
    h, w = images.shape[-2:]
    if fit is None or (h % multiple == 0 and w % multiple == 0):
        return images, old  # the codec refuses a size the target cannot take, naming --pad / --crop
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)} or None, got {fit!r}")
    before = Padding.parse(old) if old else Padding()
    fitted, added = fit_size(images, multiple, pad=fit == "pad", crop=fit == "crop", what="the decoded image")
    sides = dataclasses.astuple(before)  # (top, bottom, left, right)
    if fit == "pad":
        after = Padding(*(a + b for a, b in zip(sides, dataclasses.astuple(added), strict=True)))
    else:  # the crop takes (h - h')//2 from the top, the rest from the bottom (as fit_size does)
        dh, dw = h - fitted.shape[-2], w - fitted.shape[-1]
        cut = (dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)
        after = Padding(*(max(a - c, 0) for a, c in zip(sides, cut, strict=True)))
    return fitted, ("" if after.is_zero else after.to_text())


def _reencode(
    latent: Latent,
    src_vae: VAE | None,
    dst_vae: VAE | None,
    run: Run,
    refine: Refine | None = None,
    fit: str | None = None,
) -> tuple[Latent, str]:
    """Decode→re-encode (then optionally refine); returns the latent and its padding record ("" for none)."""
    if src_vae is None or dst_vae is None:
        raise ValueError("decode→re-encode needs both VAEs: pass --from-vae and --to-vae")
    for vae, part, flag in ((src_vae, "decode", "--from-vae"), (dst_vae, "encode", "--to-vae")):
        if getattr(vae, part) is None:
            raise IncompatibleError(
                f"{flag} {vae.name} has no {part[:-1]}er (the file holds only one half); decode→re-encode needs "
                f"the source decoder and the target encoder: pass a file that holds the {part[:-1]}er"
            )
    if refine is not None and run.tiling.tile is not None:
        raise ValueError(
            f"refinement runs the target decoder untiled (it needs gradients through it), but --tile {run.tiling.tile} "
            "was given; drop --tile, or transfer with --method reencode"
        )
    images, padding = _fit_canvas(decode_images(src_vae, latent, run), dst_vae, fit, latent.provenance)
    out = codec.encode(dst_vae, images * 2 - 1, run)
    if refine is None:
        return out, padding
    from latentbridge.refine import refine_latent

    task, total = f"refine {dst_vae.name}", out.tensor.shape[0] * refine.steps
    done = 0
    run.check_cancelled(task)
    run.report(task, 0, total)

    def step() -> None:
        nonlocal done
        done += 1
        run.report(task, done, total)
        run.check_cancelled(task)

    result = refine_latent(dst_vae, out.tensor, images * 2 - 1, refine.steps, on_step=step)
    return dataclasses.replace(out, tensor=result.latent), padding


def _bridge(latent: Latent, bridge: Bridge, src_vae: VAE | None, dst_vae: VAE | None) -> Latent:

    for vae, side, flag in ((src_vae, bridge.src, "--from-vae"), (dst_vae, bridge.dst, "--to-vae")):
        if vae is not None and vae.sha256 and side.sha256 and not same_autoencoder(vae.sha256, side.sha256):
            raise IncompatibleError(
                f"{flag} {vae.name} (sha256 {vae.sha256[:12]}) is not the VAE this bridge was fitted for: "
                f"{side.describe()}; pass that VAE, or fit a bridge for {vae.name} (latentbridge fit-bridge)"
            )
    check_bridge_input(latent, bridge)
    src_format = bridge.src.format.name if bridge.src.format is not None else ""
    if latent.format is None and latent.space != bridge.src.native_space:
        raise IncompatibleError(
            f"this latent's format is unknown and its space is {latent.space!r}, but the bridge reads "
            f"{bridge.src.native_space}-space latents of {bridge.src.describe()}; pass --format {src_format or 'NAME'} "
            f"and --space raw|model so it can be converted"
        )
    stats = src_vae.stats if src_vae is not None else None
    x = latent if latent.format is None else latent.to_space(bridge.src.native_space, stats)
    y = bridge.map(x.tensor)
    fmt = bridge.dst.format
    stats = dst_vae.stats if dst_vae is not None else None  # FLUX.2-like targets convert spaces with them
    return Latent(y.to(latent.tensor.dtype), fmt, bridge.dst.native_space, "NCHW", latent.provenance, stats)


def transfer(
    latent: Latent,
    src_vae: VAE | None,
    dst_vae: VAE | None,
    *,
    method: Method = "reencode",
    space: str | None = None,
    fit: str | None = None,
    run: Run = Run(),
) -> Latent:
    """Move a latent from ``src_vae``'s latent space to ``dst_vae``'s.

    Args:
        latent: the source latent: [N, C, h, w] image latents or [N, C, T, h, w] video latents, raw or model
            space (as recorded in the Latent), made by ``src_vae``.
        src_vae: the VAE that made it (decodes it for "reencode"; identity check for bridges, may be None).
        dst_vae: the target VAE (encodes for "reencode"; identity check for bridges, may be None).
        method: "reencode" (decode with ``src_vae`` to pixels, encode with ``dst_vae``: the codec's batching,
            tiling and NaN guard apply), "refine" or :class:`Refine` (re-encode, then refine the latent through
            ``dst_vae``'s decoder towards ``src_vae``'s decode: closer to the best achievable, about 3 decodes per
            step, untiled) or a :class:`~latentbridge.bridge.Bridge` (maps latents directly).
        space: the output's space, "raw" or "model"; default: the input's space (raw when unknown).
        fit: decode→re-encode only, when the decoded size is not one the target format takes (SD1's 8-px
            multiples into FLUX.2's 16): "pad" reflect-pads to the next multiple (the output's provenance
            records the padding, and `latentbridge decode` crops it off), "crop" centre-crops to the previous one;
            None (default) refuses such a size with an error naming both.
        run: how decode→re-encode and refinement execute (device, dtype, batching, tiling, progress of each
            decode/encode/refinement, cancel); a bridge maps latents directly and checks only the cancel token.

    Returns:
        A Latent of ``dst_vae``'s format in ``space``, canonical layout (video keeps its layout), float32 for
        re-encoding (the input dtype for bridges), with provenance naming both VAEs and the method.

    Raises:
        IncompatibleError: the latent is not ``src_vae``'s (format or provenance hash), the bridge does not fit
            the latent or the VAEs, or a VAE lacks the half the method needs.
    """
    method = as_method(method)
    bridge = method if isinstance(method, Bridge) else None
    refine = method if isinstance(method, Refine) else None
    if src_vae is not None:
        check_source(latent, src_vae)
    if latent.tensor.ndim not in (4, 5):
        raise ShapeError(
            f"transfer takes a batch of latents [N, C, h, w] or [N, C, T, h, w], got shape {latent.shape} "
            f"(layout {latent.layout}); add the batch dimension (layout CHW -> NCHW)"
        )
    out_space = _out_space(latent, space)
    video = "T" in latent.layout
    n = latent.dim("N")
    framewise = video and (bridge is not None or (src_vae is not None and src_vae.dims == 2))
    if video and bridge is None and src_vae is not None and dst_vae is not None and src_vae.dims != dst_vae.dims:
        raise IncompatibleError(
            f"--from-vae {src_vae.name} is a {src_vae.dims}-D VAE and --to-vae {dst_vae.name} a {dst_vae.dims}-D "
            "one; moving video latents between an image VAE and a video VAE is not supported: use two VAEs of "
            "the same kind"
        )
    work = latent.frames_as_batch() if framewise else latent
    run.check_cancelled(f"transfer {method_name(method)}")
    if fit is not None and bridge is not None:
        raise ValueError("fit (--pad/--crop) applies to decode→re-encode; a bridge maps latents cell by cell")
    if bridge is None:
        out, padding = _reencode(work, src_vae, dst_vae, run, refine, fit)
    else:
        out, padding = _bridge(work, bridge, src_vae, dst_vae), ""
    if bridge is None and dst_vae is not None and dst_vae.format is not None and out.format is None:
        out = out.replace(format=dst_vae.format)
    if out.format is not None and out.space in ("raw", "model") and out.space != out_space:
        stats = dst_vae.stats if dst_vae is not None else None
        try:
            out = out.to_space(out_space, stats)
        except ValueError as exc:
            raise IncompatibleError(
                f"the transferred latent is in {out.space} space and cannot be converted to {out_space} space "
                f"({exc}); keep it in {out.space} space: pass space={out.space!r} (--out-space {out.space})"
            ) from exc
    if framewise:
        out = _unframes(out, n, latent.layout if latent.layout in ("NCTHW", "NTCHW") else "NCTHW")
    src_id = _identity(src_vae, bridge.src if bridge else None)
    dst_id = _identity(dst_vae, bridge.dst if bridge else None)
    prov = _provenance(latent.provenance, method, src_id, dst_id)
    if bridge is None:
        prov = _with_padding(prov, padding)
    return dataclasses.replace(out, provenance=prov)


def _with_padding(prov: Provenance, record: str) -> Provenance:
    """``prov`` with its padding record set to ``record`` (removed when "")."""
    from latentbridge.images import PADDING_KEY

    extra = {k: v for k, v in prov.extra if k != PADDING_KEY}
    if record:
        extra[PADDING_KEY] = record
    return dataclasses.replace(prov, extra=tuple(sorted(extra.items())))


# --- fidelity -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FidelityRow:
    """One method's fidelity and speed.

    Attributes:
        method: "reencode", "linear bridge", "conv bridge", "best achievable" or "source reconstruction".
        psnr, ssim: target decode vs the source decode of the original latent (NaN when not applicable).
        seconds_per_latent: median transfer time divided by the batch size (NaN for reference rows).
        image_psnr, image_ssim: target decode vs the original image (NaN when the image is not known).
        note: one line for humans.
    """

    method: str
    psnr: float
    ssim: float
    seconds_per_latent: float
    image_psnr: float = math.nan
    image_ssim: float = math.nan
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None, inf -> "inf")."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and math.isnan(v):
                return None
            if isinstance(v, float) and math.isinf(v):
                return "inf"
            return v

        return {f.name: clean(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _as_frames(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, T, H, W] -> [N·T, 3, H, W]; images [N, 3, H, W] unchanged."""
    if images.ndim == 5:
        return images.transpose(1, 2).reshape(-1, images.shape[1], *images.shape[3:])
    return images


def fidelity_report(
    latent: Latent,
    src_vae: VAE,
    dst_vae: VAE,
    methods: Sequence[Method] = ("reencode",),
    *,
    image: torch.Tensor | None = None,
    repeats: int = 1,
    fit: str | None = None,
    run: Run = Run(),
) -> tuple[FidelityRow, ...]:
    """Transfer ``latent`` with each method and measure what survives.

    For each method: PSNR/SSIM of ``dst_vae``'s decode of the transferred latent against ``src_vae``'s decode of
    the original latent, and the median time per latent over ``repeats`` runs. With ``image`` (the picture the
    latent was encoded from, [N, 3, H, W] in [-1, 1]), every row also gets PSNR/SSIM against the image, and two
    reference rows are added: "best achievable" (``image`` encoded by ``dst_vae`` and decoded, against
    ``image``: the target's own fidelity to what it is given, the ceiling for any transfer's PSNR column) and
    "source reconstruction" (the source decode against the image).

    ``fit`` ("pad"/"crop", see :func:`transfer`) applies to the decode→re-encode methods and to the image of the
    "best achievable" row; pictures of different sizes are then compared on their common centre (pad and crop
    are both centred, as is `latentbridge encode --crop`).

    Returns:
        One FidelityRow per method, then the reference rows.
    """
    reference = _as_frames(decode_images(src_vae, latent, run)).float()
    n = latent.dim("N") * latent.dim("T")
    truth = None if image is None else _as_frames(image).float().add(1).div(2).clamp(0, 1)
    rows = []
    for method in methods:
        # The output stays in the target's native space: the report decodes it, and a tiny target VAE
        # (TAESD family) may lack the statistics to convert it.
        how = fit if fit is not None and not isinstance(as_method(method), Bridge) else None

        def moved(method: Method = method, how: str | None = how) -> Latent:
            return transfer(latent, src_vae, dst_vae, method=method, space=dst_vae.native_space, fit=how, run=run)

        out, seconds = median_time(moved, repeats)
        decoded = _as_frames(decode_images(dst_vae, out, run)).float()
        fid = fidelity(*centre_common(decoded, reference))
        vs_image = fidelity(*centre_common(decoded, truth)) if truth is not None else None
        rows.append(
            FidelityRow(
                method_name(method),
                fid.psnr,
                fid.ssim,
                seconds / n,
                vs_image.psnr if vs_image else math.nan,
                vs_image.ssim if vs_image else math.nan,
                "",
            )
        )
    if image is not None and truth is not None:
        # The target's own reconstruction of the original image, measured like the transfers are measured
        # (its decode against what it was given): what any transfer into dst_vae can at best reach.
        fitted = image
        if fit is not None:
            from latentbridge.images import fit_size

            pad, crop = fit == "pad", fit == "crop"
            fitted, _ = fit_size(image, dst_vae.size_multiple, pad=pad, crop=crop, what="the --image")
        best = _as_frames(decode_images(dst_vae, codec.encode(dst_vae, fitted, run), run)).float()
        vs_image = fidelity(*centre_common(best, truth))
        note = "target VAE encodes + decodes the original image"
        rows.append(FidelityRow("best achievable", vs_image.psnr, vs_image.ssim, math.nan, vs_image.psnr,
                                vs_image.ssim, note))  # fmt: skip
        src_fid = fidelity(*centre_common(reference, truth))
        note = "source VAE decode of the original latent"
        rows.append(FidelityRow("source reconstruction", math.nan, math.nan, math.nan, src_fid.psnr, src_fid.ssim,
                                note))  # fmt: skip
    return tuple(rows)


def centre_common(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both pictures centre-cropped to their common size (the last two dimensions; the crop of a side that is
    d pixels too long takes d//2 from the top/left, as centred padding and cropping do). Same sizes: unchanged."""
    h, w = min(a.shape[-2], b.shape[-2]), min(a.shape[-1], b.shape[-1])

    def crop(x: torch.Tensor) -> torch.Tensor:
        top, left = (x.shape[-2] - h) // 2, (x.shape[-1] - w) // 2
        return x[..., top : top + h, left : left + w]

    return crop(a), crop(b)


FIDELITY_NOTE = (
    "PSNR/SSIM: target decode of the transferred latent vs source decode of the original latent "
    "(image columns: vs the original image). " + LPIPS_NOTE + "."
)


# --- directories ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileOutcome:
    """What happened to one file of a directory transfer.

    Attributes:
        name: file name inside the source folder.
        status: "done" (transferred now), "skipped" (a complete output already existed), "not-latent"
            (not a latent file: left alone, with the reason in ``note``), or "failed" (a latent file that could not
            be read or transferred: the error is in ``note`` and in the manifest; a rerun retries it).
        output: the output path ("" for "not-latent" and "failed").
        index, total: position in the folder (1-based) and the folder's file count.
        seconds: time spent on this file.
        note: why a file was skipped or left alone.
    """

    name: str
    status: str
    output: str
    index: int
    total: int
    seconds: float
    note: str = ""


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest_identity(src: tuple[str, str], dst: tuple[str, str], method: Method, options: Mapping) -> dict:
    return {
        "from_vae": {"name": src[0], "sha256": src[1]},
        "to_vae": {"name": dst[0], "sha256": dst[1]},
        "method": method_name(method),
        "bridge_sha256": method.sha256 if isinstance(method, Bridge) else "",
        "options": dict(options),
    }


def _read_manifest(path: Path) -> dict | None:
    from latentbridge._guard import read_json_file

    if not path.exists():
        return None
    fix = "delete it to start over (outputs that exist will then be checked again), or choose another output folder"
    data = read_json_file(path, "is not a readable transfer manifest", fix)
    if not isinstance(data, dict) or data.get("version") != MANIFEST_VERSION or not isinstance(data.get("files"), dict):
        raise FileFormatError(
            f"{path} is not a version-{MANIFEST_VERSION} latentbridge transfer manifest; delete it to start over"
        )
    return data


def _write_manifest(path: Path, data: dict) -> None:
    atomic_write(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def _candidates(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.name != MANIFEST_NAME
        and not p.name.endswith(SIDECAR_SUFFIX)
    )


def transfer_dir(
    src_dir: str | Path,
    out_dir: str | Path,
    src_vae: VAE | None,
    dst_vae: VAE | None,
    *,
    method: Method = "reencode",
    format: str | None = None,
    space: str | None = None,
    out_space: str | None = None,
    container: str | None = None,
    overwrite: bool = False,
    on_file: Callable[[FileOutcome], None] | None = None,
    fit: str | None = None,
    run: Run = Run(),
) -> tuple[FileOutcome, ...]:
    """Transfer every latent file in ``src_dir`` into ``out_dir`` (same file names), resumably.

    Each output is written atomically and then recorded in ``out_dir/latentbridge-transfer.json`` with its
    sha256 and the source file's sha256. A rerun after an interruption skips every output whose manifest entry
    matches (source unchanged, output complete), adopts an output written just before the interruption
    (readable, and its provenance ends with this very transfer step), and redoes the rest. Files that are not
    latents (images, notes, weight files) are reported as "not-latent" and left alone. A latent file that cannot
    be read or transferred (damaged, an unknown format, values the codec refuses) does not stop the run: it is
    reported as "failed", its error recorded in the manifest (``{"error": …, "source_sha256": …}``), and a rerun
    retries only such files (and any not done yet).

    Args:
        src_dir, out_dir: source and output folders (different; ``out_dir`` is created).
        src_vae, dst_vae, method, fit: as for :func:`transfer`.
        format, space: what to assume for files that do not record their format/space (as ``read_latent``).
        out_space: the outputs' space (default: each input's).
        container: the output container ("latent", "safetensors", "pt", "npy", "npz"); default: each input's.
        overwrite: redo every file and replace outputs (and a manifest of another transfer).
        on_file: called after each file with its outcome (raising from it stops the run cleanly: finished files
            stay finished).
        run: how each file's transfer executes; its progress callback hears one step per file (task "transfer
            METHOD"), and its cancel token stops the folder before the next file — or inside the current one,
            whose output is then not written (finished files stay finished and recorded).

    Returns:
        One FileOutcome per file in the source folder, in name order.
    """
    from latentbridge.files import classify, read_latent, sniff, write_latent

    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if not src_dir.is_dir():
        raise FileNotFoundError(f"{src_dir} is not a folder; pass a latent file or a folder of latent files")
    if out_dir.resolve() == src_dir.resolve():
        raise ValueError(f"the output folder is the source folder ({src_dir}); choose another -o folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} exists and is not a folder; a folder input needs a folder -o")
    out_dir.mkdir(parents=True, exist_ok=True)
    bridge = method if isinstance(method, Bridge) else None
    src_id = _identity(src_vae, bridge.src if bridge else None)
    dst_id = _identity(dst_vae, bridge.dst if bridge else None)
    options = {"out_space": out_space, "container": container, "format": format, "space": space}
    identity = _manifest_identity(src_id, dst_id, method, options)
    manifest_path = out_dir / MANIFEST_NAME
    manifest = _read_manifest(manifest_path)
    if manifest is not None and {k: manifest.get(k) for k in identity} != identity:
        if not overwrite:
            raise IncompatibleError(
                f"{out_dir} holds the outputs of another transfer ({manifest.get('method')} "
                f"{manifest.get('from_vae', {}).get('name')} -> {manifest.get('to_vae', {}).get('name')}, "
                f"options {manifest.get('options')}); this one is {identity['method']} {src_id[0]} -> {dst_id[0]} "
                f"with options {options}: choose another -o folder, or pass --overwrite to redo it"
            )
        manifest = None
    if manifest is None or overwrite:
        manifest = {"version": MANIFEST_VERSION, "tool": "latentbridge transfer", **identity, "files": {}}
    files: dict[str, dict] = manifest["files"]
    step = _step(method, src_id, dst_id)

    paths = _candidates(src_dir)
    outcomes = []
    task = f"transfer {method_name(method)}"
    inner = run.replace(progress=None)  # the folder reports files; each file's decodes stay quiet
    run.report(task, 0, len(paths))

    def report(outcome: FileOutcome) -> None:
        outcomes.append(outcome)
        run.report(task, outcome.index, outcome.total)
        if on_file is not None:
            on_file(outcome)

    for index, path in enumerate(paths, 1):
        run.check_cancelled(task)
        t0 = time.perf_counter()
        target = out_dir / path.name
        try:
            kind = sniff(path)
            is_latent = kind not in ("onnx", "gguf") and classify(path) == "latent"
            why = f"a {kind} file holding network weights" if not is_latent else ""
        except FileFormatError as exc:
            if path.suffix.lower() in LATENT_SUFFIXES:  # named like a latent but unreadable: a failure, not a stranger
                files[path.name] = {"error": str(exc), "source_sha256": _sha256_file(path)}
                _write_manifest(manifest_path, manifest)
                report(FileOutcome(path.name, "failed", "", index, len(paths), time.perf_counter() - t0, str(exc)))
                continue
            is_latent, why = False, str(exc)
        if not is_latent:
            report(FileOutcome(path.name, "not-latent", "", index, len(paths), time.perf_counter() - t0, why))
            continue
        source_sha = _sha256_file(path)
        entry = files.get(path.name)
        status, note = "done", ""
        if entry is not None and "error" in entry:
            entry = None  # it failed last time: retried from scratch (an output left from before is replaced)
        elif not overwrite and target.exists():
            if entry and entry.get("source_sha256") == source_sha and entry.get("sha256") == _sha256_file(target):
                status, note = "skipped", "complete output recorded in the manifest"
            elif _written_by(target, step, read_latent):
                status, note = "skipped", "complete output found (written just before an interruption)"
            elif entry is None:
                raise FileExistsError(
                    f"{target} exists but was not written by this transfer ({step}); move it away, choose another "
                    "-o folder, or pass --overwrite to replace it"
                )
        if status == "done":
            try:
                latent = read_latent(path, format=format, space=space)
                out = transfer(
                    latent,
                    src_vae,
                    dst_vae,
                    method=method,
                    space=out_space,
                    fit=fit,
                    run=inner,
                )
                write_latent(out, target, container=output_container(kind, container), overwrite=True)
            except Cancelled:
                raise  # the run stops here: this file is neither done nor failed
            except (LatentBridgeError, ValueError) as exc:  # this file's own problem: recorded, the run goes on
                files[path.name] = {"error": str(exc), "source_sha256": source_sha}
                _write_manifest(manifest_path, manifest)
                report(FileOutcome(path.name, "failed", "", index, len(paths), time.perf_counter() - t0, str(exc)))
                continue
        files[path.name] = {
            "output": target.name,
            "sha256": _sha256_file(target),
            "bytes": target.stat().st_size,
            "source_sha256": source_sha,
        }
        _write_manifest(manifest_path, manifest)
        report(FileOutcome(path.name, status, str(target), index, len(paths), time.perf_counter() - t0, note))
    return tuple(outcomes)


def output_container(input_kind: str, container: str | None) -> str:
    """The container to write: ``container`` when given, else the input's own (``files.sniff`` kind).

    Raises:
        FileFormatError: the input's container is one latentbridge reads but does not write (kohya caches).
    """
    from latentbridge.files import CONTAINERS

    if container is not None:
        return container
    if input_kind in CONTAINERS:
        return input_kind
    raise FileFormatError(
        f"the input is a {input_kind} file, which latentbridge reads but does not write; pass --container "
        f"(one of {', '.join(CONTAINERS)}) to choose the output container"
    )


def _written_by(path: Path, step: str, read_latent: Callable[..., Latent]) -> bool:
    """True when ``path`` reads as a latent whose provenance history ends with ``step``."""
    try:
        latent = read_latent(path)
    except (FileFormatError, IncompatibleError, ShapeError, ValueError, OSError):
        return False
    return bool(latent.provenance.history) and latent.provenance.history[-1] == step
