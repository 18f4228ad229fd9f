"""The VAE values: who a VAE is (:class:`VaeIdentity`) and a loaded one that runs (:class:`VAE`).

:class:`VaeIdentity` is the one record of a VAE's identity — name, sha256, architecture, latent format, native
space, latent geometry, which halves exist — whether it comes from a loaded network, a weight file's header
(``WeightsInfo.identity()``, never loading tensors) or a bridge file's record of the VAEs it was fitted for.
:func:`latentbridge.checks.check` takes any of them.

A :class:`VAE` is a ``VaeIdentity`` that can run: one network behind two plain functions with one convention:

* ``encode(images) -> latents``: images [N, 3, H, W] float in **[-1, 1]** (diffusers' convention; latentbridge's
  decode returns [0, 1]: :func:`latentbridge.images.to_unit` / ``to_signed`` convert)  ->  latents in
  ``native_space`` (for KL VAEs the posterior **mean**, deterministic);
* ``decode(latents) -> images``: latents in ``native_space``  ->  images [N, 3, H', W'] float, about [-1, 1]
  (not clamped: the codec clamps, so NaN/overflow checks see the real output).

``native_space`` is "raw" for full VAEs (AutoencoderKL & co. and VAElight) and "model" for the
TAESD family and VAEApprox previews, which were trained on model-space latents. The codec converts a
:class:`~latentbridge.latent.Latent` to ``native_space`` before calling them.

``bind`` rebuilds both functions for another copy of the module: the codec runs reduced precision, another
device or channels-last on a cast copy (cached per dtype, device and layout on this VAE value) and never
changes the module it was given, so one VAE can serve several threads at once.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from latentbridge.formats import LatentFormat, NormStats, Space
from latentbridge.run import COMPUTE_DTYPES, Run

__all__ = [
    "CONFIG_SCALE_RTOL",
    "DIFFUSERS_CLASSES",
    "VAE",
    "Bind",
    "CopyKey",
    "Fn",
    "VaeIdentity",
    "as_vae",
    "bind_autoencoder_dc",
    "bind_autoencoder_kl",
    "bind_autoencoder_tiny",
    "cast_copy",
    "from_autoencoder_kl",
]

Fn = Callable[[torch.Tensor], torch.Tensor]
Bind = Callable[[torch.nn.Module], tuple[Fn | None, Fn | None]]
"""``bind(module) -> (encode, decode)``: the VAE's two functions for another copy of its module."""


@dataclass(frozen=True, slots=True)
class VaeIdentity:
    """Who a VAE is and which latents it reads — the same record for a loaded VAE and a weight file's header.

    Attributes:
        name: what the user called it ("zoo-a", a file path, a hub id).
        sha256: content hash of the weight file ("" when built in memory or not computed; "A+B" for two files).
        architecture: the identified architecture ("autoencoder_kl", "taesd", "vaeapprox", …).
        format: the latent format it reads/writes, or None when the file alone cannot tell.
        native_space: "raw" or "model": the space ``encode`` returns and ``decode`` takes.
        channels: latent channels in ``native_space``.
        spatial_ratio: pixels per latent cell in ``native_space``.
        dims: 2 (image) or 3 (video).
        has_encoder, has_decoder: which halves exist.
        stats: per-channel normalisation statistics from the file (FLUX.2 BatchNorm), else None.
        decode_ratio: output pixels per latent cell of the decoder (VAEApprox: 2), 0 = ``spatial_ratio``.
        candidates: formats the file's geometry fits, when ``format`` is None.
    """

    name: str
    sha256: str
    architecture: str
    format: LatentFormat | None
    native_space: Space
    channels: int
    spatial_ratio: int
    dims: int
    has_encoder: bool = field(default=True, kw_only=True)
    has_decoder: bool = field(default=True, kw_only=True)
    stats: NormStats | None = field(default=None, kw_only=True)
    decode_ratio: int = field(default=0, kw_only=True)
    candidates: tuple[str, ...] = field(default=(), kw_only=True)

    @property
    def output_ratio(self) -> int:
        """Pixels per latent cell of what ``decode`` returns."""
        return self.decode_ratio or self.spatial_ratio

    @property
    def size_multiple(self) -> int:
        """Image sizes ``encode`` takes are multiples of this: the format's, else the spatial ratio."""
        return self.format.size_multiple if self.format is not None else self.spatial_ratio

    @property
    def identity(self) -> VaeIdentity:
        """The identity alone (for a :class:`VAE`: without its network)."""
        if type(self) is VaeIdentity:
            return self
        return VaeIdentity(
            *(getattr(self, f.name) for f in dataclasses.fields(VaeIdentity) if not f.kw_only),
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(VaeIdentity) if f.kw_only},
        )

    def with_format(self, fmt: LatentFormat) -> VaeIdentity:
        """The same identity with its family given by the user."""
        return dataclasses.replace(self.identity, format=fmt)

    def describe(self) -> str:
        """'zoo-a (format zoo-a, raw, 4 ch / 8×, sha256 1a2b3c4d5e6f)' for messages."""
        sha = self.sha256[:12] or "not recorded"
        fmt = self.format.name if self.format is not None else "unknown"
        return (
            f"{self.name} (format {fmt}, {self.native_space}, {self.channels} ch / {self.spatial_ratio}×, sha256 {sha})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "name": self.name,
            "sha256": self.sha256,
            "architecture": self.architecture,
            "format": self.format.name if self.format is not None else None,
            "native_space": self.native_space,
            "channels": self.channels,
            "spatial_ratio": self.spatial_ratio,
            "dims": self.dims,
            "has_encoder": self.has_encoder,
            "has_decoder": self.has_decoder,
            "candidates": list(self.candidates),
        }


