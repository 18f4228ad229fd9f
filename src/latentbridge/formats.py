"""The registry of latent formats, and the pure functions that move a latent between its two spaces.

Two spaces, named the same everywhere in latentbridge:

* **raw** — what the VAE encoder outputs (the posterior mean, or a sample of it) and what its decoder
  takes. ComfyUI's ``LATENT`` and ``.latent`` files hold raw latents (model space for FLUX.2 and LTX-Video).
* **model** — what the diffusion model sees: after scale/shift, per-channel mean/std normalisation,
  and (FLUX.2) the 2×2 patchify to 128 channels at 16× with BatchNorm statistics from the VAE file.
  diffusers pipelines, TAESD-family decoders and all preview paths work in model space.

The general formula, channel-wise (``c``) after packing::

    model = (pack(raw) - shift - mean[c]) * scale / std[c]
    raw   = unpack(model * std[c] / scale + shift + mean[c])

which reduces to SD1/SDXL ``model = raw * scale``, SD3/FLUX.1 ``(raw - shift) * scale``, Playground v2.5
``(raw - mean) * scale / std``, Wan ``(raw - mean) / std`` and FLUX.2 ``(patchify(raw) - bn_mean) /
sqrt(bn_var + eps)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch

from latentbridge import _format_data as D
from latentbridge.errors import ShapeError, UnknownFormatError, did_you_mean

__all__ = [
    "SOURCE_KEYS",
    "SPACES",
    "LatentFormat",
    "NormSource",
    "NormStats",
    "Space",
    "convert",
    "find_formats",
    "formats",
    "get_format",
    "grid_options",
    "latent_frames",
    "latent_shape",
    "model_to_raw",
    "nearest_sizes",
    "pack",
    "pixel_frames",
    "raw_to_model",
    "token_formats",
    "tokens_to_model",
    "unpack",
]

Space = Literal["raw", "model"]
NormSource = Literal["none", "registry", "vae"]
SPACES: tuple[str, ...] = ("raw", "model")

# Every source key a format must explain, whatever its values.
SOURCE_KEYS: tuple[str, ...] = ("geometry", "scale", "norm", "rgb", "size_multiple")


@dataclass(frozen=True, slots=True)
class LatentFormat:
    """One latent space: its geometry, its raw↔model conversion, its preview factors and their sources.

    Every field exists on every format. Empty tuples mean "not public / not applicable" and each such
    choice is explained in ``sources``.
    """

    name: str  # registry key, "flux1"
    title: str  # one line for humans
    aliases: tuple[str, ...]  # models that share this latent space
    channels: int  # raw VAE latent channels (unpacked)
    spatial_ratio: int  # pixels per raw latent cell along H and W: 8, 16, 32
    dims: int  # 2 = image (N,C,H,W), 3 = video (N,C,T,H,W)
    temporal_ratio: int  # frames per latent frame (1 for images)
    causal_first_frame: bool  # video: first frame kept alone, so frames = temporal_ratio * n + 1
    scale: float  # model = (raw - shift - mean) * scale / std
    shift: float
    mean: tuple[float, ...]  # per model-space channel; () when the family does not normalise per channel
    std: tuple[float, ...]
    norm_source: NormSource  # "registry" (mean/std above), "vae" (read from the VAE file), "none"
    norm_eps: float  # added to the VAE's running variance before sqrt (FLUX.2 BatchNorm: 1e-4)
    patch: int  # packing: model space = patch×patch space-to-depth of raw (FLUX.2: 2); 1 = none
    size_multiple: int  # pixel sizes the family's diffusion models accept are multiples of this
    rgb_factors: tuple[tuple[float, float, float], ...]  # model-space (unpacked) latent -> RGB in [-1, 1]
    rgb_bias: tuple[float, float, float]
    preview_decoder: str  # name of the tiny preview decoder of this family ("" when none is public)
    sources: tuple[tuple[str, str], ...] = field(default=())  # (key, where the numbers come from)
    # diffusers pipelines of this family hand out `output_type="latent"` as a token sequence [N, L, D]: model-space
    # cells packed token_patch×token_patch (FLUX.1: 2 → D = 64; FLUX.2: 1 over its packed 128 ch; Wan 2.1: 2, the
    # one-frame latents of Qwen-Image); 0 = they do not
    token_patch: int = 0

    def __post_init__(self) -> None:
        def bad(msg: str) -> ValueError:
            return ValueError(f"latent format {self.name!r}: {msg}")

        if not self.name or self.name != self.name.strip():
            raise bad("the name must be a non-empty string without surrounding spaces")
        if self.channels < 1 or self.spatial_ratio < 1 or self.patch < 1 or self.temporal_ratio < 1:
            raise bad("channels, spatial_ratio, temporal_ratio and patch must be positive integers")
        if self.dims not in (2, 3):
            raise bad(f"dims must be 2 (image) or 3 (video), got {self.dims}")
        if self.token_patch < 0:
            raise bad("token_patch is 0 (no token form) or a positive patch size")
        if self.token_patch and "tokens" not in dict(self.sources):
            raise bad("a token form (token_patch > 0) needs a 'tokens' source")
        if self.dims == 2 and (self.temporal_ratio != 1 or self.causal_first_frame):
            raise bad("an image format has temporal_ratio 1 and no causal first frame")
        if not (math.isfinite(self.scale) and self.scale > 0 and math.isfinite(self.shift)):
            raise bad(f"scale must be finite and positive and shift finite, got {self.scale}, {self.shift}")
        if len(self.mean) != len(self.std):
            raise bad(f"mean has {len(self.mean)} values but std has {len(self.std)}")
        if self.norm_source == "registry":
            if len(self.mean) != self.model_channels:
                raise bad(f"norm_source 'registry' needs {self.model_channels} mean/std values, got {len(self.mean)}")
            if any(s <= 0 for s in self.std):
                raise bad("every std value must be positive")
        elif self.mean:
            raise bad(f"mean/std are given but norm_source is {self.norm_source!r}; use 'registry'")
        if self.rgb_factors and len(self.rgb_factors) != self.channels:
            raise bad(f"rgb_factors needs one row per raw channel ({self.channels}), got {len(self.rgb_factors)}")
        if any(len(row) != 3 for row in self.rgb_factors):
            raise bad("every rgb_factors row needs 3 values (R, G, B)")
        if len(self.rgb_bias) != 3:
            raise bad("rgb_bias needs 3 values (R, G, B)")
        if self.size_multiple % self.spatial_ratio:
            raise bad(f"size_multiple {self.size_multiple} must be a multiple of spatial_ratio {self.spatial_ratio}")
        keys = [k for k, _ in self.sources]
        missing = [k for k in SOURCE_KEYS if k not in keys]
        if missing or len(set(keys)) != len(keys):
            raise bad(f"sources must name each of {SOURCE_KEYS} once; missing {missing}")

    # --- derived geometry -------------------------------------------------------------------------------
    @property
    def model_channels(self) -> int:
        """Channels in model space (after packing)."""
        return self.channels * self.patch * self.patch

    @property
    def model_spatial_ratio(self) -> int:
        """Pixels per model-space latent cell."""
        return self.spatial_ratio * self.patch

    @property
    def token_dim(self) -> int:
        """Features per token of the diffusers token form (0 when the family has none)."""
        return self.model_channels * self.token_patch**2

    @property
    def token_spatial_ratio(self) -> int:
        """Pixels per token along H and W (0 when the family has no token form)."""
        return self.model_spatial_ratio * self.token_patch

    @property
    def layout(self) -> str:
        """The canonical tensor layout of this format: NCHW for images, NCTHW for video."""
        return "NCHW" if self.dims == 2 else "NCTHW"

    @property
    def comfy_space(self) -> Space:
        """The space ComfyUI's ``LATENT`` (and its ``.latent`` files) holds for this format.

        ComfyUI's VAE objects output raw latents and its latent formats' ``process_in`` applies scale/shift or
        mean/std — except where the statistics live in the VAE file (FLUX.2's BatchNorm, LTX-Video's
        per-channel statistics): there ComfyUI's VAE normalises (and packs) itself, ``process_in`` is the
        identity and the LATENT holds the model-space tensor (FLUX.2: 128 ch / 16×).
        """
        return "model" if self.norm_source == "vae" else "raw"

    @property
    def frame_rule(self) -> str:
        """The pixel-frame counts this video format takes ("4n+1"), or "" for images."""
        if self.dims == 2:
            return ""
        return f"{self.temporal_ratio}n+1" if self.causal_first_frame else f"{self.temporal_ratio}n"

    def source(self, key: str) -> str:
        """Where the numbers behind ``key`` (one of ``SOURCE_KEYS``) come from."""
        return dict(self.sources)[key]

    def space_shape(self, space: str) -> tuple[int, int]:
        """(channels, spatial ratio) of a latent of this format in ``space``."""
        _check_space(space)
        if space == "raw":
            return self.channels, self.spatial_ratio
        return self.model_channels, self.model_spatial_ratio

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field plus the derived geometry."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}
        out["sources"] = dict(self.sources)
        out.update(
            model_channels=self.model_channels,
            model_spatial_ratio=self.model_spatial_ratio,
            layout=self.layout,
            frame_rule=self.frame_rule,
        )
        return out


@dataclass(frozen=True, slots=True)
class NormStats:
    """Per-channel normalisation statistics read from a VAE file (FLUX.2 BatchNorm, LTX-Video).

    ``mean`` and ``std`` are 1-D float32 tensors with one value per **model-space** channel; ``std``
    already includes the epsilon (``sqrt(running_var + eps)``).
    """

    mean: torch.Tensor
    std: torch.Tensor
    source: str  # "bn.running_mean/var of <file>"

    @staticmethod
    def from_running(mean: torch.Tensor, var: torch.Tensor, eps: float, source: str) -> NormStats:
        """Build from BatchNorm running statistics: ``std = sqrt(var + eps)``."""
        return NormStats(mean.detach().float().flatten(), (var.detach().float().flatten() + eps).sqrt(), source)


# --- packing --------------------------------------------------------------------------------------------


def pack(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Space-to-depth: [N, C, H, W] -> [N, C·p², H/p, W/p], channel order (c, dy, dx) as FLUX.2 and diffusers.

    The identity for ``patch == 1``. Raises ShapeError when H or W is not a multiple of ``patch``.
    """
    if patch == 1:
        return x
    if x.ndim != 4:
        raise ShapeError(f"pack needs an image latent [N, C, H, W], got shape {tuple(x.shape)}")
    n, c, h, w = x.shape
    if h % patch or w % patch:
        raise ShapeError(
            f"cannot pack a {h}×{w} latent into {patch}×{patch} patches: H and W must be multiples of {patch}; "
            f"crop or pad the latent to {h - h % patch}×{w - w % patch} or {h + (-h) % patch}×{w + (-w) % patch}"
        )
    x = x.reshape(n, c, h // patch, patch, w // patch, patch).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, c * patch * patch, h // patch, w // patch)


def unpack(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Depth-to-space, the inverse of :func:`pack`: [N, C·p², h, w] -> [N, C, h·p, w·p]."""
    if patch == 1:
        return x
    if x.ndim != 4:
        raise ShapeError(f"unpack needs an image latent [N, C, H, W], got shape {tuple(x.shape)}")
    n, cp, h, w = x.shape
    if cp % (patch * patch):
        raise ShapeError(f"cannot unpack {cp} channels with patch {patch}: channels must be a multiple of {patch**2}")
    c = cp // (patch * patch)
    x = x.reshape(n, c, patch, patch, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c, h * patch, w * patch)


# --- diffusers token sequences --------------------------------------------------------------------------


def token_formats(dim: int) -> list[LatentFormat]:
    """Registered formats whose diffusers token form has ``dim`` features per token (FLUX.1: 64, FLUX.2: 128)."""
    return [f for f in formats().values() if f.token_patch and f.token_dim == dim]


def grid_options(length: int, limit: int = 4) -> list[tuple[int, int]]:
    """Token grids (rows, columns) with ``length`` tokens, the most square first, at most ``limit`` of them
    (both orientations of each shape: a token count alone cannot tell 32×64 from 64×32)."""
    pairs = [(h, length // h) for h in range(1, length + 1) if length % h == 0]
    pairs.sort(key=lambda p: (abs(math.log(p[0] / p[1])), -p[0]))
    return pairs[:limit]


def tokens_to_model(x: torch.Tensor, fmt: LatentFormat, grid: tuple[int, int]) -> torch.Tensor:
    """A diffusers token sequence -> the format's model-space latent.

    Args:
        x: [N, L, D] (or [L, D]) tokens as ``output_type="latent"`` returns them, D = ``fmt.token_dim``.
        fmt: a format with a token form (``token_patch`` > 0).
        grid: (rows, columns) of the token grid, rows·columns = L; the image is rows·r × columns·r pixels,
            r = ``fmt.token_spatial_ratio`` (FLUX.1 and FLUX.2: 16).

    Returns:
        [N, C_model, rows·p, columns·p] model-space latent (FLUX.1: 16 ch at 8×; FLUX.2: packed 128 ch at 16×),
        same dtype, p = ``fmt.token_patch``; for a video format (Qwen-Image's Wan 2.1 tokens) one frame,
        [N, C_model, 1, rows·p, columns·p].

    Raises:
        ShapeError: not a token sequence of this format, or a grid that does not hold L tokens.
    """
    if not fmt.token_patch:
        raise ShapeError(f"{fmt.name} has no diffusers token form; its pipelines hand out spatial latents")
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3 or x.shape[-1] != fmt.token_dim:
        raise ShapeError(f"a {fmt.name} token sequence is [N, L, {fmt.token_dim}], got shape {tuple(x.shape)}")
    rows, cols = grid
    n, length, dim = x.shape
    if rows < 1 or cols < 1 or rows * cols != length:
        options = ", ".join(f"{h}x{w}" for h, w in grid_options(length))
        raise ShapeError(
            f"grid {rows}x{cols} holds {rows * cols} tokens but the sequence has {length}; grids that fit: {options}"
        )
    cells = unpack(x.transpose(1, 2).reshape(n, dim, rows, cols), fmt.token_patch)
    return cells.unsqueeze(2) if fmt.dims == 3 else cells


# --- space conversion -----------------------------------------------------------------------------------


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise ValueError(f"unknown space {space!r}: expected one of {SPACES}")


def _norm_tensors(fmt: LatentFormat, stats: NormStats | None, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) as [1, C, 1, 1(, 1)] tensors on ``ref``'s device in float32."""
    shape = (1, fmt.model_channels) + (1,) * (ref.ndim - 2)
    if fmt.norm_source == "vae":
        if stats is None:
            raise ValueError(
                f"format {fmt.name!r} normalises with statistics stored in its VAE file ({fmt.source('norm')}); "
                "pass stats=NormStats read from that VAE (latentbridge.weights reads them) to convert spaces"
            )
        mean, std = stats.mean, stats.std
        if mean.numel() != fmt.model_channels or std.numel() != fmt.model_channels:
            raise ShapeError(
                f"format {fmt.name!r} needs {fmt.model_channels} normalisation values, "
                f"the given statistics ({stats.source}) have {mean.numel()}"
            )
    elif fmt.norm_source == "registry":
        mean, std = torch.tensor(fmt.mean), torch.tensor(fmt.std)
    else:
        mean, std = torch.zeros(fmt.model_channels), torch.ones(fmt.model_channels)
    return (
        mean.to(ref.device, torch.float32).reshape(shape),
        std.to(ref.device, torch.float32).reshape(shape),
    )


def _check_channels(x: torch.Tensor, fmt: LatentFormat, space: str) -> None:
    channels, _ = fmt.space_shape(space)
    if x.ndim != fmt.dims + 2:
        want = "[N, C, H, W]" if fmt.dims == 2 else "[N, C, T, H, W]"
        raise ShapeError(
            f"a {space}-space {fmt.name} latent is {want} ({fmt.dims + 2}-D), got shape {tuple(x.shape)}; "
            "add the batch dimension with x[None] or convert the layout first (latentbridge.latent.to_layout)"
        )
    if x.shape[1] != channels:
        raise ShapeError(
            f"a {space}-space {fmt.name} latent has {channels} channels on dim 1, got shape {tuple(x.shape)}; "
            f"check the space (raw: {fmt.channels} ch, model: {fmt.model_channels} ch) and the format"
        )


def raw_to_model(raw: torch.Tensor, fmt: LatentFormat, stats: NormStats | None = None) -> torch.Tensor:
    """Raw VAE latent -> model-space latent.

    Args:
        raw: [N, C, H, W] (image) or [N, C, T, H, W] (video), raw space, any float dtype.
        fmt: the latent format.
        stats: per-channel statistics from the VAE file, required when ``fmt.norm_source == "vae"``.

    Returns:
        Model-space latent, [N, C·p², H/p, W/p] for packed formats, in the input dtype
        (computed in float32).
    """
    _check_channels(raw, fmt, "raw")
    x = pack(raw.float(), fmt.patch)
    mean, std = _norm_tensors(fmt, stats, x)
    return ((x - fmt.shift - mean) * (fmt.scale / std)).to(raw.dtype)


def model_to_raw(model: torch.Tensor, fmt: LatentFormat, stats: NormStats | None = None) -> torch.Tensor:
    """Model-space latent -> raw VAE latent, the exact inverse of :func:`raw_to_model`.

    Args:
        model: model-space latent ([N, C·p², h, w] for packed formats).
        fmt: the latent format.
        stats: per-channel statistics from the VAE file, required when ``fmt.norm_source == "vae"``.

    Returns:
        Raw latent [N, C, H, W] or [N, C, T, H, W], in the input dtype.
    """
    _check_channels(model, fmt, "model")
    mean, std = _norm_tensors(fmt, stats, model)
    x = model.float() * (std / fmt.scale) + fmt.shift + mean
    return unpack(x, fmt.patch).to(model.dtype)


def convert(x: torch.Tensor, fmt: LatentFormat, src: str, dst: str, stats: NormStats | None = None) -> torch.Tensor:
    """Convert ``x`` from space ``src`` to space ``dst`` ("raw" or "model"); the identity when they agree."""
    _check_space(src)
    _check_space(dst)
    if src == dst:
        return x
    return raw_to_model(x, fmt, stats) if src == "raw" else model_to_raw(x, fmt, stats)


# --- sizes ----------------------------------------------------------------------------------------------


def latent_frames(fmt: LatentFormat, frames: int) -> int:
    """Latent frame count for ``frames`` pixel frames; raises ShapeError when the frame rule is broken."""
    if fmt.dims == 2:
        raise ShapeError(f"{fmt.name} is an image format: it has no frames")
    t = fmt.temporal_ratio
    rest = frames - 1 if fmt.causal_first_frame else frames
    if frames < 1 or rest % t:
        lo = rest - rest % t + (1 if fmt.causal_first_frame else 0)
        hi = lo + t
        raise ShapeError(f"{fmt.name} takes {fmt.frame_rule} frames, got {frames}; use {max(lo, 1)} or {hi} frames")
    return rest // t + (1 if fmt.causal_first_frame else 0)


def pixel_frames(fmt: LatentFormat, latent_t: int) -> int:
    """Pixel frame count a latent with ``latent_t`` frames decodes to."""
    if fmt.dims == 2:
        raise ShapeError(f"{fmt.name} is an image format: it has no frames")
    return (latent_t - 1) * fmt.temporal_ratio + 1 if fmt.causal_first_frame else latent_t * fmt.temporal_ratio


def nearest_sizes(multiple: int, size: int) -> tuple[int, int]:
    """The nearest multiples of ``multiple`` at or below and above ``size`` (both > 0)."""
    lo = max(multiple, size - size % multiple)
    hi = size + (-size) % multiple
    if hi == size:
        hi = size + multiple
    return lo, hi


def latent_shape(
    fmt: LatentFormat, height: int, width: int, *, batch: int = 1, frames: int | None = None, space: str = "raw"
) -> tuple[int, ...]:
    """Shape of the latent of a ``height``×``width`` image (or video of ``frames`` frames) in ``space``.

    Raises ShapeError naming the nearest valid sizes when the size does not divide.
    """
    channels, ratio = fmt.space_shape(space)
    for what, size in (("height", height), ("width", width)):
        if size < ratio or size % ratio:
            lo, hi = nearest_sizes(ratio, size)
            raise ShapeError(
                f"{fmt.name} {space}-space latents need pixel sizes that are multiples of {ratio}; "
                f"{what} {size} is not: use {lo} or {hi} (or --pad / --crop)"
            )
    hw = (height // ratio, width // ratio)
    if fmt.dims == 2:
        if frames is not None:
            raise ShapeError(f"{fmt.name} is an image format: do not pass frames")
        return (batch, channels, *hw)
    return (batch, channels, latent_frames(fmt, 1 if frames is None else frames), *hw)


# --- the registry ---------------------------------------------------------------------------------------

_NO_RGB = ("rgb", "no public latent->RGB factors; fit them with `latentbridge fit-preview`")
_NO_NORM = ("norm", "not normalised per channel")


def _fmt(
    name: str,
    title: str,
    aliases: Iterable[str],
    channels: int,
    spatial_ratio: int,
    *,
    sources: Mapping[str, str],
    dims: int = 2,
    temporal_ratio: int = 1,
    causal_first_frame: bool = False,
    scale: float = 1.0,
    shift: float = 0.0,
    mean: tuple[float, ...] = (),
    std: tuple[float, ...] = (),
    norm_source: NormSource = "none",
    norm_eps: float = 0.0,
    patch: int = 1,
    size_multiple: int | None = None,
    rgb_factors: tuple[tuple[float, float, float], ...] = (),
    rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0),
    preview_decoder: str = "",
    token_patch: int = 0,
) -> LatentFormat:
    if norm_source == "registry" and mean and "norm" not in sources:
        raise ValueError(f"{name}: registry mean/std need a 'norm' source")
    src = {"norm": _NO_NORM[1], "rgb": _NO_RGB[1], **sources}
    return LatentFormat(
        name=name,
        title=title,
        aliases=tuple(aliases),
        channels=channels,
        spatial_ratio=spatial_ratio,
        dims=dims,
        temporal_ratio=temporal_ratio,
        causal_first_frame=causal_first_frame,
        scale=scale,
        shift=shift,
        mean=tuple(mean),
        std=tuple(std),
        norm_source=norm_source,
        norm_eps=norm_eps,
        patch=patch,
        size_multiple=size_multiple if size_multiple is not None else spatial_ratio * patch,
        rgb_factors=tuple(tuple(r) for r in rgb_factors),  # type: ignore[misc]
        rgb_bias=rgb_bias,
        preview_decoder=preview_decoder,
        token_patch=token_patch,
        sources=tuple(src.items()),
    )


_KL_F8 = "AutoencoderKL f8 (LDM) configs: 4 latent channels, 3 downsamples"
_DIFFUSERS_PIPE = "diffusers pipeline checks (height % vae_scale_factor)"

_BUILTIN: tuple[LatentFormat, ...] = (
    _fmt(
        "sd1",
        "Stable Diffusion 1.x/2.x VAE (KL f8, 4 ch)",
        ("SD 1.4", "SD 1.5", "SD 2.0", "SD 2.1", "PixArt-α", "SVD / SVD-XT", "LCM-SD1.5", "Latent Consistency"),
        4,
        8,
        scale=0.18215,
        rgb_factors=D.SD1_RGB,
        preview_decoder="taesd",
        sources={
            "geometry": _KL_F8,
            "scale": "SD v1 config scale_factor 0.18215 (1/std of raw latents); diffusers vae.config.scaling_factor",
            "rgb": D.COMFY + " SD15.latent_rgb_factors",
            "size_multiple": _DIFFUSERS_PIPE + ": multiples of 8",
        },
    ),
    _fmt(
        "sdxl",
        "SDXL VAE (KL f8, 4 ch) — same shapes as sd1, different latent space",
        ("SDXL base", "SDXL refiner", "SSD-1B", "Pony", "Illustrious", "Kolors", "AuraFlow", "PixArt-Σ", "HunyuanDiT"),
        4,
        8,
        scale=0.13025,
        rgb_factors=D.SDXL_RGB,
        rgb_bias=D.SDXL_RGB_BIAS,
        preview_decoder="taesdxl",
        sources={
            "geometry": _KL_F8,
            "scale": "stabilityai/sdxl-vae config scaling_factor 0.13025",
            "rgb": D.COMFY + " SDXL.latent_rgb_factors(+bias)",
            "size_multiple": _DIFFUSERS_PIPE + ": multiples of 8",
        },
    ),
    _fmt(
        "playground25",
        "Playground v2.5: the SDXL VAE with per-channel mean/std normalisation",
        ("Playground v2.5",),
        4,
        8,
        scale=0.5,
        mean=D.PLAYGROUND25_MEAN,
        std=D.PLAYGROUND25_STD,
        norm_source="registry",
        rgb_factors=D.PLAYGROUND25_RGB,
        preview_decoder="taesdxl",
        sources={
            "geometry": _KL_F8,
            "scale": "playgroundai/playground-v2.5 vae config scaling_factor 0.5",
            "norm": "playground-v2.5 vae config latents_mean/latents_std (also " + D.COMFY + " SDXL_Playground_2_5)",
            "rgb": D.COMFY + " SDXL_Playground_2_5.latent_rgb_factors",
            "size_multiple": _DIFFUSERS_PIPE + ": multiples of 8",
        },
    ),
    _fmt(
        "sd_x4_upscaler",
        "Stable Diffusion ×4 upscaler VAE (4 ch, 4×)",
        ("stable-diffusion-x4-upscaler",),
        4,
        4,
        scale=0.08333,
        rgb_factors=D.SD_X4_RGB,
        sources={
            "geometry": "stabilityai/stable-diffusion-x4-upscaler vae config (2 downsamples)",
            "scale": "x4-upscaler vae config scaling_factor 0.08333",
            "rgb": D.COMFY + " SD_X4.latent_rgb_factors",
            "size_multiple": "latent cells are 4 px",
        },
    ),
    _fmt(
        "cascade_b",
        "Stable Cascade stage B output / stage A (VQGAN f4, 4 ch) latents",
        ("Stable Cascade stage B", "Würstchen v3 stage A"),
        4,
        4,
        scale=1.0 / 0.43,
        rgb_factors=D.CASCADE_B_RGB,
        sources={
            "geometry": "Stable Cascade stage A: VQGAN with 4× downscale and 4 latent channels",
            "scale": D.COMFY + " SC_B.scale_factor = 1/0.43",
            "rgb": D.COMFY + " SC_B.latent_rgb_factors",
            "size_multiple": "latent cells are 4 px",
        },
    ),
    _fmt(
        "sd3",
        "Stable Diffusion 3 / 3.5 VAE (KL f8, 16 ch)",
        ("SD 3.0 medium", "SD 3.5 large", "SD 3.5 medium", "SD 3.5 large turbo"),
        16,
        8,
        scale=1.5305,
        shift=0.0609,
        rgb_factors=D.SD3_RGB,
        rgb_bias=D.SD3_RGB_BIAS,
        preview_decoder="taesd3",
        size_multiple=16,
        sources={
            "geometry": "stabilityai/stable-diffusion-3-medium vae config latent_channels 16",
            "scale": "SD3 vae config scaling_factor 1.5305, shift_factor 0.0609",
            "rgb": D.COMFY + " SD3.latent_rgb_factors(+bias)",
            "size_multiple": "MMDiT patch size 2 on 8× latents: multiples of 16",
        },
    ),
    _fmt(
        "flux1",
        "FLUX.1 VAE (KL f8, 16 ch) — shared by Chroma, HiDream, Z-Image, Lumina2",
        ("FLUX.1 dev", "FLUX.1 schnell", "FLUX.1 Kontext", "Chroma", "HiDream-I1", "Z-Image", "Lumina Image 2.0"),
        16,
        8,
        scale=0.3611,
        shift=0.1159,
        rgb_factors=D.FLUX1_RGB,
        rgb_bias=D.FLUX1_RGB_BIAS,
        preview_decoder="taef1",
        size_multiple=16,
        token_patch=2,
        sources={
            "geometry": "black-forest-labs/FLUX.1-dev ae config: 16 latent channels, 8×",
            "tokens": "diffusers FluxPipeline._pack_latents: [N, 16, H, W] model-space latents -> [N, H/2·W/2, 64], "
            "features (c, dy, dx), tokens row by row; output_type='latent' returns them",
            "scale": "FLUX.1 ae scale_factor 0.3611, shift_factor 0.1159",
            "rgb": D.COMFY + " Flux.latent_rgb_factors(+bias)",
            "size_multiple": "2×2 patchify of 8× latents in the transformer: multiples of 16",
        },
    ),
    _fmt(
        "flux2",
        "FLUX.2 VAE: raw 32 ch / 8×; model space packed 2×2 to 128 ch / 16×, BatchNorm-normalised",
        ("FLUX.2 dev", "FLUX.2 Klein 4B", "FLUX.2 Klein 9B"),
        32,
        8,
        norm_source="vae",
        norm_eps=1e-4,
        patch=2,
        rgb_factors=D.FLUX2_RGB,
        rgb_bias=D.FLUX2_RGB_BIAS,
        preview_decoder="taef2",
        token_patch=1,
        sources={
            "geometry": "diffusers AutoencoderKLFlux2 config: latent_channels 32, patch_size (2, 2)",
            "tokens": "diffusers Flux2Pipeline._pack_latents: the packed, BatchNorm-normalised [N, 128, h, w] -> "
            "[N, h·w, 128], tokens row by row; output_type='latent' returns them (unpacking needs the grid)",
            "scale": "no scale/shift: the FLUX.2 pipeline normalises with BatchNorm statistics only",
            "norm": "bn.running_mean / bn.running_var (128 ch) in the VAE file, eps = config batch_norm_eps 1e-4",
            "rgb": D.COMFY + " Flux2.latent_rgb_factors(+bias), 32 rows for the unpacked normalised latent",
            "size_multiple": "2×2 packing of 8× latents: multiples of 16",
        },
    ),
    _fmt(
        "sana",
        "Sana DC-AE f32c32 (32 ch, 32×)",
        ("Sana 600M", "Sana 1.6B", "Sana 1.5", "SANA-Sprint"),
        32,
        32,
        scale=0.41407,
        preview_decoder="taesana",
        sources={
            "geometry": "mit-han-lab/dc-ae-f32c32-sana-1.0 config: 32 latent channels, 32× downscale",
            "scale": "DC-AE f32c32 sana config scaling_factor 0.41407",
            "size_multiple": "latent cells are 32 px",
        },
    ),
    _fmt(
        "hunyuan_image21",
        "HunyuanImage 2.1 VAE (64 ch, 32×)",
        ("HunyuanImage 2.1",),
        64,
        32,
        scale=0.75289,
        rgb_factors=D.HUNYUAN_IMAGE21_RGB,
        rgb_bias=D.HUNYUAN_IMAGE21_RGB_BIAS,
        sources={
            "geometry": "tencent/HunyuanImage-2.1 vae config: 64 latent channels, 32× spatial compression",
            "scale": D.COMFY + " HunyuanImage21.scale_factor 0.75289",
            "rgb": D.COMFY + " HunyuanImage21.latent_rgb_factors(+bias) (ComfyUI 0.8.0)",
            "size_multiple": "latent cells are 32 px",
        },
    ),
    _fmt(
        "wan21",
        "Wan 2.1 causal 3-D VAE (16 ch, 8×, 4× temporal); also Wan 2.2 14B and Qwen-Image",
        ("Wan 2.1", "Wan 2.2 14B (T2V/I2V)", "Qwen-Image", "Qwen-Image-Edit"),
        16,
        8,
        dims=3,
        temporal_ratio=4,
        causal_first_frame=True,
        mean=D.WAN21_MEAN,
        std=D.WAN21_STD,
        norm_source="registry",
        rgb_factors=D.WAN21_RGB,
        rgb_bias=D.WAN21_RGB_BIAS,
        preview_decoder="taew2_1",
        size_multiple=16,
        token_patch=2,
        sources={
            "geometry": "Wan-AI/Wan2.1 vae config z_dim 16, temperal_downsample (F,T,T): 8× spatial, 4× temporal",
            "tokens": "diffusers QwenImagePipeline._pack_latents: the normalised one-frame [N, 16, 1, H, W] -> "
            "[N, H/2·W/2, 64], features (c, dy, dx); output_type='latent' returns them (Wan 2.1's own pipelines "
            "hand out [N, 16, T, H, W])",
            "scale": "no scalar scale: Wan normalises per channel (scale 1)",
            "norm": "Wan2.1 vae config latents_mean/latents_std (identical in Qwen-Image's vae config)",
            "rgb": D.COMFY + " Wan21.latent_rgb_factors(+bias)",
            "size_multiple": "transformer patch (1, 2, 2) on 8× latents: multiples of 16",
        },
    ),
    _fmt(
        "wan22",
        "Wan 2.2 TI2V-5B VAE (48 ch, 16×, 4× temporal)",
        ("Wan 2.2 TI2V 5B",),
        48,
        16,
        dims=3,
        temporal_ratio=4,
        causal_first_frame=True,
        mean=D.WAN22_MEAN,
        std=D.WAN22_STD,
        norm_source="registry",
        rgb_factors=D.WAN22_RGB,
        rgb_bias=D.WAN22_RGB_BIAS,
        preview_decoder="taew2_2",
        size_multiple=32,
        sources={
            "geometry": "Wan-AI/Wan2.2-TI2V-5B vae config z_dim 48, 16× spatial, 4× temporal",
            "scale": "no scalar scale: Wan normalises per channel (scale 1)",
            "norm": "Wan2.2-TI2V-5B vae config latents_mean/latents_std (also " + D.COMFY + " Wan22)",
            "rgb": D.COMFY + " Wan22.latent_rgb_factors(+bias)",
            "size_multiple": "transformer patch (1, 2, 2) on 16× latents: multiples of 32",
        },
    ),
    _fmt(
        "hunyuan_video",
        "HunyuanVideo causal 3-D VAE (16 ch, 8×, 4× temporal)",
        ("HunyuanVideo", "HunyuanVideo-I2V", "FramePack"),
        16,
        8,
        dims=3,
        temporal_ratio=4,
        causal_first_frame=True,
        scale=0.476986,
        rgb_factors=D.HUNYUAN_VIDEO_RGB,
        rgb_bias=D.HUNYUAN_VIDEO_RGB_BIAS,
        size_multiple=16,
        sources={
            "geometry": "hunyuanvideo-community/HunyuanVideo vae config: 16 ch, 8× spatial, 4× temporal",
            "scale": "HunyuanVideo vae config scaling_factor 0.476986",
            "rgb": D.COMFY + " HunyuanVideo.latent_rgb_factors(+bias)",
            "size_multiple": "transformer patch 2 on 8× latents: multiples of 16",
        },
    ),
    _fmt(
        "hunyuan_video15",
        "HunyuanVideo 1.5 VAE (32 ch, 16×, 4× temporal)",
        ("HunyuanVideo 1.5",),
        32,
        16,
        dims=3,
        temporal_ratio=4,
        causal_first_frame=True,
        scale=1.03682,
        rgb_factors=D.HUNYUAN_VIDEO15_RGB,
        rgb_bias=D.HUNYUAN_VIDEO15_RGB_BIAS,
        sources={
            "geometry": "HunyuanVideo 1.5 report: causal 3-D VAE, 32 channels, 16× spatial, 4× temporal",
            "scale": D.COMFY + " HunyuanVideo15.scale_factor 1.03682",
            "rgb": D.COMFY + " HunyuanVideo15.latent_rgb_factors(+bias) (ComfyUI 0.8.0)",
            "size_multiple": "latent cells are 16 px",
        },
    ),
    _fmt(
        "ltxv",
        "LTX-Video VAE (128 ch, 32×, 8× temporal), per-channel statistics stored in the VAE",
        ("LTX-Video 0.9.x",),
        128,
        32,
        dims=3,
        temporal_ratio=8,
        causal_first_frame=True,
        norm_source="vae",
        rgb_factors=D.LTXV_RGB,
        rgb_bias=D.LTXV_RGB_BIAS,
        sources={
            "geometry": "Lightricks/LTX-Video vae config: 128 latent channels, 32× spatial, 8× temporal",
            "scale": "scale 1: diffusers' LTX pipeline normalises with the VAE's latents_mean/latents_std",
            "norm": "diffusers AutoencoderKLLTXVideo buffers latents_mean/latents_std "
            "(original checkpoints: per_channel_statistics.mean-of-means / std-of-means)",
            "rgb": D.COMFY + " LTXV.latent_rgb_factors(+bias) (ComfyUI 0.8.0), 128 rows for the normalised latent",
            "size_multiple": "latent cells are 32 px",
        },
    ),
    _fmt(
        "mochi",
        "Mochi 1 VAE (12 ch, 8×, 6× temporal)",
        ("Mochi 1 preview",),
        12,
        8,
        dims=3,
        temporal_ratio=6,
        causal_first_frame=True,
        mean=D.MOCHI_MEAN,
        std=D.MOCHI_STD,
        norm_source="registry",
        rgb_factors=D.MOCHI_RGB,
        rgb_bias=D.MOCHI_RGB_BIAS,
        size_multiple=16,
        sources={
            "geometry": "genmo/mochi-1-preview vae: 12 ch, 8× spatial, 6× temporal (frames 6n+1)",
            "scale": "scale 1: Mochi normalises per channel",
            "norm": "mochi-1-preview vae config latents_mean/latents_std (also " + D.COMFY + " Mochi)",
            "rgb": D.COMFY + " Mochi.latent_rgb_factors(+bias)",
            "size_multiple": "transformer patch 2 on 8× latents: multiples of 16",
        },
    ),
    _fmt(
        "cogvideox",
        "CogVideoX 5B / 1.5 VAE (16 ch, 8×, 4× temporal), scaling 0.7",
        ("CogVideoX-5B", "CogVideoX-5B-I2V", "CogVideoX1.5-5B"),
        16,
        8,
        dims=3,
        temporal_ratio=4,
        causal_first_frame=True,
        scale=0.7,
        size_multiple=16,
        sources={
            "geometry": "THUDM/CogVideoX-5b vae config: 16 latent channels, 8× spatial, 4× temporal",
            "scale": "CogVideoX-5b vae config scaling_factor 0.7",
            "size_multiple": "transformer patch 2 on 8× latents: multiples of 16",
        },
    ),
    _fmt(
        "cogvideox_2b",
        "CogVideoX 2B VAE: the CogVideoX latent space with scaling 1.15258426",
        ("CogVideoX-2B",),
        16,
        8,
        dims=3,
        temporal_ratio=4,
        causal_first_frame=True,
        scale=1.15258426,
        size_multiple=16,
        sources={
            "geometry": "THUDM/CogVideoX-2b vae config: 16 latent channels, 8× spatial, 4× temporal",
            "scale": "CogVideoX-2b vae config scaling_factor 1.15258426",
            "size_multiple": "transformer patch 2 on 8× latents: multiples of 16",
        },
    ),
    _fmt(
        "cosmos",
        "NVIDIA Cosmos-1.0 tokenizer CV8x8x8 (16 ch, 8×, 8× temporal)",
        ("Cosmos-1.0 Diffusion 7B/14B",),
        16,
        8,
        dims=3,
        temporal_ratio=8,
        causal_first_frame=True,
        rgb_factors=D.COSMOS_RGB,
        rgb_bias=D.COSMOS_RGB_BIAS,
        size_multiple=16,
        sources={
            "geometry": "nvidia Cosmos-1.0-Tokenizer-CV8x8x8: 16 ch, 8× spatial, 8× temporal",
            "scale": D.COMFY + " Cosmos1CV8x8x8: scale 1",
            "norm": "none here, by ComfyUI's convention: its Cosmos VAE itself returns (z - mean[c, t]) / std[c, t] "
            "× 0.5 (statistics per channel and latent frame, in the VAE file), so raw = model is that normalised "
            "latent; diffusers' Cosmos pipelines hand out (z - mean) × σ_data / std, the same when the scheduler's "
            "σ_data is 0.5. diffusers' "
            "AutoencoderKLCosmos encode returns the un-normalised z: per-frame statistics are not expressible "
            "here yet, so such a z is not this space",
            "rgb": D.COMFY + " Cosmos1CV8x8x8.latent_rgb_factors(+bias)",
            "size_multiple": "transformer patch 2 on 8× latents: multiples of 16",
        },
    ),
)


def _zoo_formats() -> tuple[LatentFormat, ...]:
    """Formats of the built-in zoo VAEs, from the numbers their training script wrote (zoo/zoo.json)."""
    from latentbridge import zoo  # local import: zoo reads a package data file

    out = []
    for name, info in zoo.zoo_info().items():
        channels = int(info["config"]["latent_channels"])
        out.append(
            _fmt(
                name,
                f"latentbridge zoo VAE {name} ({channels} ch, 8×), trained by scripts/train_zoo.py",
                (f"latentbridge {name}",),
                channels,
                8,
                scale=info["scale"],
                rgb_factors=tuple(tuple(r) for r in info["rgb_factors"]),
                rgb_bias=tuple(info["rgb_bias"]),
                sources={
                    "geometry": "diffusers AutoencoderKL config stored in the zoo file",
                    "scale": "1/std of its raw latents over the training photos (zoo/zoo.json)",
                    "rgb": "least-squares fit on the training photos (zoo/zoo.json)",
                    "size_multiple": "latent cells are 8 px",
                },
            )
        )
    return tuple(out)


def _build_registry(formats: Iterable[LatentFormat]) -> dict[str, LatentFormat]:
    registry: dict[str, LatentFormat] = {}
    for fmt in formats:
        if fmt.name in registry:
            raise ValueError(f"duplicate latent format name {fmt.name!r} in the registry")
        registry[fmt.name] = fmt
    return registry


_REGISTRY: dict[str, LatentFormat] | None = None


def formats() -> dict[str, LatentFormat]:
    """The registry: name -> LatentFormat, built-in formats then the zoo (built on first use)."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _build_registry(_BUILTIN + _zoo_formats())
    return _REGISTRY


def get_format(name: str | LatentFormat) -> LatentFormat:
    """Look a format up by name (case-insensitive; '-' and '_' alike). Raises UnknownFormatError."""
    if isinstance(name, LatentFormat):
        return name
    reg = formats()
    key = name.strip().lower()
    if key in reg:
        return reg[key]
    for cand in (key.replace("-", "_"), key.replace("_", "-")):
        if cand in reg:
            return reg[cand]
    raise UnknownFormatError(
        f"unknown latent format {name!r}: expected one of {', '.join(reg)}.{did_you_mean(key, reg)} "
        "Run `latentbridge formats` to list them."
    )


def find_formats(
    channels: int | None = None, spatial_ratio: int | None = None, dims: int | None = None, space: str = "raw"
) -> list[LatentFormat]:
    """Every format whose ``space``-space geometry matches the given channel count / ratio / dims."""
    out = []
    for fmt in formats().values():
        c, r = fmt.space_shape(space)
        if channels is not None and c != channels:
            continue
        if spatial_ratio is not None and r != spatial_ratio:
            continue
        if dims is not None and fmt.dims != dims:
            continue
        out.append(fmt)
    return out
