"""ComfyUI's LATENT dicts and latent formats <-> latentbridge's :class:`~latentbridge.Latent` and registry formats.

A ComfyUI ``LATENT`` is a dict: ``samples`` (``[N, C, H, W]`` images, ``[N, C, T, H, W]`` video), optionally
``noise_mask`` and ``batch_index`` and whatever other nodes put there. Its samples are in **ComfyUI's space** for
the family (:attr:`LatentFormat.comfy_space <latentbridge.LatentFormat.comfy_space>`): raw VAE output, except
FLUX.2 and LTX-Video, whose LATENT is the normalised (FLUX.2: 2×2-packed, 128-channel) model-space tensor.

What a LATENT dict does not say — the family — comes, strongest first, from the ``latent_format`` of a connected
MODEL, then from the tag this pack stores in the dict under :data:`TAG_KEY` (set by the pack's loader, transfer
and check nodes; copied along by every stock node that copies the dict, such as KSampler), else it stays unknown.
A tag whose channel count or rank no longer fits the samples (some node rebuilt them) is ignored, with a note.

Nothing here imports ComfyUI: the MODEL is read through ``get_model_object("latent_format")`` only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from latentbridge import (
    InputTypeError,
    Latent,
    LatentFormat,
    Provenance,
    ShapeError,
    get_format,
    list_formats,
)
from latentbridge.files import comfy_ready
from latentbridge.latent import as_space

TAG_KEY = "latentbridge"
"""The LATENT dict key holding the pack's :class:`Tag`."""

# ComfyUI 0.8.0 comfy/latent_formats.py class -> registry format (None: ComfyUI has it, the registry does not).
# The classes are matched along the MRO (Flux subclasses SD3, Wan22 Wan21, LTXAV LTXV), most specific first, and a
# match counts only when ComfyUI's scale and shift are the registry's (a custom subclass with other numbers does not).
COMFY_FORMATS: Mapping[str, str | None] = {
    "SD15": "sd1",
    "SDXL": "sdxl",
    "SDXL_Playground_2_5": "playground25",
    "SD_X4": "sd_x4_upscaler",
    "SC_Prior": None,
    "SC_B": "cascade_b",
    "SD3": "sd3",
    "Flux": "flux1",
    "Flux2": "flux2",
    "Mochi": "mochi",
    "LTXV": "ltxv",
    "LTXAV": None,  # audio + video in one nested tensor
    "HunyuanVideo": "hunyuan_video",
    "Cosmos1CV8x8x8": "cosmos",
    "Wan21": "wan21",
    "Wan22": "wan22",
    "HunyuanImage21": "hunyuan_image21",
    "HunyuanImage21Refiner": None,
    "HunyuanVideo15": "hunyuan_video15",
    "StableAudio1": None,
    "ACEAudio": None,
    "Hunyuan3Dv2": None,
    "Hunyuan3Dv2_1": None,
    "Hunyuan3Dv2mini": None,
    "ChromaRadiance": None,
}
# ComfyUI's scale_factor/shift_factor are decimal literals equal to the registry's (tests/comfy/test_comfy_registry.py
# checks every one to 1e-12); this tolerance only separates a subclass that changed them.
SCALE_RTOL = 1e-6


@dataclass(frozen=True, slots=True)
class ModelFormat:
    """What a MODEL's ``latent_format`` says about the family.

    Attributes:
        format: the registry format, or None when the registry has no such format.
        comfy_class: ComfyUI's latent format class name ("SDXL").
        note: why ``format`` is None ("" when it is known).
    """

    format: LatentFormat | None
    comfy_class: str
    note: str = ""


def model_format(model: Any) -> ModelFormat:
    """The registry format of a ComfyUI MODEL (a ModelPatcher): from ``get_model_object("latent_format")``.

    Raises:
        InputTypeError: ``model`` is not a ComfyUI MODEL.
    """
    getter = getattr(model, "get_model_object", None)
    if not callable(getter):
        raise InputTypeError(
            f"expected a ComfyUI MODEL (a ModelPatcher from a checkpoint or model loader), got {type(model).__name__}"
        )
    return format_of_comfy_class(getter("latent_format"))


def format_of_comfy_class(latent_format: Any) -> ModelFormat:
    """The registry format of a ComfyUI ``comfy.latent_formats.LatentFormat`` instance (see :data:`COMFY_FORMATS`)."""
    cls = type(latent_format)
    name = cls.__name__
    for klass in cls.__mro__:
        if klass.__name__ not in COMFY_FORMATS:
            continue
        registry = COMFY_FORMATS[klass.__name__]
        if registry is None:
            return ModelFormat(None, name, f"ComfyUI's latent format {name} has no latentbridge registry format")
        fmt = get_format(registry)
        scale = float(getattr(latent_format, "scale_factor", 1.0))
        shift = float(getattr(latent_format, "shift_factor", 0.0) or 0.0)
        if not (math.isclose(scale, fmt.scale, rel_tol=SCALE_RTOL) and math.isclose(shift, fmt.shift, abs_tol=1e-9)):
            return ModelFormat(
                None,
                name,
                f"ComfyUI's latent format {name} derives from {klass.__name__} ({registry}) but scales by "
                f"{scale:g} / shifts by {shift:g}, not {fmt.scale:g} / {fmt.shift:g}: treated as unknown",
            )
        return ModelFormat(fmt, name)
    return ModelFormat(None, name, f"ComfyUI's latent format {name} is not one latentbridge knows")