CopyKey = tuple[torch.device, torch.dtype, bool]


@dataclass(frozen=True, slots=True, eq=False)
class VAE(VaeIdentity):
    """A loaded VAE (or half of one): its identity plus the functions that run it.

    Attributes (besides :class:`VaeIdentity`'s):
        encode: images [-1, 1] -> native latents, or None when the file has no encoder.
        decode: native latents -> images about [-1, 1], or None when the file has no decoder.
        module: the torch module behind both, or None (ONNX, plain functions). The codec never changes it.
        bind: rebuilds ``(encode, decode)`` for a copy of ``module`` (see the module doc); without it the codec
            runs the module only in its own dtype, device and layout.
    """

    encode: Fn | None
    decode: Fn | None
    module: torch.nn.Module | None = None
    bind: Bind | None = field(default=None, kw_only=True)
    has_encoder: bool = field(init=False, default=True)
    has_decoder: bool = field(init=False, default=True)
    _copies: dict[CopyKey, torch.nn.Module] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    __hash__ = object.__hash__  # a loaded network is one object: identity, not field, equality
    __eq__ = object.__eq__

    def __post_init__(self) -> None:
        object.__setattr__(self, "has_encoder", self.encode is not None)
        object.__setattr__(self, "has_decoder", self.decode is not None)

    @property
    def device(self) -> torch.device:
        """Where the module's weights are (the CPU for ONNX and plain functions)."""
        t = _first_float(self.module)
        return t.device if t is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The module's weight dtype (float32 for ONNX and plain functions)."""
        t = _first_float(self.module)
        return t.dtype if t is not None else torch.float32

    def own_run(self) -> Run:
        """A :class:`~latentbridge.run.Run` on this VAE's own device and dtype: the codec then needs no cast copy
        (a dtype the codec does not compute in, such as float64, runs in fp32)."""
        dtype = self.dtype if self.dtype in COMPUTE_DTYPES.values() else torch.float32
        return Run(device=self.device, dtype=dtype)

    def running(
        self, device: torch.device, dtype: torch.dtype, channels_last: bool
    ) -> tuple[torch.nn.Module | None, Fn | None, Fn | None]:
        """``(module, encode, decode)`` that run in ``dtype`` on ``device`` (channels-last weights if asked).

        The module itself when it already is so; otherwise a cast copy, made once and kept on this value
        (thread-safe). The module given is never changed.

        Raises:
            LatentBridgeError: a cast is needed but the VAE has no ``bind`` (built from plain functions).
        """
        module = self.module
        if module is None or _matches(module, device, dtype, channels_last):
            return module, self.encode, self.decode
        if self.bind is None:
            from latentbridge.errors import LatentBridgeError

            raise LatentBridgeError(
                f"VAE {self.name!r} was built from plain functions without `bind`, so latentbridge cannot run a "
                f"{dtype} copy of it on {device} without changing its module: build it with latentbridge.as_vae "
                f"(or pass bind=), or run it in its own dtype ({self.dtype}) and device ({self.device})"
            )
        key = (device, dtype, channels_last)
        with self._lock:
            cast = self._copies.get(key)
            if cast is None:
                cast = cast_copy(module, device, dtype, channels_last)
                self._copies[key] = cast
        encode, decode = self.bind(cast)
        return cast, (encode if self.encode is not None else None), (decode if self.decode is not None else None)

    def copy_bytes(self, dtype: torch.dtype, channels_last: bool) -> int:
        """Bytes a cast copy in ``dtype`` adds (0 when the module already is in that dtype and layout)."""
        if self.module is None or _matches(self.module, _device_of(self.module), dtype, channels_last):
            return 0
        size = torch.empty((), dtype=dtype).element_size()
        return sum(t.numel() * size for t in _float_tensors(self.module))

    def drop_copies(self) -> None:
        """Free the cast copies this value keeps (the next reduced-precision call makes them again)."""
        with self._lock:
            self._copies.clear()


