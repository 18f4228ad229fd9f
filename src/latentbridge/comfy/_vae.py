"""A ComfyUI VAE object seen as a latentbridge :class:`~latentbridge.VAE` — every encode and decode goes through
the ComfyUI object itself, so ComfyUI's model management (loading to the GPU, batch splitting by free memory, its
out-of-memory fallback, offloading) applies.

The view's functions follow latentbridge's convention (images [N, 3, H, W] in [-1, 1]; latents in the VAE's native
space) and translate to ComfyUI's (IMAGE [N, H, W, 3] in [0, 1]; the LATENT's space). A ComfyUI VAE object's native
space is ComfyUI's LATENT space for its family: raw, except FLUX.2 and LTX-Video, whose VAE objects normalise (and
pack) themselves. The view's ``module`` is the object's torch module, so that latentbridge's codec sees its
GroupNorm layers (whole-image statistics over tiles) and its dtype; its ``bind`` runs a cast copy (the fp32 redo of
a sample that overflowed in bf16/fp16) through a second ComfyUI VAE object built around the copy, with its own
ModelPatcher, so the redo is managed by ComfyUI too.

Family: the VAE object does not know it. In order: the file the graph loaded it from (the VAELoader's or
checkpoint loader's file, identified by latentbridge from its header and sha256), ComfyUI's TAESD scalars
(``vae_scale``/``vae_shift``), a MODEL loaded from the same checkpoint, and the geometry when only one registry
format fits it. SD1, SDXL and Playground VAEs have identical shapes: without one of those, the format stays unknown
and the check says so.
"""

from __future__ import annotations

import copy
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latentbridge import VAE, InputTypeError, LatentFormat, NormStats, Space, WeightsInfo, get_format, list_formats
from latentbridge.vae import Fn
from latentbridge.weights import Header, TensorInfo, detect

# ComfyUI's TAESD stores the latent scaling as parameters in the VAE's dtype: bf16 keeps 8 mantissa bits (relative
# error <= 0.4 %), while the formats one TAESD geometry serves differ by far more (sd1 0.18215 vs sdxl 0.13025).
SCALAR_RTOL = 0.01
SCALAR_ATOL = 1e-3  # for shifts of 0


@dataclass(frozen=True, slots=True)
class VaeSource:
    """Where a ComfyUI VAE object came from, as far as the graph (or the node that made it) tells.

    Attributes:
        name: what the graph named it: the VAELoader's ``vae_name``, a checkpoint's ``ckpt_name``.
        loader: the node that loaded it ("VAELoader #3"), "" when unknown.
        path: the file on disk ("" when not found).
        info: latentbridge's identification of that file (header, sha256), or None.
    """

    name: str
    loader: str = ""
    path: str = ""
    info: WeightsInfo | None = None


_SOURCES: weakref.WeakKeyDictionary[Any, VaeSource] = weakref.WeakKeyDictionary()


def remember_source(vae: Any, source: VaeSource) -> None:
    """Record where a VAE object this pack made came from (Resolve VAE), for later nodes that receive it."""
    _SOURCES[vae] = source


def known_source(vae: Any) -> VaeSource | None:
    """What :func:`remember_source` recorded for this VAE object, or None."""
    try:
        return _SOURCES.get(vae)
    except TypeError:  # an object that cannot be weakly referenced was never recorded
        return None


@dataclass(frozen=True, slots=True)
class View:
    """A ComfyUI VAE object's latentbridge view, and how its format was decided.

    Attributes:
        vae: the :class:`~latentbridge.VAE` (encode/decode through the ComfyUI object).
        format_source: "file" (the loaded file's identification), "taesd" (ComfyUI's TAESD scalars), "model"
            (a MODEL from the same checkpoint), "geometry" (the only format that fits), or "" (unknown).
        candidates: the registry formats whose ComfyUI geometry fits the VAE.
        signature: the latentbridge signature its state dict matches ("autoencoder_kl/ldm"), "" when none or several.
        source: where it came from, when known.
        notes: what the user may want to know.
    """

    vae: VAE
    format_source: str
    candidates: tuple[str, ...]
    signature: str
    source: VaeSource | None
    notes: tuple[str, ...] = ()