@dataclass(frozen=True, slots=True)
class Tag:
    """What the pack knows about a LATENT, stored in its dict under :data:`TAG_KEY`.

    Attributes:
        format: the registry format name ("" when unknown).
        space: the samples' space ("raw", "model" or "unknown"); ComfyUI's space for the family.
        channels: the samples' channel count when tagged; a tag whose count differs is stale.
        ndim: the samples' rank when tagged.
        provenance: where the latent came from (latentbridge's Provenance).
        metadata: string metadata of the file it was loaded from (ComfyUI ``prompt``/``workflow``), else empty.
        source: what tagged it ("Load Latent (latentbridge) x.latent", "Transfer Latent", …).
    """

    format: str
    space: str
    channels: int
    ndim: int
    provenance: Provenance = field(default_factory=Provenance)
    metadata: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    def fits(self, samples: torch.Tensor) -> bool:
        """True when ``samples`` still has the rank and channel count this tag was made for."""
        return samples.ndim == self.ndim and samples.ndim >= 2 and int(samples.shape[1]) == self.channels


@dataclass(frozen=True, slots=True)
class FromComfy:
    """A LATENT read into a Latent, and how its format and space were decided.

    Attributes:
        latent: the Latent (samples as given: ComfyUI's space, NCHW or NCTHW).
        format_source: "model" (the connected MODEL), "tag" (the pack's tag), "given" or "" (unknown).
        notes: what a user may want to know (a stale tag, a MODEL format the registry lacks …).
        tag: the dict's tag when it was used, else None.
    """

    latent: Latent
    format_source: str
    notes: tuple[str, ...] = ()
    tag: Tag | None = None


def samples_of(latent: Any, what: str = "samples") -> torch.Tensor:
    """The ``samples`` tensor of a LATENT dict, checked: a plain 4-D image or 5-D video tensor.

    Raises:
        InputTypeError: not a LATENT dict, or a nested tensor (LTX-AV audio + video).
        ShapeError: another rank (audio latents are [N, C, L]).
    """
    if not isinstance(latent, Mapping) or not isinstance(latent.get("samples"), torch.Tensor):
        got = type(latent).__name__ if not isinstance(latent, Mapping) else f"a dict with keys {sorted(latent)}"
        raise InputTypeError(f"{what}: expected a ComfyUI LATENT (a dict with a 'samples' tensor), got {got}")
    samples: torch.Tensor = latent["samples"]
    if samples.is_nested:
        raise InputTypeError(
            f"{what}: this LATENT holds a nested tensor (LTX-Video audio + video in one latent); latentbridge reads "
            "image and video latents only: split it with ComfyUI's LTXV separate-latents node first"
        )
    if samples.ndim not in (4, 5):
        kind = "an audio latent [N, C, L]" if samples.ndim == 3 else f"a {samples.ndim}-D tensor"
        raise ShapeError(
            f"{what}: the LATENT holds {kind} of shape {tuple(samples.shape)}; latentbridge reads image latents "
            "[N, C, H, W] and video latents [N, C, T, H, W]"
        )
    if not samples.is_floating_point():
        raise InputTypeError(f"{what}: the LATENT's samples are {samples.dtype}; a latent is a float tensor")
    return samples


def tag_of(latent: Mapping[str, Any]) -> Tag | None:
    """The pack's tag in a LATENT dict, or None."""
    tag = latent.get(TAG_KEY)
    return tag if isinstance(tag, Tag) else None


def space_for_channels(channels: int, dims: int) -> str:
    """ComfyUI's space for an untagged LATENT of ``channels`` channels: the one space every registry format of that
    ComfyUI channel count has there ("model" for 128 channels: FLUX.2, LTX-Video), else "raw" when some format has
    it raw, else "unknown"."""
    spaces = set()
    for fmt in list_formats().values():
        comfy_channels, _ = fmt.space_shape(fmt.comfy_space)
        if comfy_channels == channels and fmt.dims == dims:
            spaces.add(fmt.comfy_space)
    if len(spaces) == 1:
        return spaces.pop()
    return "raw" if not spaces else "unknown"