def _float_tensors(module: torch.nn.Module) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for t in (*module.parameters(), *module.buffers()):
        if t.is_floating_point() and id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def _first_float(module: torch.nn.Module | None) -> torch.Tensor | None:
    if module is None:
        return None
    return next(iter(_float_tensors(module)), None)


def _device_of(module: torch.nn.Module) -> torch.device:
    t = _first_float(module)
    return t.device if t is not None else torch.device("cpu")


def _matches(module: torch.nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool) -> bool:
    """Every floating weight already has ``dtype``, lives on ``device`` and (4-D ones) is channels-last if asked."""
    for t in _float_tensors(module):
        if t.dtype != dtype or not _same_device(t.device, device):
            return False
        if channels_last and t.ndim == 4 and not t.is_contiguous(memory_format=torch.channels_last):
            return False
    return True


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index == b.index or a.index is None or b.index is None)


def cast_copy(
    module: torch.nn.Module, device: torch.device, dtype: torch.dtype, channels_last: bool
) -> torch.nn.Module:
    """A copy of ``module`` whose floating weights are cast to ``dtype`` on ``device`` (4-D ones channels-last).

    The weights are cast straight from the originals (a bf16 copy of fp32 weights is one rounding) and the
    module's other state is deep-copied; the original is untouched.
    """
    memo: dict[int, Any] = {}
    with torch.no_grad():
        for t in _float_tensors(module):
            out = t.detach().to(device=device, dtype=dtype)
            if channels_last and out.ndim == 4:
                out = out.contiguous(memory_format=torch.channels_last)
            memo[id(t)] = torch.nn.Parameter(out, requires_grad=False) if isinstance(t, torch.nn.Parameter) else out
    return copy.deepcopy(module, memo).eval()


def from_autoencoder_kl(
    model: torch.nn.Module,
    *,
    name: str,
    fmt: LatentFormat | None,
    sha256: str = "",
    architecture: str = "autoencoder_kl",
) -> VAE:
    """Wrap a diffusers ``AutoencoderKL``-like module (``.encode(x).latent_dist.mean``, ``.decode(z).sample``).

    Works for AutoencoderKL and its 3-D siblings whose ``encode``/``decode`` follow the same contract.
    The latent channel count comes from ``model.config.latent_channels`` (or ``z_dim`` for Wan).
    """
    model.eval()
    cfg: Any = model.config
    channels = int(cfg.get("latent_channels", cfg.get("z_dim", 0)))
    n_down = len(cfg.get("block_out_channels", (0, 0, 0, 0))) - 1
    spatial_ratio = 2**n_down if "block_out_channels" in cfg else (fmt.spatial_ratio if fmt else 8)
    encode, decode = bind_autoencoder_kl(model)
    return VAE(
        name,
        sha256,
        architecture,
        fmt,
        "raw",
        channels,
        spatial_ratio,
        fmt.dims if fmt is not None else 2,
        encode,
        decode,
        model,
        bind=bind_autoencoder_kl,
    )


