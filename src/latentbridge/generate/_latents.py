"""The first two stages: an empty latent of the right shape, and seeded noise that is the same on every device.

Both stages work in **model space** (what the diffusion model sees: scaled, shifted, normalised and, for FLUX.2,
2x2-packed to 128 channels at 16x) and in the format's canonical layout (NCHW for images, NCTHW for video), the
shape diffusers' pipelines draw their noise in before any token packing (FLUX.1 packs the [N, 16, H/8, W/8] draw
into [N, L, 64] tokens, FLUX.2 its [N, 128, H/16, W/16] draw into [N, L, 128]).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from latentbridge.errors import ShapeError
from latentbridge.formats import LatentFormat, get_format, latent_frames, nearest_sizes
from latentbridge.latent import Latent, Provenance

TOOL = "latentbridge generate"


def with_stage(provenance: Provenance, stage: str, **extra: object) -> Provenance:
    """``provenance`` with ``extra["stage"] = stage`` (and any other keys) set, the rest kept."""
    known = dict(provenance.extra)
    known.update({k: str(v) for k, v in extra.items()}, stage=stage)
    return dataclasses.replace(provenance, tool=TOOL, extra=tuple(sorted(known.items())))


def _size_error(fmt: LatentFormat, what: str, size: int) -> ShapeError:
    lo, hi = nearest_sizes(fmt.size_multiple, size)
    return ShapeError(
        f"{fmt.name} takes image sizes that are multiples of {fmt.size_multiple} px "
        f"({fmt.source('size_multiple')}); {what} {size} is not: use {lo} or {hi}"
    )


def latent_size(format: str | LatentFormat, width: int, height: int, frames: int | None = None) -> tuple[int, ...]:
    """Model-space latent size (without batch and channels) for a ``width`` x ``height`` image or video.

    Returns:
        (h, w) for image formats, (t, h, w) for video formats (``t`` latent frames).

    Raises:
        ShapeError: a size that is not a multiple of the format's ``size_multiple`` (the message names the nearest
            valid sizes), a frame count that breaks the format's frame rule (e.g. 4n+1; the nearest valid counts
            are named), or frames given for an image format.
    """
    fmt = get_format(format)
    for what, size in (("width", width), ("height", height)):
        if size < fmt.size_multiple or size % fmt.size_multiple:
            raise _size_error(fmt, what, size)
    ratio = fmt.model_spatial_ratio
    hw = (height // ratio, width // ratio)
    if fmt.dims == 2:
        if frames is not None:
            raise ShapeError(f"{fmt.name} is an image format: it takes no frame count (got frames={frames})")
        return hw
    return (latent_frames(fmt, 1 if frames is None else frames), *hw)


def empty_latent(
    format: str | LatentFormat,
    width: int,
    height: int,
    frames: int | None = None,
    batch: int = 1,
) -> Latent:
    """A zero latent of the right shape: the start of a text-to-image (or text-to-video) run.

    Args:
        format: a latent-format name or value (see ``latentbridge formats``).
        width, height: pixel size of the image to make; multiples of the format's ``size_multiple`` (SD1/SDXL 8,
            SD3/FLUX.1/FLUX.2 16, Sana 32 ...).
        frames: pixel frames for video formats (Wan, HunyuanVideo, CogVideoX: 4n+1; LTX-Video 8n+1); None for
            images (and one frame for video formats).
        batch: number of latents (N).

    Returns:
        A :class:`~latentbridge.latent.Latent` of zeros in **model** space, float32, canonical layout:
        [N, C_model, H / r, W / r] for images, [N, C_model, T, H / r, W / r] for video, where C_model and r are
        the format's model-space channels and pixels per cell (FLUX.2: 128 ch, 16 px; SD1: 4 ch, 8 px).
        ComfyUI's EmptyLatentImage holds zeros in its raw LATENT instead; for SD3/FLUX.1 that is ``-shift * scale``
        in model space, which only matters for partial denoising (a full txt2img run replaces it by noise).

    Raises:
        ShapeError: sizes or frame counts the format does not take (with the nearest valid ones), batch < 1.
    """
    fmt = get_format(format)
    if batch < 1:
        raise ShapeError(f"batch must be a positive number of latents, got {batch}")
    size = latent_size(fmt, width, height, frames)
    tensor = torch.zeros((batch, fmt.model_channels, *size), dtype=torch.float32)
    frames_note = f"x{frames}f" if frames is not None else ""
    step = f"empty_latent {fmt.name} {width}x{height}{frames_note} batch {batch}"
    provenance = with_stage(Provenance(history=(step,)), "empty_latent")
    return Latent(tensor=tensor, format=fmt, space="model", layout=fmt.layout, provenance=provenance)


def item_seeds(seed: int, batch: int) -> tuple[int, ...]:
    """A1111's per-image seeds for a batch: ``seed, seed + 1, ...``."""
    return tuple(seed + i for i in range(batch))


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"a seed is an int, got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"a seed is an integer in [0, 2**64), got {seed}; torch's CPU generator takes no other")
    return seed


