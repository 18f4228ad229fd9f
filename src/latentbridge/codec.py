"""Encode images to latents and decode latents to images: spaces, batching, tiling, dtype policy, NaN guard.

Every path runs through one :class:`~latentbridge.vae.VAE` value, whatever the architecture, and takes one
:class:`~latentbridge.run.Run` for how it executes (device, dtype, batch size, tiling, memory budget,
channels-last, progress callback, cancel token):

* :func:`encode` takes images [N, 3, H, W] (video: [N, 3, T, H, W]) in **[-1, 1]** and returns a
  :class:`~latentbridge.latent.Latent` in the VAE's **native space**: ``"raw"`` for full VAEs (AutoencoderKL
  and kin, VAElight), ``"model"`` for the TAESD family and other tiny autoencoders trained on model-space
  latents. The Latent records format, space, layout and provenance (the VAE's name and sha256); convert it
  with ``latent.to_space("model")`` when a diffusion model needs it.
* :func:`decode` takes a Latent in **either space**, converts it to the VAE's native space as its format says
  (scale/shift, per-channel mean/std, FLUX.2 BatchNorm + 2×2 patchify with the VAE's statistics), and returns
  images [N, 3, H, W] (video: [N, 3, T, H, W]) float32 in **[0, 1]**. The VAE value hides each network's
  image range; the codec hides the spaces.
* :func:`encode_native` / :func:`decode_native` are the same runs on native-space tensors, with images in
  [-1, 1] (what the check's test decodes and the bridge's training use).

Precision: ``Run.dtype`` is "fp32" (the default; exact), "bf16" or "fp16". A module in another dtype (or on
another device, or with channels-last asked for) runs as a cast copy kept on the VAE value
(:meth:`VAE.running <latentbridge.vae.VAE.running>`); the module given is never changed, and no global torch flag
is touched. A sample whose output has a NaN or inf in reduced precision is computed again in fp32 with a
:class:`LatentBridgeWarning` naming it.

Sharing: nothing the codec does during a call is visible to another caller of the same VAE — no parameter swaps,
no patched ``forward``: the whole-image GroupNorm statistics of tiled runs live in a thread-local torch function
mode (:class:`_TileNorm`) and the memory probe measures activations the same way. One VAE can serve several
threads at once, with results identical to serial calls.

Tiling: ``Run.tiling`` (:class:`~latentbridge.run.Tiling`: tile and overlap in pixels, passes) splits the image into
overlapping tiles, runs each through the network and blends the overlaps with a raised-cosine ramp whose outer
quarter is dropped (tile borders see zero padding; the ramp keeps them out). GroupNorm normalises over the whole
image, so networks that have it run ``passes`` times (default 2) and each pass corrects every tile's statistics
towards the whole image's (:class:`_TileNorm`; TAEF2 at 512² in 256-px tiles: 26.2 dB against the untiled decode
with per-tile statistics, 43.4 dB with 2 passes, 52.0 dB with 3). Attention blocks (the SD mid-block) still see
one tile: that part of the difference remains. Without a tile size, a ``max_memory`` budget (bytes, or "auto")
turns tiling on when the estimated peak passes it, announced with a warning. The estimate
(:func:`estimate_memory`) runs the network once on a 16×16-cell probe, takes the largest tensor any operation
outputs per latent cell and multiplies it by ``ACTIVATION_FACTOR`` (peak RSS over largest activation, measured on
the SD KL f8 decoder: 3.8–4.6 for 256–512 px in fp32 and bf16), plus the weight copy for the compute dtype and the
input/output buffers.

Progress and cancelling: ``Run.progress`` gets a :class:`~latentbridge.run.Progress` after every batch of samples or
tiles (the task names the VAE and the tile plan); ``Run.cancel`` is checked before each, and a cancelled run raises
:class:`~latentbridge.errors.Cancelled` and returns nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from latentbridge import __version__
from latentbridge.errors import (
    FormatRequiredError,
    IncompatibleError,
    InputTypeError,
    LatentBridgeError,
    LatentBridgeWarning,
    NonFiniteError,
    ShapeError,
    SpaceError,
)
from latentbridge.formats import LatentFormat, nearest_sizes
from latentbridge.latent import Latent, Provenance
from latentbridge.run import TILE_PASSES, Run, dtype_name
from latentbridge.vae import VAE, Fn, as_vae

ACTIVATION_FACTOR = 4.5
"""Peak memory of one forward pass / its largest activation (measured 3.8–4.6 on the SD KL f8 decoder)."""

TILE_NORM_FACTOR = 2.4
"""Extra peak memory of a tiled run with whole-image GroupNorm statistics (``passes`` > 1), as a factor on
the activation term. Measured as peak RSS delta, 2 passes / 1 pass, in 256-px tiles at 512 px: SD KL f8 decoder
900 / 378 MB (2.4), TAEF2 93 / 72 MB (1.3), zoo-a 291 / 264 MB at 1024 px (1.1); the largest is used, so a
memory budget holds for the deepest GroupNorm network measured (without it a 768 MiB budget gave 1.25 GB)."""

PROBE_CELLS = 16
"""Side, in latent cells, of the input :func:`estimate_memory` runs to measure activation sizes."""

RAMP_MARGIN = 0.25
"""Fraction of each tile overlap, on the tile's own border side, that gets zero blending weight."""

__all__ = [
    "ACTIVATION_FACTOR",
    "PROBE_CELLS",
    "RAMP_MARGIN",
    "TILE_NORM_FACTOR",
    "TILE_PASSES",
    "TilePlan",
    "decode",
    "decode_native",
    "encode",
    "encode_native",
    "estimate_memory",
    "native_latent",
    "plan_tiles",
    "tile_axis",
]

# --- tiling -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TilePlan:
    """How an input is cut into tiles, in latent cells (the unit both sides of the VAE share).

    Attributes:
        th: tile height in latent cells (at most the requested tile side).
        tw: tile width in latent cells.
        overlap: requested overlap between neighbouring tiles in latent cells.
        rows: tile start cells along H.
        cols: tile start cells along W.
    """

    th: int
    tw: int
    overlap: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]

    @property
    def count(self) -> int:
        """Tiles per image."""
        return len(self.rows) * len(self.cols)