def _diffusers_bind(latents_of: Callable[[Any], torch.Tensor], what: str) -> Bind:
    """A ``bind`` for a diffusers autoencoder: ``encode`` returns ``latents_of(module.encode(images))``,
    ``decode`` returns ``module.decode(latents).sample``."""

    def bind(model: torch.nn.Module) -> tuple[Fn | None, Fn | None]:
        net: Any = model

        def encode(images: torch.Tensor) -> torch.Tensor:
            return latents_of(net.encode(images))

        def decode(latents: torch.Tensor) -> torch.Tensor:
            return net.decode(latents).sample

        return encode, decode

    bind.__doc__ = f"``(encode, decode)`` of {what}."
    return bind


bind_autoencoder_kl = _diffusers_bind(
    lambda out: out.latent_dist.mean, "an AutoencoderKL-like module: the posterior mean, the decoder's sample"
)
bind_autoencoder_dc = _diffusers_bind(
    lambda out: out.latent, "a diffusers AutoencoderDC (Sana's DC-AE): deterministic latents, the decoder's sample"
)
bind_autoencoder_tiny = _diffusers_bind(
    lambda out: out.latents, "a diffusers AutoencoderTiny (TAESD): [-1, 1] images <-> model-space latents"
)


DIFFUSERS_CLASSES: tuple[str, ...] = (
    "AutoencoderKLFlux2",
    "AutoencoderKLWan",
    "AutoencoderDC",
    "AutoencoderTiny",
    "AutoencoderKL",
)
"""The diffusers autoencoder classes :func:`as_vae` wraps (subclasses too), most specific first."""

CONFIG_SCALE_RTOL = 1e-3
"""A diffusers config's ``scaling_factor`` / ``shift_factor`` names a format when within 0.1 % of its numbers (the
closest two registered scales of one geometry differ by far more: sd1 0.18215 vs sdxl 0.13025)."""