def draw_noise(shape: Sequence[int], seed: int | Sequence[int], *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise of ``shape`` from torch's CPU generator (the same numbers on every machine).

    Args:
        shape: full shape, batch first.
        seed: one int: the whole batch drawn at once from ``torch.Generator("cpu").manual_seed(seed)``: the
            numbers ComfyUI's ``prepare_noise`` draws (it seeds the global CPU generator with
            ``torch.manual_seed(seed)``, the same stream) and diffusers draws with one CPU generator for the batch.
            A sequence of ints, one per batch item: item i drawn alone from its own generator, as diffusers does
            with a list of generators (and A1111 with seeds seed, seed + 1, ...: :func:`item_seeds`).
        dtype: the dtype the numbers are drawn in. torch's CPU normal sampler gives other float16 / bfloat16
            values than float32 cast down when the element count is not a multiple of 16 (its vectorised path
            fills 16 at a time and the tail differs), so match the tool: ComfyUI draws in the latent's dtype
            (float32 for its empty latents), diffusers in the pipeline's dtype.

    Returns:
        CPU tensor of ``shape`` in ``dtype``.
    """
    shape = tuple(int(s) for s in shape)
    if not shape or any(s < 1 for s in shape):
        raise ShapeError(f"noise needs a shape of positive sizes, batch first, got {shape}")
    if isinstance(seed, int):  # bool too: _check_seed refuses it
        generator = torch.Generator("cpu").manual_seed(_check_seed(seed))
        return torch.randn(shape, generator=generator, dtype=dtype)
    seeds = [_check_seed(s) for s in seed]
    if len(seeds) != shape[0]:
        raise ShapeError(f"{len(seeds)} per-item seeds for a batch of {shape[0]}: give one seed per item, or one int")
    items = [torch.randn((1, *shape[1:]), generator=torch.Generator("cpu").manual_seed(s), dtype=dtype) for s in seeds]
    return torch.cat(items)


def noise(
    shape_or_latent: Latent | Sequence[int],
    seed: int | Sequence[int],
    *,
    format: str | LatentFormat | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> Latent:
    """Seeded noise for a latent, drawn on the CPU and then moved to ``device``.

    Args:
        shape_or_latent: a :class:`~latentbridge.latent.Latent` (usually from :func:`empty_latent`; the noise takes
            its shape, format, layout and provenance) or a full shape, batch first, in model space.
        seed: one int for the batch, or one int per item (see :func:`draw_noise` for which tool draws which way).
        format: the format of a bare shape (ignored for a Latent, which has its own).
        dtype: the dtype the noise is drawn in (see :func:`draw_noise`); the result keeps it.
        device: where the result goes; the numbers do not depend on it.

    Returns:
        A :class:`~latentbridge.latent.Latent` of unit-variance noise in **model** space (the space diffusion
        models add noise in), same shape as the input; provenance records the seed(s) and the stage.

    Raises:
        ShapeError: a shape with non-positive sizes, or per-item seeds that do not match the batch.
    """
    if isinstance(shape_or_latent, Latent):
        base = shape_or_latent
        if base.space == "raw":
            raise ShapeError(
                "noise is drawn in model space, but this latent is raw VAE output: convert it with "
                "latent.to_space('model') first (or pass its model-space shape)"
            )
        shape: tuple[int, ...] = base.shape
        fmt, layout, provenance = base.format, base.layout, base.provenance
    else:
        shape = tuple(int(s) for s in shape_or_latent)
        fmt = get_format(format) if format is not None else None
        layout = fmt.layout if fmt is not None else ("NCHW" if len(shape) == 4 else "NCTHW")
        if fmt is not None and len(shape) != fmt.dims + 2:
            raise ShapeError(f"a {fmt.name} latent has {fmt.dims + 2} dimensions ({fmt.layout}), got shape {shape}")
        provenance = Provenance(tool=TOOL)
    tensor = draw_noise(shape, seed, dtype=dtype).to(device)
    seeds = seed if isinstance(seed, int) else tuple(seed)
    first = seeds if isinstance(seeds, int) else seeds[0]
    how = f"seed {seeds}" if isinstance(seeds, int) else f"seeds {', '.join(map(str, seeds))}"
    seed_text = str(seeds) if isinstance(seeds, int) else ",".join(map(str, seeds))
    provenance = with_stage(dataclasses.replace(provenance, seed=first), "noise", seeds=seed_text)
    provenance = provenance.then(f"noise {how} cpu-generator {dtype}".replace("torch.", ""))
    return Latent(tensor=tensor, format=fmt, space="model", layout=layout, provenance=provenance)