def tile_axis(size: int, tile: int, overlap: int) -> tuple[int, tuple[int, ...]]:
    """(tile length, start cells) of the fewest tiles of at most ``tile`` cells covering ``size`` cells.

    The tiles are shrunk to the shortest length that still covers the axis with ``overlap``-cell overlaps, and
    spaced evenly: the least area to compute, every tile of one size (so tiles batch together).
    """
    if tile >= size:
        return size, (0,)
    n = math.ceil((size - overlap) / (tile - overlap))
    length = min(tile, math.ceil((size + (n - 1) * overlap) / n))
    return length, tuple(round(i * (size - length) / (n - 1)) for i in range(n))


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> TilePlan:
    """A :class:`TilePlan` for a ``height``×``width``-cell latent with tiles of at most ``tile`` cells."""
    th, rows = tile_axis(height, tile, overlap)
    tw, cols = tile_axis(width, tile, overlap)
    return TilePlan(th, tw, overlap, rows, cols)


def _ramp(length: int) -> torch.Tensor:
    """Rising blend weights over ``length`` samples: zero for the outer ``RAMP_MARGIN``, then a raised cosine."""
    margin = math.floor(length * RAMP_MARGIN)
    span = max(length - 2 * margin, 1)
    r = ((torch.arange(length, dtype=torch.float64) + 0.5 - margin) / span).clamp(0.0, 1.0)
    return (0.5 - 0.5 * torch.cos(math.pi * r)).float()


def _axis_weights(starts: Sequence[int], tile: int, unit: int) -> list[torch.Tensor]:
    """1-D blend weights of each tile along one axis, at output resolution (``unit`` samples per cell)."""
    out = []
    for k, s in enumerate(starts):
        w = torch.ones(tile * unit)
        if k > 0:
            left = (starts[k - 1] + tile - s) * unit
            w[:left] = torch.minimum(w[:left], _ramp(left))
        if k < len(starts) - 1:
            right = (s + tile - starts[k + 1]) * unit
            w[tile * unit - right :] = torch.minimum(w[tile * unit - right :], _ramp(right).flip(0))
        out.append(w)
    return out