def _check_object(vae: Any) -> None:
    for attr in ("decode", "encode", "get_sd", "latent_channels", "first_stage_model"):
        if not hasattr(vae, attr):
            raise InputTypeError(
                f"expected a ComfyUI VAE (from VAELoader or a checkpoint loader), got {type(vae).__name__} "
                f"without .{attr}"
            )
    if vae.first_stage_model is None:
        raise InputTypeError(
            "this ComfyUI VAE is empty (no VAE weights were detected when it was loaded: a checkpoint without a VAE?); "
            "load a VAE file with VAELoader"
        )
    if int(getattr(vae, "latent_dim", 2)) not in (2, 3):
        raise InputTypeError(
            f"this ComfyUI VAE makes {vae.latent_dim}-D latents (audio); latentbridge reads image and video VAEs"
        )


def geometry(vae: Any) -> tuple[int, int, int]:
    """(latent channels, spatial ratio, dims) of a ComfyUI VAE object: its LATENT's channels and pixels per cell."""
    return int(vae.latent_channels), int(vae.spacial_compression_decode()), int(getattr(vae, "latent_dim", 2))


def fitting_formats(channels: int, ratio: int, dims: int) -> tuple[str, ...]:
    """Registry formats whose ComfyUI LATENT has ``channels`` channels at ``ratio`` pixels per cell in ``dims`` D."""
    return tuple(
        name
        for name, f in list_formats().items()
        if f.space_shape(f.comfy_space) == (channels, ratio) and f.dims == dims
    )


def state_header(state: Mapping[str, torch.Tensor], name: str) -> Header:
    """A weights :class:`~latentbridge.weights.Header` of an in-memory state dict (names, shapes, dtypes only)."""
    tensors = {
        k: TensorInfo(tuple(int(d) for d in v.shape), str(v.dtype).removeprefix("torch."))
        for k, v in state.items()
        if isinstance(v, torch.Tensor)
    }
    return Header(source=Path(name), path=Path(name), container="safetensors", tensors=tensors)


def _scalars_format(module: Any, candidates: tuple[str, ...]) -> LatentFormat | None:
    """The format ComfyUI's TAESD scalars (vae_scale, vae_shift) name among ``candidates``, or None."""
    scale, shift = getattr(module, "vae_scale", None), getattr(module, "vae_shift", None)
    if not isinstance(scale, torch.Tensor) or not isinstance(shift, torch.Tensor):
        return None
    if scale.numel() != 1 or shift.numel() != 1:
        return None
    s, t = float(scale.detach().float().reshape(())), float(shift.detach().float().reshape(()))
    named = [
        f
        for f in (get_format(c) for c in candidates)
        if math.isclose(f.scale, s, rel_tol=SCALAR_RTOL, abs_tol=SCALAR_ATOL)
        and math.isclose(f.shift, t, rel_tol=SCALAR_RTOL, abs_tol=SCALAR_ATOL)
    ]
    return named[0] if len(named) == 1 else None


def _fits(fmt: LatentFormat, channels: int, ratio: int, dims: int) -> bool:
    return fmt.space_shape(fmt.comfy_space) == (channels, ratio) and fmt.dims == dims