def from_comfy(
    latent: Any, model: ModelFormat | None = None, *, format: LatentFormat | None = None, what: str = "samples"
) -> FromComfy:
    """A LATENT dict as a Latent: format from ``format`` (given), the MODEL, or the pack's tag; ComfyUI's space.

    Args:
        latent: the LATENT dict.
        model: what the connected MODEL's latent format says (:func:`model_format`), or None.
        format: a format the user chose on the node (wins over everything).
        what: the input's name, for messages.

    Returns:
        A :class:`FromComfy`; the Latent's tensor is the samples tensor itself (no copy), layout NCHW or NCTHW.
    """
    samples = samples_of(latent, what)
    layout = "NCHW" if samples.ndim == 4 else "NCTHW"
    dims = samples.ndim - 2
    notes: list[str] = []
    tag = tag_of(latent)
    if tag is not None and not tag.fits(samples):
        notes.append(
            f"the latentbridge tag ({tag.source or 'an earlier node'}: {tag.format or 'format unknown'}, "
            f"{tag.channels} ch) no longer fits these {samples.shape[1]}-channel samples; ignored"
        )
        tag = None
    fmt: LatentFormat | None = None
    source = ""
    if format is not None:
        fmt, source = format, "given"
    elif model is not None and model.format is not None:
        fmt, source = model.format, "model"
    elif tag is not None and tag.format:
        fmt, source = get_format(tag.format), "tag"
    if model is not None and model.format is None and model.note:
        notes.append(model.note)
    if source == "model" and fmt is not None and tag is not None and tag.format and tag.format != fmt.name:
        notes.append(
            f"the MODEL's latent format is {fmt.name} but the latent was tagged {tag.format} by "
            f"{tag.source or 'an earlier node'}: read as {fmt.name}"
        )
    space = fmt.comfy_space if fmt is not None else space_for_channels(int(samples.shape[1]), dims)
    provenance = tag.provenance if tag is not None else Provenance(tool="ComfyUI")
    lat = Latent(samples, format=fmt, space=as_space(space), layout=layout, provenance=provenance)
    return FromComfy(lat, source, tuple(notes), tag)


def to_comfy(
    latent: Latent,
    base: Mapping[str, Any] | None = None,
    *,
    source: str = "",
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A LATENT dict from a Latent: samples in ComfyUI's space for its format (float32, NCHW/NCTHW), tagged.

    Args:
        latent: the latent, in any space its format can convert (:func:`latentbridge.files.comfy_ready`).
        base: the LATENT dict it replaces: its other keys (``noise_mask``, ``batch_index`` …) are kept while the
            batch size is unchanged; a different batch size drops ``batch_index`` and ``noise_mask`` (they count
            samples of the old batch).
        source: what made it, for the tag.
        metadata: the string metadata of the file it was read from, for the tag (default: the base's tag's).

    Raises:
        IncompatibleError: a model-space latent of unknown format (ComfyUI's space cannot be reached).
    """
    ready = comfy_ready(latent)
    samples = ready.tensor.float().contiguous()
    out: dict[str, Any] = dict(base) if base is not None else {}
    old = out.get("samples")
    if isinstance(old, torch.Tensor) and old.shape[:1] != samples.shape[:1]:
        out.pop("batch_index", None)
        out.pop("noise_mask", None)
    out["samples"] = samples
    old_tag = tag_of(base) if base is not None else None
    out[TAG_KEY] = Tag(
        ready.format_name,
        ready.space,
        int(samples.shape[1]),
        samples.ndim,
        ready.provenance,
        dict(metadata) if metadata is not None else old_tag.metadata if old_tag is not None else {},
        source,
    )
    return out


def retag(latent: Mapping[str, Any], found: FromComfy, *, source: str, format: LatentFormat | None = None) -> dict:
    """The same LATENT dict (samples untouched) with a tag naming ``format`` (or the one ``found`` used)."""
    samples = samples_of(latent)
    fmt = format if format is not None else found.latent.format
    out = dict(latent)
    metadata = found.tag.metadata if found.tag is not None else {}
    out[TAG_KEY] = Tag(
        fmt.name if fmt is not None else "",
        fmt.comfy_space if fmt is not None else found.latent.space,  # the samples' space does not change
        int(samples.shape[1]),
        samples.ndim,
        found.latent.provenance,
        metadata,
        source,
    )
    return out


def images_to_comfy(images: torch.Tensor) -> torch.Tensor:
    """latentbridge images [N, 3, H, W] (video [N, 3, T, H, W]) in [0, 1] -> ComfyUI IMAGE [N(·T), H, W, 3] float32
    on the CPU, video frames folded into the batch as ComfyUI's VAEDecode does."""
    if images.ndim == 5:
        images = images.movedim(2, 1).flatten(0, 1)
    return images.movedim(1, -1).float().cpu().contiguous()


def images_from_comfy(images: Any, what: str = "images") -> torch.Tensor:
    """ComfyUI IMAGE [N, H, W, C] in [0, 1] -> latentbridge images [N, 3, H, W] in [0, 1] (RGB; alpha dropped).

    Raises:
        InputTypeError / ShapeError: not an IMAGE tensor.
    """
    if not isinstance(images, torch.Tensor):
        raise InputTypeError(f"{what}: expected a ComfyUI IMAGE tensor [N, H, W, 3], got {type(images).__name__}")
    if images.ndim != 4 or images.shape[-1] not in (3, 4):
        raise ShapeError(f"{what}: expected a ComfyUI IMAGE [N, H, W, 3] in [0, 1], got shape {tuple(images.shape)}")
    return images[..., :3].movedim(-1, 1).float()