def as_vae(vae: Any, *, format: LatentFormat | str | None = None, name: str = "") -> VAE:
    """A :class:`VAE` from what a user has in hand: a VAE (returned as is) or a diffusers autoencoder module.

    Wraps diffusers' ``AutoencoderKL``, ``AutoencoderTiny``, ``AutoencoderKLFlux2``, ``AutoencoderKLWan`` and
    ``AutoencoderDC`` (e.g. ``pipe.vae``) without copying or changing them. The module keeps its own device and
    dtype; the codec runs other dtypes on cast copies kept on the returned value, so wrap a module once and reuse
    the VAE. Images are [-1, 1] (diffusers' convention) at this level; latentbridge's decode returns [0, 1].

    Args:
        vae: a VAE or a diffusers autoencoder module.
        format: the latent format it serves (a registry name or LatentFormat). When None it is read from the
            module's config where that is unambiguous: the one format of the module's geometry, or the one whose
            scale/shift the config's ``scaling_factor`` / ``shift_factor`` state (what diffusers pipelines scale
            latents by); otherwise it stays unknown (``check`` then says so).
        name: what to call it in messages (default: the class name, or the config's ``_name_or_path``).

    Returns:
        A VAE whose native space is "raw" for KL/Wan/DC autoencoders and "model" for AutoencoderTiny (TAESD).

    Raises:
        InputTypeError: anything else (a pipeline, a file path: use ``latentbridge.load_vae``).
        IncompatibleError: a format whose geometry does not fit the module.
    """
    from latentbridge.errors import IncompatibleError, InputTypeError
    from latentbridge.formats import get_format

    if isinstance(vae, VAE):
        if format is None:
            return vae
        return dataclasses.replace(vae, format=get_format(format) if isinstance(format, str) else format)
    kind = _diffusers_kind(vae)
    if kind is None:
        hint = "pass its .vae" if hasattr(vae, "vae") else "load a file or folder with latentbridge.load_vae(path)"
        raise InputTypeError(
            f"latentbridge needs a VAE or a diffusers autoencoder module ({', '.join(DIFFUSERS_CLASSES)}), got "
            f"{type(vae).__name__}: {hint}"
        )
    module: Any = vae
    cfg: Any = module.config
    label = name or str(cfg.get("_name_or_path") or "") or type(vae).__name__
    space: Space = "model" if kind == "AutoencoderTiny" else "raw"
    if kind in ("AutoencoderTiny", "AutoencoderDC"):
        channels, ratio, dims = int(cfg["latent_channels"]), 2 ** (len(cfg["encoder_block_out_channels"]) - 1), 2
    elif kind == "AutoencoderKLWan":
        channels, ratio, dims = int(cfg["z_dim"]), int(cfg.get("scale_factor_spatial") or 8), 3
    else:
        channels, ratio, dims = int(cfg["latent_channels"]), 2 ** (len(cfg["block_out_channels"]) - 1), 2
    fmt = _module_format(format, cfg, channels, ratio, dims, space, label)
    if fmt is not None and (fmt.space_shape(space) != (channels, ratio) or fmt.dims != dims):
        raise IncompatibleError(
            f"format {fmt.name!r} is {fmt.space_shape(space)[0]} ch / {fmt.space_shape(space)[1]}× ({fmt.dims}-D) in "
            f"{space} space, but {label} ({kind}) has {channels} ch / {ratio}× ({dims}-D): pass the format it serves"
        )
    stats = None
    if kind == "AutoencoderKLFlux2":
        bn = module.bn
        stats = NormStats.from_running(
            bn.running_mean, bn.running_var, float(cfg["batch_norm_eps"]), f"bn.running_mean/var of {label}"
        )
    binders: dict[str, Bind] = {"AutoencoderDC": bind_autoencoder_dc, "AutoencoderTiny": bind_autoencoder_tiny}
    bind = binders.get(kind, bind_autoencoder_kl)
    encode, decode = bind(vae)
    return VAE(
        label,
        "",
        _ARCHITECTURES[kind],
        fmt,
        space,
        channels,
        ratio,
        dims,
        encode if getattr(module, "encoder", None) is not None else None,
        decode if getattr(module, "decoder", None) is not None else None,
        vae,
        stats=stats,
        bind=bind,
    )


_ARCHITECTURES = {
    "AutoencoderKL": "autoencoder_kl",
    "AutoencoderKLFlux2": "autoencoder_kl_flux2",
    "AutoencoderKLWan": "autoencoder_kl_wan",
    "AutoencoderDC": "autoencoder_dc",
    "AutoencoderTiny": "taesd",
}


def _diffusers_kind(obj: Any) -> str | None:
    """The most specific diffusers autoencoder class ``obj`` is an instance of (by name: no diffusers import)."""
    if not isinstance(obj, torch.nn.Module):
        return None
    names = [c.__name__ for c in type(obj).__mro__]
    for name in names:
        if name in DIFFUSERS_CLASSES:
            return name
    return None


def _module_format(
    given: LatentFormat | str | None, cfg: Any, channels: int, ratio: int, dims: int, space: Space, label: str
) -> LatentFormat | None:
    """The format given, else the one the module's geometry and config scaling name (None when several fit)."""
    import math

    from latentbridge.formats import find_formats, get_format

    if given is not None:
        return get_format(given) if isinstance(given, str) else given
    fits = [f for f in find_formats(channels=channels, spatial_ratio=ratio, dims=dims, space=space) if f.dims == dims]
    if space == "model" or len(fits) <= 1:
        return fits[0] if len(fits) == 1 and space == "raw" else None
    scale, shift = cfg.get("scaling_factor"), cfg.get("shift_factor") or 0.0
    if not isinstance(scale, int | float) or not isinstance(shift, int | float):
        return None
    named = [
        f
        for f in fits
        if math.isclose(f.scale, scale, rel_tol=CONFIG_SCALE_RTOL)
        and math.isclose(f.shift, shift, rel_tol=CONFIG_SCALE_RTOL, abs_tol=1e-4)
    ]
    return named[0] if len(named) == 1 else None