def view(vae: Any, *, source: VaeSource | None = None, model_format: LatentFormat | None = None) -> View:
    """The latentbridge view of a ComfyUI VAE object.

    Args:
        vae: a ComfyUI ``comfy.sd.VAE``.
        source: where the graph loaded it from (see :func:`VaeSource`), or None.
        model_format: the format of a MODEL loaded from the same checkpoint as this VAE (the checkpoint's baked-in
            VAE), or None. A MODEL merely connected to the node says nothing about the VAE.

    Raises:
        InputTypeError: not a ComfyUI image or video VAE.
    """
    _check_object(vae)
    source = source or known_source(vae)
    channels, ratio, dims = geometry(vae)
    module = vae.first_stage_model
    state = vae.get_sd()
    label = source.name if source is not None and source.name else f"ComfyUI VAE ({type(module).__name__})"
    matches = detect(state_header(state, label))
    signature = matches[0].name if len(matches) == 1 else ""
    architecture = matches[0].signature.architecture if len(matches) == 1 else "unknown"
    candidates = fitting_formats(channels, ratio, dims)
    notes: list[str] = []
    fmt: LatentFormat | None = None
    how = ""
    info = source.info if source is not None else None
    if info is not None and info.format and info.format_source not in ("", "geometry"):
        named = get_format(info.format)
        if _fits(named, channels, ratio, dims):
            fmt, how = named, "file"
        else:
            notes.append(
                f"{info.path} identifies as {info.format} ({info.format_source}), whose ComfyUI latents are not "
                f"{channels} ch / {ratio}×: ignored"
            )
    if fmt is None:
        fmt = _scalars_format(module, candidates)
        how = "taesd" if fmt is not None else ""
    if fmt is None and model_format is not None:
        if _fits(model_format, channels, ratio, dims):
            fmt, how = model_format, "model"
        else:
            mc, mr = model_format.space_shape(model_format.comfy_space)
            notes.append(
                f"the MODEL's family {model_format.name} ({mc} ch / {mr}× in ComfyUI) does not fit this VAE "
                f"({channels} ch / {ratio}×): not used for the VAE"
            )
    if fmt is None and len(candidates) == 1:
        fmt, how = get_format(candidates[0]), "geometry"
    if fmt is not None:
        space: Space = fmt.comfy_space
    else:
        spaces = {get_format(c).comfy_space for c in candidates}
        space = spaces.pop() if len(spaces) == 1 else "raw"
    stats = None
    if fmt is not None and fmt.norm_source == "vae" and "bn.running_mean" in state and "bn.running_var" in state:
        stats = NormStats.from_running(
            state["bn.running_mean"], state["bn.running_var"], fmt.norm_eps, f"bn.running_mean/var of {label}"
        )
    encode, decode = _functions(vae, dims)
    lb_vae = VAE(
        label,
        info.sha256 if info is not None else "",
        architecture,
        fmt,
        space,
        channels,
        ratio,
        dims,
        encode,
        decode,
        module,
        stats=stats,
        bind=_binder(vae, dims),
        candidates=candidates if fmt is None else (),
    )
    return View(lb_vae, how, candidates, signature, source, tuple(notes))


def _functions(vae: Any, dims: int) -> tuple[Fn, Fn]:
    """(encode, decode) in latentbridge's convention, through the ComfyUI VAE object ``vae``."""

    def encode(images: torch.Tensor) -> torch.Tensor:
        pixels = ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)
        if dims == 3 and pixels.ndim == 5:  # [N, 3, T, H, W]: ComfyUI encodes one clip [T, H, W, 3] at a time
            return torch.cat([vae.encode(clip.movedim(0, -1)) for clip in pixels])
        return vae.encode(pixels.movedim(1, -1))

    def decode(latents: torch.Tensor) -> torch.Tensor:
        images = vae.decode(latents)  # [N, H, W, 3] or [N, T, H, W, 3] in [0, 1]
        return images.movedim(-1, 1).float() * 2.0 - 1.0

    return encode, decode


def _binder(vae: Any, dims: int) -> Any:
    """``bind(module)`` for the codec's cast copies: the copy wrapped in a second ComfyUI VAE object (shallow copy of
    ``vae`` with the copy as its network, its dtype and its own ModelPatcher)."""

    def bind(module: torch.nn.Module) -> tuple[Fn | None, Fn | None]:
        import comfy.model_patcher

        twin = copy.copy(vae)
        weight = next((t for t in module.parameters() if t.is_floating_point()), None)
        twin.first_stage_model = module
        twin.vae_dtype = weight.dtype if weight is not None else torch.float32
        twin.size = None
        twin.patcher = comfy.model_patcher.ModelPatcher(
            module, load_device=vae.patcher.load_device, offload_device=vae.patcher.offload_device
        )
        return _functions(twin, dims)

    return bind