# --- running the network ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job:
    """One pass of the codec: the network function, where it runs, the precision policy and the Run.

    ``fn`` runs in ``dtype``; ``fp32`` gives the float32 module and function for the NaN guard's redo (made on
    first use).
    """

    fn: Fn
    fp32: Callable[[], tuple[torch.nn.Module | None, Fn]]
    what: str  # "decode" / "encode"
    vae: VAE
    module: torch.nn.Module | None  # the module ``fn`` runs (the VAE's own, or a cast copy)
    device: torch.device
    dtype: torch.dtype
    channels_last: bool
    run: Run

    def call(
        self, x: torch.Tensor, labels: Sequence[str], norm: _TileNorm | None = None, rows: Sequence[_Unit] = ()
    ) -> torch.Tensor:
        """fn on a batch, float32 out; non-finite rows redone in fp32 (warned), still non-finite -> error.

        With ``norm`` (tiled runs), the GroupNorm statistics of a row are kept only once its output is finite.
        """
        if norm is not None:
            norm.begin(rows)
        y = self._call(self.fn, x, self.dtype)
        bad = [i for i in range(y.shape[0]) if not torch.isfinite(y[i]).all()]
        if norm is not None:
            norm.commit([i for i in range(y.shape[0]) if i not in bad])
        if not bad:
            return y
        if self.dtype == torch.float32:
            raise NonFiniteError(
                f"{self.what} with {self.vae.name} produced NaN/inf for {labels[bad[0]]} in fp32; the input is "
                "finite, so the VAE itself diverges on it: check that the latent's format and space match this "
                "VAE (`latentbridge check`), or that the image is in [-1, 1]"
            )
        module32, fn32 = self.fp32()
        if y.is_inference() and not torch.is_inference_mode_enabled():
            y = y.clone()  # a network's own float32 output made under inference mode: a copy takes the redone rows
        if norm is not None:
            norm.watch(module32)
        for i in bad:
            warnings.warn(
                f"{self.what} with {self.vae.name}: {labels[i]} overflowed in {dtype_name(self.dtype)} "
                "(NaN/inf in the output); computed it again in fp32",
                LatentBridgeWarning,
                stacklevel=5,
            )
            if norm is not None:
                norm.begin(rows[i : i + 1])
            y[i] = self._call(fn32, x[i : i + 1], torch.float32)[0]
            if not torch.isfinite(y[i]).all():
                raise NonFiniteError(
                    f"{self.what} with {self.vae.name} produced NaN/inf for {labels[i]} in "
                    f"{dtype_name(self.dtype)} and again in fp32: the VAE diverges on this input; check that the "
                    "latent's format and space match this VAE (`latentbridge check`)"
                )
            if norm is not None:
                norm.commit([0])
        return y

    def _call(self, fn: Fn, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        x = x.to(device=self.device, dtype=dtype)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = fn(x)
        return y.float().contiguous()


class _Steps:
    """Progress and cancelling of one codec call: ``task``, ``total`` steps, reported through the Run."""

    def __init__(self, run: Run, task: str, total: int) -> None:
        self.run, self.task, self.total, self.done = run, task, total, 0
        run.check_cancelled(task)
        run.report(task, 0, total)

    def before(self) -> None:
        self.run.check_cancelled(self.task)

    def advance(self, n: int) -> None:
        self.done += n
        self.run.report(self.task, self.done, self.total)


def _run_whole(job: _Job, x: torch.Tensor, batch_size: int, steps: _Steps) -> torch.Tensor:
    outs = []
    for lo in range(0, x.shape[0], batch_size):
        steps.before()
        hi = min(lo + batch_size, x.shape[0])
        outs.append(job.call(x[lo:hi], [f"sample {i}" for i in range(lo, hi)]))
        steps.advance(hi - lo)
    return torch.cat(outs)


def _span(start: int, length: int, unit: int) -> slice:
    return slice(start * unit, (start + length) * unit)


def _owned(starts: Sequence[int], tile: int, size: int) -> list[tuple[float, float]]:
    """The part of the axis each tile owns, in cells: a partition split at the middle of each overlap."""
    out = []
    for k, s in enumerate(starts):
        lo = 0.0 if k == 0 else (starts[k - 1] + tile + s) / 2
        hi = float(size) if k == len(starts) - 1 else (s + tile + starts[k + 1]) / 2
        out.append((lo, hi))
    return out


_Unit = tuple[int, int, int]  # (sample, tile row, tile column)
_GROUP_NORM = torch.nn.functional.group_norm


class _TileNorm(TorchFunctionMode):
    """GroupNorm with whole-image statistics while a network runs tile by tile, over several passes.

    GroupNorm normalises with the mean and variance of the *whole* feature map; a tile alone has other
    statistics, which shows as a colour/contrast shift per tile (TAEF2 at 512² in 256-px tiles: 26.2 dB
    against the untiled decode with per-tile statistics). Each pass records, for every GroupNorm call and
    tile, the statistics of the whole tile and of the region the tile *owns* (a partition of the image split
    at the middle of the overlaps); the owned regions add up to the whole-image statistics. The next pass
    normalises each tile with its own current statistics corrected by the gap the previous pass measured::

        mean = tile_mean_now + (image_mean_before - tile_mean_before)
        var  = tile_var_now * (image_var_before + eps) / (tile_var_before + eps)

    Replacing the tile statistics outright by the image statistics of the previous pass diverges on deep
    networks (each layer's statistics were measured under the previous layers' old normalisation: a random
    SD-layout decoder fell from 30 dB to 19 dB at 2 passes and 6 dB at 3); the correction keeps each layer
    self-normalising while removing the tile-to-tile gap, and converges (measured at 512² in 256-px tiles:
    TAEF2 26.2 → 43.4 → 52.0 dB for 1, 2, 3 passes; a random SD-layout decoder with widths (32, 64, 64, 64)
    27.8 → 32.1 → 32.7 dB, where diffusers' ``enable_tiling()`` gives 27.0 dB).

    It is a torch function mode: while entered, the ``group_norm`` calls *this thread* makes with the weights of the
    network's own GroupNorm layers come here (the n-th call of a tile's forward pass is the same layer in every
    tile); nothing on the module changes, so other threads running the same module are not affected.
    """

    def __init__(self, module: torch.nn.Module | None, plan: TilePlan, h_cells: int, w_cells: int, th: int, tw: int):
        super().__init__()
        self.weights: set[int] = set()
        self.weightless = False
        self.watch(module)
        self.plan, self.th, self.tw = plan, th, tw
        self.own_rows = _owned(plan.rows, th, h_cells)
        self.own_cols = _owned(plan.cols, tw, w_cells)
        self.sums: dict[int, dict[int, torch.Tensor]] = {}  # call -> sample -> [G, 3]
        self.pending: dict[int, torch.Tensor] = {}  # call -> [B, G, 3]: (count, mean, M2) per row
        self.pending_local: dict[int, torch.Tensor] = {}  # call -> [B, G, 2]: whole-tile (mean, var)
        self.local: dict[tuple[int, _Unit], torch.Tensor] = {}  # (call, unit) -> [G, 2]
        self.frozen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # call -> (mean, var) [N, G]
        self.frozen_local: dict[tuple[int, _Unit], torch.Tensor] = {}
        self.rows: Sequence[_Unit] = ()
        self.calls = 0
        self.collect = True  # record statistics in this pass (not needed in the last one)

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        if func is not _GROUP_NORM:
            return func(*args, **kwargs)
        x, groups, weight, bias, eps = _group_norm_args(args, kwargs)
        if not (id(weight) in self.weights if weight is not None else self.weightless):
            return func(*args, **kwargs)
        return self._group_norm(x, groups, weight, bias, eps)

    def watch(self, module: torch.nn.Module | None) -> None:
        """Take over the GroupNorm layers of ``module`` too (the fp32 copy a NaN-guard redo runs)."""
        layers = [m for m in module.modules() if isinstance(m, torch.nn.GroupNorm)] if module is not None else []
        self.weights |= {id(m.weight) for m in layers if m.weight is not None}
        self.weightless = self.weightless or any(m.weight is None for m in layers)

    def begin(self, rows: Sequence[_Unit]) -> None:
        """A batch of tiles starts: ``rows`` says which (sample, row, column) each batch row is."""
        self.rows, self.pending, self.pending_local, self.calls = rows, {}, {}, 0

    def commit(self, indices: Sequence[int]) -> None:
        """Keep the statistics of these batch rows (their outputs were finite)."""
        for key, stats in self.pending.items():
            per_sample = self.sums.setdefault(key, {})
            for i in indices:
                n = self.rows[i][0]
                per_sample[n] = _merge(per_sample[n], stats[i]) if n in per_sample else stats[i]
                self.local[(key, self.rows[i])] = self.pending_local[key][i]

    def next_pass(self) -> None:
        """Freeze the statistics collected so far; the next pass normalises with them."""
        frozen = {}
        for key, per_sample in self.sums.items():
            stats = torch.stack([per_sample[n] for n in sorted(per_sample)])  # [N, G, 3]
            frozen[key] = (stats[..., 1], stats[..., 2] / stats[..., 0].clamp_min(1))
        self.frozen, self.sums = frozen, {}
        self.frozen_local, self.local = self.local, {}

    def _region(self, own: tuple[float, float], start: int, cells: int, size: int) -> slice:
        scale = size / cells  # feature-map samples per latent cell at this layer
        offset = round(start * scale)
        return slice(max(round(own[0] * scale) - offset, 0), min(round(own[1] * scale) - offset, size))

    def _spatial(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as [B, C, (T,) h, w]; attention blocks hand GroupNorm [B, C, h·w] with the pixels flattened."""
        if x.ndim != 3:
            return x
        scale = math.sqrt(x.shape[-1] / (self.th * self.tw))
        h, w = round(self.th * scale), round(self.tw * scale)
        if h * w != x.shape[-1]:
            raise RuntimeError(
                f"a GroupNorm sees {x.shape[-1]} flattened positions in a {self.th}×{self.tw}-cell tile, which is no "
                "whole feature map; run this VAE untiled (tile=None) and report it to latentbridge"
            )
        return x.unflatten(-1, (h, w))

    def _group_norm(
        self, x: torch.Tensor, g: int, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
    ) -> torch.Tensor:
        key = self.calls
        self.calls += 1
        b, c = x.shape[0], x.shape[1]
        if not self.collect and key not in self.frozen:
            return _GROUP_NORM(x, g, weight, bias, eps)
        local = torch.zeros(b, g, 2, dtype=torch.float64)  # whole-tile (mean, var): what GroupNorm would use
        for i in range(b):
            whole = x[i].unflatten(0, (g, -1))
            var, mean = torch.var_mean(whole, dim=tuple(range(1, whole.ndim)), correction=0)
            local[i, :, 0] = mean.double().cpu()
            local[i, :, 1] = var.double().cpu()
        if self.collect:
            stats = torch.zeros(b, g, 3, dtype=torch.float64)  # owned region (count, mean, M2)
            spatial = self._spatial(x)
            for i, (_, r, col) in enumerate(self.rows):
                hs = self._region(self.own_rows[r], self.plan.rows[r], self.th, spatial.shape[-2])
                ws = self._region(self.own_cols[col], self.plan.cols[col], self.tw, spatial.shape[-1])
                region = spatial[i, ..., hs, ws].unflatten(0, (g, -1))  # a view: [G, C/G, (T,) h, w]
                var, mean = torch.var_mean(region, dim=tuple(range(1, region.ndim)), correction=0)
                count = math.prod(region.shape[1:])
                stats[i, :, 0] = count
                stats[i, :, 1] = mean.double().cpu()
                stats[i, :, 2] = var.double().cpu() * count
            self.pending[key] = stats
            self.pending_local[key] = local
        if key not in self.frozen:
            return _GROUP_NORM(x, g, weight, bias, eps)
        image_mean, image_var = self.frozen[key]
        rows = []
        for i, unit in enumerate(self.rows):
            before = self.frozen_local[(key, unit)]
            mean = local[i, :, 0] + (image_mean[unit[0]] - before[:, 0])
            var = local[i, :, 1] * (image_var[unit[0]] + eps) / (before[:, 1] + eps)
            mean_c = mean.repeat_interleave(c // g).to(x.device, torch.float32)
            var_c = var.repeat_interleave(c // g).to(x.device, torch.float32)
            w = None if weight is None else weight.float()  # float statistics and parameters:
            b_ = None if bias is None else bias.float()  # the CPU kernel's mixed bf16/fp16 mode
            rows.append(torch.nn.functional.batch_norm(x[i : i + 1], mean_c, var_c, w, b_, False, 0.0, eps))
        return rows[0] if b == 1 else torch.cat(rows)


def _group_norm_args(
    args: Sequence[Any], kwargs: dict[str, Any]
) -> tuple[torch.Tensor, int, torch.Tensor | None, torch.Tensor | None, float]:
    """(input, num_groups, weight, bias, eps) of a ``torch.nn.functional.group_norm`` call, however it was made."""
    names = ("input", "num_groups", "weight", "bias", "eps")
    bound = dict(zip(names, args, strict=False)) | kwargs
    return (
        bound["input"],
        int(bound["num_groups"]),
        bound.get("weight"),
        bound.get("bias"),
        float(bound.get("eps", 1e-5)),
    )


def _merge(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Combine (count, mean, M2) statistics of two disjoint regions (Chan et al.'s parallel variance)."""
    n = a[:, 0] + b[:, 0]
    delta = b[:, 1] - a[:, 1]
    mean = a[:, 1] + delta * b[:, 0] / n.clamp_min(1)
    m2 = a[:, 2] + b[:, 2] + delta**2 * a[:, 0] * b[:, 0] / n.clamp_min(1)
    return torch.stack([n, mean, m2], dim=1)


def _run_tiled(
    job: _Job, x: torch.Tensor, plan: TilePlan, in_unit: int, out_unit: int, batch_size: int, passes: int, steps: _Steps
) -> torch.Tensor:
    """Run ``job`` tile by tile over the last two dims of ``x`` and blend the outputs.

    ``in_unit`` / ``out_unit``: samples per latent cell on the input / output side (decode: 1 / ratio;
    encode: ratio / 1). ``passes``: runs over all tiles, for networks with GroupNorm (see :class:`_TileNorm`).
    """
    h_cells, w_cells = x.shape[-2] // in_unit, x.shape[-1] // in_unit
    th, tw = plan.th, plan.tw
    wh = _axis_weights(plan.rows, th, out_unit)
    ww = _axis_weights(plan.cols, tw, out_unit)
    units = [(n, r, c) for n in range(x.shape[0]) for r in range(len(plan.rows)) for c in range(len(plan.cols))]
    norm = _TileNorm(job.module, plan, h_cells, w_cells, th, tw) if passes > 1 else None
    out: torch.Tensor | None = None
    with norm if norm is not None else contextlib.nullcontext():
        for p in range(passes):
            out = None
            if norm is not None:
                if p > 0:
                    norm.next_pass()
                norm.collect = p < passes - 1
            for lo in range(0, len(units), batch_size):
                steps.before()
                chunk = units[lo : lo + batch_size]
                tiles = torch.stack(
                    [x[n, ..., _span(plan.rows[r], th, in_unit), _span(plan.cols[c], tw, in_unit)] for n, r, c in chunk]
                )
                labels = [f"sample {n} tile ({r}, {c})" for n, r, c in chunk]
                y = job.call(tiles, labels, norm, chunk)
                steps.advance(len(chunk))
                if out is None:
                    shape = (x.shape[0], *y.shape[1:-2], h_cells * out_unit, w_cells * out_unit)
                    out = torch.zeros(shape, device=y.device)
                for (n, r, c), tile in zip(chunk, y, strict=True):
                    weight = wh[r].to(y.device)[:, None] * ww[c].to(y.device)[None, :]
                    out[n, ..., _span(plan.rows[r], th, out_unit), _span(plan.cols[c], tw, out_unit)] += tile * weight
            if norm is not None and norm.collect and not norm.sums:  # no GroupNorm ran (only the other half has one)
                steps.advance(len(units) * (passes - 1 - p))
                break
    if out is None:
        raise RuntimeError(f"tile plan {plan} ran no tile; this is a latentbridge bug")
    # The weights of the tiles covering a point sum to 1 (mirrored ramps); normalise anyway for rounding.
    norm_h = torch.zeros(h_cells * out_unit)
    norm_w = torch.zeros(w_cells * out_unit)
    for r, s in enumerate(plan.rows):
        norm_h[s * out_unit : (s + th) * out_unit] += wh[r]
    for c, s in enumerate(plan.cols):
        norm_w[s * out_unit : (s + tw) * out_unit] += ww[c]
    if (norm_h <= 0).any() or (norm_w <= 0).any():
        raise RuntimeError(f"tile plan {plan} leaves pixels without weight; this is a latentbridge bug")
    return out / (norm_h[:, None] * norm_w[None, :]).to(out.device)


# --- memory estimate ------------------------------------------------------------------------------------------


class _LargestOutput(TorchFunctionMode):
    """Records the bytes of the largest tensor any torch operation returns in this thread while entered."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


def _largest_activation(job: _Job, probe: torch.Tensor) -> int:
    """Bytes of the largest tensor any operation of the network outputs on ``probe`` (its input included)."""
    x = probe.to(device=job.device, dtype=job.dtype)
    with torch.inference_mode(), _LargestOutput() as seen:
        y = job.fn(x)
    return max(seen.largest, y.numel() * y.element_size(), x.numel() * x.element_size())


@dataclass(frozen=True, slots=True)
class _MemoryModel:
    """Peak bytes of one call as a function of the cells in flight; see :func:`estimate_memory`."""

    activation_per_cell: float  # largest activation per latent cell, in the compute dtype
    weights: int  # the weight copy for the compute dtype
    io_per_cell: int  # input + output buffer bytes per latent cell of the whole batch
    out_per_cell: int  # output bytes per latent cell (tiling keeps a second, weighted accumulator)
    cells: int  # latent cells of the whole batch

    def peak(self, cells_in_flight: int, tiled: bool, tile_norm: bool = False) -> int:
        io = self.cells * (self.io_per_cell + (self.out_per_cell if tiled else 0))
        factor = ACTIVATION_FACTOR * (TILE_NORM_FACTOR if tiled and tile_norm else 1.0)
        return int(factor * self.activation_per_cell * cells_in_flight + self.weights + io)


def _memory_model(job: _Job, shape: tuple[int, ...], in_unit: int) -> _MemoryModel:
    vae = job.vae
    frames = shape[2] if len(shape) == 5 else 1
    side = PROBE_CELLS * in_unit
    probe = torch.randn((1, shape[1], *((frames,) if len(shape) == 5 else ()), side, side))
    per_cell = _largest_activation(job, probe) / PROBE_CELLS**2
    ratio = vae.output_ratio if job.what == "decode" else vae.spatial_ratio
    if job.what == "decode":
        in_per_cell, out_per_cell = shape[1] * frames * 4, 3 * ratio * ratio * frames * 4
    else:
        in_per_cell, out_per_cell = 3 * ratio * ratio * frames * 4, vae.channels * frames * 4
    cells = shape[0] * (shape[-2] // in_unit) * (shape[-1] // in_unit)
    weights = vae.copy_bytes(job.dtype, job.channels_last)
    return _MemoryModel(per_cell, weights, in_per_cell + out_per_cell, out_per_cell, cells)


def _cells_in_flight(shape: tuple[int, ...], in_unit: int, batch_size: int, tile_cells: int | None) -> int:
    h, w = shape[-2] // in_unit, shape[-1] // in_unit
    if tile_cells is None:
        return min(batch_size, shape[0]) * h * w
    return batch_size * min(tile_cells, h) * min(tile_cells, w)


def estimate_memory(vae: VAE | Any, shape: Sequence[int], *, op: str = "decode", run: Run = Run()) -> int:
    """Estimated peak bytes of one :func:`encode`/:func:`decode` call (the process baseline not included).

    Runs the network once on a ``PROBE_CELLS``×``PROBE_CELLS``-cell input, takes the largest tensor any of its
    operations outputs per latent cell, and scales it: ``ACTIVATION_FACTOR × largest activation × cells in
    flight``, plus the weight copy for the compute dtype and the full-size input and output buffers. Activations
    grow linearly with pixels in convolutional VAEs (measured on the SD KL f8 decoder: peak RSS delta / largest
    activation = 3.91 at 256 px and 3.82 at 512 px in fp32, 4.55 / 4.08 in bf16). Without a torch module (ONNX)
    only the network's input and output are seen, so the estimate is a lower bound.

    Args:
        vae: the VAE (or a diffusers autoencoder module).
        shape: the input's shape: latent [N, C, (T,) h, w] in the VAE's native space for decode, images
            [N, 3, (T,) H, W] for encode.
        op: "decode" or "encode".
        run: the compute dtype, batch size, channels-last and tiling (``run.tiling.tile`` in **pixels**, or
            None for the whole image; more than one pass through a network with GroupNorm adds the whole-image
            statistics correction's memory, :data:`TILE_NORM_FACTOR`). The probe runs on the CPU.

    Returns:
        Estimated peak bytes.
    """
    if op not in ("decode", "encode"):
        raise LatentBridgeError(f"op must be 'decode' or 'encode', got {op!r}")
    vae = as_vae(vae)
    shape = tuple(shape)
    job, in_unit, _ = _make_job(vae, op, run.replace(device="cpu"))
    ratio = vae.output_ratio if op == "decode" else vae.spatial_ratio
    model = _memory_model(job, shape, in_unit)
    tile = run.tiling.tile
    tile_cells = None if tile is None else max(tile // ratio, 1)
    tile_norm = tile is not None and run.tiling.passes > 1 and _has_group_norm(job.module)
    return model.peak(_cells_in_flight(shape, in_unit, run.batch_size, tile_cells), tile is not None, tile_norm)


def _auto_tile(job: _Job, shape: tuple[int, ...], in_unit: int, max_memory: int, tile_norm: bool) -> int | None:
    """The tile side in pixels that fits ``max_memory`` (announced), or None when the whole image fits."""
    op, vae, batch_size = job.what, job.vae, job.run.batch_size
    ratio = vae.output_ratio if op == "decode" else vae.spatial_ratio
    model = _memory_model(job, shape, in_unit)
    whole = model.peak(_cells_in_flight(shape, in_unit, batch_size, None), False)
    if whole <= max_memory:
        return None
    h_cells, w_cells = shape[-2] // in_unit, shape[-1] // in_unit
    # Largest fitting tile; multiples of 8 cells keep tile edges on the network's own downsampling grid.
    for cells in range(max(h_cells, w_cells) - 1, 7, -1):
        need = model.peak(_cells_in_flight(shape, in_unit, batch_size, cells), True, tile_norm)
        if need <= max_memory and (cells % 8 == 0 or cells < 16):
            warnings.warn(
                f"{op} of a {h_cells * ratio}×{w_cells * ratio}-px image with {vae.name}: estimated peak "
                f"{whole / 2**30:.2f} GiB exceeds max_memory {max_memory / 2**30:.2f} GiB, so it runs in tiles of "
                f"{cells * ratio} px (estimated {need / 2**30:.2f} GiB); pass tile= to choose the tile size yourself",
                LatentBridgeWarning,
                stacklevel=5,
            )
            return cells * ratio
    smallest = model.peak(_cells_in_flight(shape, in_unit, batch_size, 8), True, tile_norm)
    raise LatentBridgeError(
        f"max_memory {max_memory / 2**30:.2f} GiB is too small for {op} with {vae.name}: even 8-cell tiles "
        f"({8 * ratio} px) need an estimated {smallest / 2**30:.2f} GiB; raise --max-memory or lower --batch-size"
    )


# --- shared plumbing -------------------------------------------------------------------------------------------


def _make_job(vae: VAE, op: str, run: Run) -> tuple[_Job, int, int]:
    """(job, in_unit, out_unit) for ``op`` with ``vae`` as ``run`` says."""
    device, dtype, channels_last = run.torch_device, run.torch_dtype, run.channels_last
    if (vae.decode if op == "decode" else vae.encode) is None:
        half = "decoder" if op == "decode" else "encoder"
        raise IncompatibleError(
            f"VAE {vae.name!r} has no {half} (the file holds only the other half); "
            f"pass a file with the {half} or a full VAE to {op}"
        )
    if vae.module is None and (dtype != torch.float32 or device.type != "cpu"):
        raise LatentBridgeError(
            f"VAE {vae.name!r} ({vae.architecture}) runs outside torch, in float32 on the CPU; "
            f"got dtype {dtype_name(dtype)} on {device}: use dtype fp32 and device cpu"
        )
    module, encode, decode = vae.running(device, dtype, channels_last)
    fn = decode if op == "decode" else encode
    if fn is None:  # pragma: no cover - running() keeps the halves the VAE has
        raise IncompatibleError(f"VAE {vae.name!r} has no {op}r")

    def fp32() -> tuple[torch.nn.Module | None, Fn]:
        module32, enc32, dec32 = vae.running(device, torch.float32, channels_last)
        f = dec32 if op == "decode" else enc32
        if f is None:  # pragma: no cover - as above
            raise IncompatibleError(f"VAE {vae.name!r} has no {op}r")
        return module32, f

    job = _Job(fn, fp32, op, vae, module, device, dtype, channels_last, run)
    if op == "decode":
        return job, 1, vae.output_ratio
    return job, vae.spatial_ratio, 1


def _tile_cells(tile: int, overlap: int | None, ratio: int, what: str) -> tuple[int, int]:
    """Validate pixel ``tile``/``overlap`` and convert them to latent cells."""
    if tile < ratio or tile % ratio:
        lo, hi = nearest_sizes(ratio, max(tile, 1))
        raise ShapeError(f"{what} tile size {tile} px is not a positive multiple of {ratio} px: use {lo} or {hi}")
    t = tile // ratio
    if overlap is None:
        return t, t // 4
    if overlap < 0 or overlap % ratio or 2 * overlap > tile:
        lo = max(overlap - overlap % ratio, 0)
        valid = sorted({min(v, t // 2 * ratio) for v in (lo, lo + ratio)})
        raise ShapeError(
            f"{what} tile overlap {overlap} px must be a multiple of {ratio} px between 0 and half the tile "
            f"({tile // 2} px); use {' or '.join(str(v) for v in valid)}"
        )
    return t, overlap // ratio


def _has_group_norm(module: torch.nn.Module | None) -> bool:
    return module is not None and any(isinstance(m, torch.nn.GroupNorm) for m in module.modules())


def _execute(job: _Job, x: torch.Tensor, *, in_unit: int, out_unit: int) -> torch.Tensor:
    op, vae, run = job.what, job.vae, job.run
    tiling = run.tiling
    ratio = vae.output_ratio if op == "decode" else vae.spatial_ratio
    tile = tiling.tile
    if tile is None:
        budget = run.memory_budget()
        if budget is not None:
            tile_norm = tiling.passes > 1 and _has_group_norm(job.module)
            tile = _auto_tile(job, tuple(x.shape), in_unit, budget, tile_norm)
    plan = None
    if tile is not None:
        t, o = _tile_cells(tile, tiling.overlap, ratio, op)
        plan = plan_tiles(x.shape[-2] // in_unit, x.shape[-1] // in_unit, t, o)
        if plan.count == 1:
            plan = None
    passes = tiling.passes if plan and _has_group_norm(job.module) else 1
    total = x.shape[0] * (plan.count * passes if plan else 1)
    label = f"{op} {vae.name}" + (f" ({plan.count} tiles of {plan.th * ratio}×{plan.tw * ratio} px)" if plan else "")
    steps = _Steps(run, label, total)
    if plan is None:
        return _run_whole(job, x, run.batch_size, steps)
    return _run_tiled(job, x, plan, in_unit, out_unit, run.batch_size, passes, steps)


# --- public API ----------------------------------------------------------------------------------------------


def _check_images(vae: VAE, images: torch.Tensor) -> None:
    """Images [N, 3, (T,) H, W] float, finite, in [-1, 1], sizes the VAE's format takes — else a clear error."""
    if not isinstance(images, torch.Tensor):
        raise InputTypeError(
            f"encode takes images as a torch.Tensor [N, 3, H, W] in [-1, 1], got {type(images).__name__}; load files "
            "with latentbridge.load_images"
        )
    fmt = vae.format
    want_dims = (vae.dims if fmt is None else fmt.dims) + 2
    if images.ndim != want_dims or images.shape[1] != 3 or images.shape[0] < 1:
        want = "[N, 3, H, W]" if want_dims == 4 else "[N, 3, T, H, W]"
        raise ShapeError(
            f"encode with {vae.name!r} takes images {want} in [-1, 1], got shape {tuple(images.shape)}; "
            "add a batch dimension with images[None] or load files with latentbridge.images.load_images"
        )
    if not images.is_floating_point():
        raise LatentBridgeError(
            f"images are {images.dtype}; encode takes float images in [-1, 1]: use images.float() / 127.5 - 1"
        )
    if not torch.isfinite(images).all():
        raise NonFiniteError("the images hold NaN or inf values; encode takes finite images in [-1, 1]")
    lo, hi = float(images.min()), float(images.max())
    if lo < -1.01 or hi > 1.01:  # 1 % slack: resampling filters overshoot [-1, 1] slightly
        fix = "divide by 127.5 and subtract 1" if hi > 2 else "map [0, 1] to [-1, 1] with x * 2 - 1"
        raise LatentBridgeError(f"images span [{lo:.3g}, {hi:.3g}]; encode takes images in [-1, 1]: {fix}")
    multiple = vae.size_multiple
    h, w = images.shape[-2:]
    if h % multiple or w % multiple:
        (h_lo, h_hi), (w_lo, w_hi) = nearest_sizes(multiple, h), nearest_sizes(multiple, w)
        name = fmt.name if fmt is not None else vae.name
        raise ShapeError(
            f"{name} needs image sizes that are multiples of {multiple} px, got {h}×{w}; nearest valid sizes: "
            f"{h if h % multiple == 0 else h_lo}×{w if w % multiple == 0 else w_lo} or "
            f"{h if h % multiple == 0 else h_hi}×{w if w % multiple == 0 else w_hi} "
            "(latentbridge.images.fit_size / --pad / --crop make them fit)"
        )


def encode_native(vae: VAE | Any, images: torch.Tensor, run: Run = Run()) -> torch.Tensor:
    """Encode images to latents in the VAE's native space, as a plain tensor (no format or space checks).

    Args:
        vae: a VAE with an encoder (or a diffusers autoencoder module).
        images: float [N, 3, H, W] (video VAEs: [N, 3, T, H, W]) in **[-1, 1]**.
        run: how it executes (batching, tiling, dtype policy, progress, cancel).

    Returns:
        float32 latents [N, C, h, w] (video [N, C, t, h, w]) in ``vae.native_space``, on ``run.device``.
    """
    vae = as_vae(vae)
    job, in_unit, out_unit = _make_job(vae, "encode", run)
    return _execute(job, images, in_unit=in_unit, out_unit=out_unit)


def decode_native(vae: VAE | Any, latents: torch.Tensor, run: Run = Run()) -> torch.Tensor:
    """Decode native-space latents (a plain tensor) with the codec's batching, tiling, dtype policy and NaN guard.

    Args:
        vae: a VAE with a decoder (or a diffusers autoencoder module).
        latents: [N, C, h, w] (video [N, C, t, h, w]) in ``vae.native_space``.
        run: how it executes.

    Returns:
        float32 images [N, 3, H, W] (video [N, 3, T, H, W]) about **[-1, 1]**, not clamped, on ``run.device``.
    """
    vae = as_vae(vae)
    job, in_unit, out_unit = _make_job(vae, "decode", run)
    return _execute(job, latents, in_unit=in_unit, out_unit=out_unit)


def encode(vae: VAE | Any, images: torch.Tensor, run: Run = Run(), *, provenance: Provenance | None = None) -> Latent:
    """Encode images into a latent in the VAE's native space.

    Args:
        vae: a VAE with an encoder, or a diffusers autoencoder module (wrapped with :func:`latentbridge.as_vae`).
        images: float [N, 3, H, W] in **[-1, 1]** (video VAEs: [N, 3, T, H, W]; latentbridge's image helpers give
            [0, 1]: convert with :func:`latentbridge.images.to_signed`); H and W multiples of the format's
            ``size_multiple`` (the VAE's spatial ratio when its format is unknown).
        run: how it executes: device, dtype ("fp32" exact; "bf16"/"fp16" with non-finite samples redone in fp32),
            batch size, tiling (tiles blended in latent space), memory budget (tiling turns on when the estimate
            passes it, announced with a :class:`LatentBridgeWarning`), channels-last, progress, cancel.
        provenance: what is known about the images (source file, …); the VAE's name and sha256 are added.

    Returns:
        A :class:`Latent` with float32 tensor [N, C, h, w] (video [N, C, t, h, w]) in ``vae.native_space`` —
        "raw" for full VAEs, "model" for tiny autoencoders — with ``vae.format``, the canonical layout,
        ``vae.stats`` and provenance (``vae_name``, ``vae_sha256``, a history entry).

    Raises:
        ShapeError: images not [N, 3, H, W] / sizes the format cannot take (the message names valid sizes).
        LatentBridgeError: images outside [-1, 1] (e.g. [0, 255]).
        IncompatibleError: a VAE without encoder. NonFiniteError: NaN/inf in the images or in fp32 output.
        Cancelled: the run's cancel token was set.
    """
    vae = as_vae(vae)
    _check_images(vae, images)
    tensor = encode_native(vae, images, run)
    tile = run.tiling.tile
    prov = dataclasses.replace(
        provenance or Provenance(), vae_name=vae.name, vae_sha256=vae.sha256, tool=f"latentbridge {__version__}"
    ).then(f"encode {vae.name} {dtype_name(run.torch_dtype)}" + (f" tile {tile}" if tile else ""))
    layout = "NCHW" if tensor.ndim == 4 else "NCTHW"
    return Latent(tensor, format=vae.format, space=vae.native_space, layout=layout, provenance=prov, stats=vae.stats)


def native_latent(vae: VAE, latent: Latent) -> tuple[torch.Tensor, LatentFormat | None]:
    """The latent's tensor in the VAE's native space and canonical layout, after checking they belong together.

    The latent's format wins when both are known and they agree; when the latent's format is unknown the
    VAE's format is used (the caller chose this VAE for it). Conversion uses the latent's own normalisation
    statistics when it carries them, else the VAE's (FLUX.2 BatchNorm).

    Raises:
        IncompatibleError: different formats, dimensions or channel counts.
        SpaceError: an unknown space. FormatRequiredError: no format to convert with (both are ValueErrors).
    """
    if not isinstance(latent, Latent):
        raise InputTypeError(
            f"decode takes a latentbridge Latent, got {type(latent).__name__}; wrap a tensor with "
            "Latent(tensor, format='sd1', space='raw') or read a file with latentbridge.files.read_latent"
        )
    fmt = latent.format or vae.format
    if latent.format is not None and vae.format is not None and latent.format.name != vae.format.name:
        raise IncompatibleError(
            f"the latent is {latent.format.name} but VAE {vae.name!r} reads {vae.format.name} latents; decode it "
            f"with a {latent.format.name} VAE, move it with `latentbridge transfer`, or pass --format if the "
            "latent's label is wrong"
        )
    if latent.space == "unknown":
        raise SpaceError(
            "this latent's space is unknown (raw VAE output or model space?); pass --space raw|model, "
            "or run `latentbridge check` to have it estimated"
        )
    if fmt is None:
        if latent.space != vae.native_space:
            raise FormatRequiredError(
                f"the latent is in {latent.space} space and VAE {vae.name!r} reads {vae.native_space} space, but "
                "neither says which latent format they are, so the conversion is unknown; pass --format NAME"
            )
        tensor = latent.to_layout("NCTHW" if "T" in latent.layout else "NCHW").tensor
    else:
        stats = latent.stats if latent.stats is not None else vae.stats
        tensor = latent.replace(format=fmt).to_space(vae.native_space, stats).tensor
    dims = fmt.dims if fmt is not None else vae.dims
    if dims != vae.dims or tensor.ndim != vae.dims + 2:
        raise IncompatibleError(
            f"VAE {vae.name!r} decodes {'video' if vae.dims == 3 else 'image'} latents, got a latent of shape "
            f"{tuple(tensor.shape)} (layout {latent.layout}); decode it with a matching VAE"
        )
    if tensor.shape[1] != vae.channels:
        raise IncompatibleError(
            f"VAE {vae.name!r} reads {vae.channels}-channel {vae.native_space}-space latents, got "
            f"{tensor.shape[1]} channels (shape {tuple(tensor.shape)}); this latent belongs to another VAE family: "
            "run `latentbridge identify` on it"
        )
    return tensor, fmt


def decode(vae: VAE | Any, latent: Latent, run: Run = Run(), *, crop_padding: bool = True) -> torch.Tensor:
    """Decode a latent (raw or model space) to images in [0, 1].

    Args:
        vae: a VAE with a decoder, or a diffusers autoencoder module (wrapped with :func:`latentbridge.as_vae`).
        latent: the latent, in either space; its format must match the VAE's (an unknown format takes the
            VAE's). Converted to ``vae.native_space`` first (scale/shift, mean/std, FLUX.2 BatchNorm + patchify).
        run: how it executes: device, dtype, batch size, tiling (tile and overlap in output pixels, a multiple of
            the decoder's output ratio), memory budget, channels-last, progress, cancel.
        crop_padding: remove the padding recorded at encode time (``provenance.extra["padding"]``).

    Returns:
        float32 images [N, 3, H, W] (video [N, 3, T, H, W]) in **[0, 1]** (diffusers pipelines use [-1, 1]:
        :func:`latentbridge.images.to_signed` converts), on ``run.device``.

    Raises:
        IncompatibleError: the latent belongs to another format / channel count / dimensionality.
        NonFiniteError: NaN/inf in the latent, or in the fp32 output.
        SpaceError: unknown space. FormatRequiredError: no format to convert with. Cancelled: cancelled.
    """
    from latentbridge.images import PADDING_KEY, Padding  # local: images imports PIL, the codec needs it only here

    vae = as_vae(vae)
    tensor, _ = native_latent(vae, latent)
    if tensor.shape[0] < 1:
        raise ShapeError(f"the latent has an empty batch (shape {tuple(tensor.shape)}); nothing to decode")
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteError(
            f"the latent holds NaN or inf values (samples {bad}); it is corrupt or was saved after a diverged "
            "sampling run: regenerate it"
        )
    images = decode_native(vae, tensor, run)
    images = (images.clamp(-1.0, 1.0) + 1.0) / 2.0
    padding = dict(latent.provenance.extra).get(PADDING_KEY)
    if crop_padding and padding:
        images = Padding.parse(padding).scaled(vae.output_ratio, vae.spatial_ratio).crop(images)
    return images
