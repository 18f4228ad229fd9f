"""Encode images to latents and decode latents to images: spaces, batching, tiling, dtype policy, NaN guard.

Every path runs through one :class:`~latentbridge.vae.VAE` value, whatever the architecture:

* :func:`encode` takes images [N, 3, H, W] (video: [N, 3, T, H, W]) in **[-1, 1]** and returns a
  :class:`~latentbridge.latent.Latent` in the VAE's **native space**: ``"raw"`` for full VAEs (AutoencoderKL
  and kin, VAElight), ``"model"`` for the TAESD family and other tiny autoencoders trained on model-space
  latents. The Latent records format, space, layout and provenance (the VAE's name and sha256); convert it
  with ``latent.to_space("model")`` when a diffusion model needs it.
* :func:`decode` takes a Latent in **either space**, converts it to the VAE's native space as its format says
  (scale/shift, per-channel mean/std, FLUX.2 BatchNorm + 2×2 patchify with the VAE's statistics), and returns
  images [N, 3, H, W] (video: [N, 3, T, H, W]) float32 in **[0, 1]**. The VAE value hides each network's
  image range; the codec hides the spaces.

Precision: ``dtype`` is "fp32" (the default; exact), "bf16" or "fp16". The module's weights are cast for the
call and the originals put back afterwards (no global torch flag is touched). A sample whose output has a
NaN or inf in reduced precision is computed again in fp32 with a :class:`LatentBridgeWarning` naming it.

Tiling: ``tile=`` (pixels) splits the image into overlapping tiles, runs each through the network and blends
the overlaps with a raised-cosine ramp whose outer quarter is dropped (tile borders see zero padding; the
ramp keeps them out). GroupNorm normalises over the whole image, so networks that have it run
``tile_passes`` times (default 2) and each pass corrects every tile's statistics towards the whole image's
(:class:`_TileNorm`; TAEF2 at 512² in 256-px tiles: 26.2 dB against the untiled decode with per-tile
statistics, 43.4 dB with 2 passes, 52.0 dB with 3). Attention blocks (the SD mid-block) still see one tile: that
part of the difference remains. Without ``tile``, a ``max_memory`` budget (bytes) turns tiling on when the estimated
peak passes it, announced with a warning. The estimate (:func:`estimate_memory`) runs the network once on a
16×16-cell probe with forward hooks, takes the largest activation per latent cell and multiplies it by
``ACTIVATION_FACTOR`` (peak RSS over largest activation, measured on the SD KL f8 decoder: 3.8–4.6 for
256–512 px in fp32 and bf16), plus the weight copy for the compute dtype and the input/output buffers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from latentbridge import __version__
from latentbridge._device import check_device
from latentbridge.errors import (
    IncompatibleError,
    LatentBridgeError,
    LatentBridgeWarning,
    NonFiniteError,
    ShapeError,
)
from latentbridge.formats import LatentFormat, nearest_sizes
from latentbridge.latent import Latent, Provenance
from latentbridge.vae import VAE

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""The compute dtypes the codec accepts, by name."""

ACTIVATION_FACTOR = 4.5
"""Peak memory of one forward pass / its largest activation (measured 3.8–4.6 on the SD KL f8 decoder)."""

TILE_NORM_FACTOR = 2.4
"""Extra peak memory of a tiled run with whole-image GroupNorm statistics (``tile_passes`` > 1), as a factor on
the activation term. Measured as peak RSS delta, 2 passes / 1 pass, in 256-px tiles at 512 px: SD KL f8 decoder
900 / 378 MB (2.4), TAEF2 93 / 72 MB (1.3), zoo-a 291 / 264 MB at 1024 px (1.1); the largest is used, so a
memory budget holds for the deepest GroupNorm network measured (without it a 768 MiB budget gave 1.25 GB)."""

PROBE_CELLS = 16
"""Side, in latent cells, of the input :func:`estimate_memory` runs to measure activation sizes."""

RAMP_MARGIN = 0.25
"""Fraction of each tile overlap, on the tile's own border side, that gets zero blending weight."""

TILE_PASSES = 2
"""Default passes of a tiled run through a network with GroupNorm (see :class:`_TileNorm`); 1 = per-tile stats."""

_ALIASES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float": "fp32"}


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """The torch dtype for "fp32" / "bf16" / "fp16" (or torch.float32 …); anything else is an error."""
    if isinstance(dtype, torch.dtype):
        if dtype in DTYPES.values():
            return dtype
        raise LatentBridgeError(f"compute dtype {dtype} is not supported: use one of {', '.join(DTYPES)}")
    key = _ALIASES.get(str(dtype).lower(), str(dtype).lower())
    if key not in DTYPES:
        raise LatentBridgeError(f"unknown compute dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return DTYPES[key]


def _dtype_name(dtype: torch.dtype) -> str:
    return next(k for k, v in DTYPES.items() if v == dtype)


# --- weights in another dtype, for one call ---------------------------------------------------------------


class _Weights:
    """Swaps a module's floating-point parameters and buffers to (device, dtype) and back, exactly.

    The originals are kept and put back by :meth:`restore`; every dtype is cast from the originals, so a
    round trip through bf16 never rounds the fp32 weights.
    """

    def __init__(self, module: torch.nn.Module | None, device: torch.device, channels_last: bool) -> None:
        self.module, self.device, self.channels_last = module, device, channels_last
        self.tensors: list[torch.Tensor] = []
        if module is not None:
            seen: set[int] = set()
            for t in (*module.parameters(), *module.buffers()):
                if t.is_floating_point() and id(t) not in seen:
                    seen.add(id(t))
                    self.tensors.append(t)
        self.originals = [t.data for t in self.tensors]
        self.cache: dict[torch.dtype, list[torch.Tensor]] = {}
        self.current: torch.dtype | None = None

    def cast(self, data: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        out = data.to(device=self.device, dtype=dtype)
        if self.channels_last and out.ndim == 4:
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def use(self, dtype: torch.dtype) -> None:
        if dtype == self.current:
            return
        if dtype not in self.cache:
            with torch.no_grad():
                self.cache[dtype] = [self.cast(d, dtype) for d in self.originals]
        for t, d in zip(self.tensors, self.cache[dtype], strict=True):
            t.data = d
        self.current = dtype

    def restore(self) -> None:
        for t, d in zip(self.tensors, self.originals, strict=True):
            t.data = d
        self.cache.clear()
        self.current = None

    def extra_bytes(self, dtype: torch.dtype) -> int:
        """Bytes a copy in ``dtype`` adds (0 for tensors already in that dtype and layout)."""
        size = torch.empty((), dtype=dtype).element_size()
        return sum(d.numel() * size for d in self.originals if d.dtype != dtype or self.channels_last)


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
    """One pass of the codec: the network function, how its units scale, and the precision policy."""

    fn: Callable[[torch.Tensor], torch.Tensor]
    what: str  # "decode" / "encode"
    vae_name: str
    weights: _Weights
    device: torch.device
    dtype: torch.dtype
    channels_last: bool

    def run(
        self, x: torch.Tensor, labels: Sequence[str], norm: _TileNorm | None = None, rows: Sequence[_Unit] = ()
    ) -> torch.Tensor:
        """fn on a batch, float32 out; non-finite rows redone in fp32 (warned), still non-finite -> error.

        With ``norm`` (tiled runs), the GroupNorm statistics of a row are kept only once its output is finite.
        """
        self.weights.use(self.dtype)
        if norm is not None:
            norm.begin(rows)
        y = self._call(x, self.dtype)
        bad = [i for i in range(y.shape[0]) if not torch.isfinite(y[i]).all()]
        if norm is not None:
            norm.commit([i for i in range(y.shape[0]) if i not in bad])
        if not bad:
            return y
        if self.dtype == torch.float32:
            raise NonFiniteError(
                f"{self.what} with {self.vae_name} produced NaN/inf for {labels[bad[0]]} in fp32; the input is "
                "finite, so the VAE itself diverges on it: check that the latent's format and space match this "
                "VAE (`latentbridge check`), or that the image is in [-1, 1]"
            )
        self.weights.use(torch.float32)
        for i in bad:
            warnings.warn(
                f"{self.what} with {self.vae_name}: {labels[i]} overflowed in {_dtype_name(self.dtype)} "
                "(NaN/inf in the output); computed it again in fp32",
                LatentBridgeWarning,
                stacklevel=5,
            )
            if norm is not None:
                norm.begin(rows[i : i + 1])
            y[i] = self._call(x[i : i + 1], torch.float32)[0]
            if not torch.isfinite(y[i]).all():
                raise NonFiniteError(
                    f"{self.what} with {self.vae_name} produced NaN/inf for {labels[i]} in "
                    f"{_dtype_name(self.dtype)} and again in fp32: the VAE diverges on this input; check that the "
                    "latent's format and space match this VAE (`latentbridge check`)"
                )
            if norm is not None:
                norm.commit([0])
        self.weights.use(self.dtype)
        return y

    def _call(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        x = x.to(device=self.device, dtype=dtype)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            y = self.fn(x)
        return y.float().contiguous()


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (only on a terminal and when ``enabled``); yields ``advance(n)``."""
    console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _run_whole(job: _Job, x: torch.Tensor, batch_size: int, advance: Callable[[int], None]) -> torch.Tensor:
    outs = []
    for lo in range(0, x.shape[0], batch_size):
        hi = min(lo + batch_size, x.shape[0])
        outs.append(job.run(x[lo:hi], [f"sample {i}" for i in range(lo, hi)]))
        advance(hi - lo)
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


class _TileNorm:
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

    While active, each ``nn.GroupNorm`` of the module gets an instance-level ``forward``; leaving the context
    puts back what was there.
    """

    def __init__(self, module: torch.nn.Module | None, plan: TilePlan, h_cells: int, w_cells: int, th: int, tw: int):
        self.modules = [m for m in module.modules() if isinstance(m, torch.nn.GroupNorm)] if module is not None else []
        self.plan, self.th, self.tw = plan, th, tw
        self.own_rows = _owned(plan.rows, th, h_cells)
        self.own_cols = _owned(plan.cols, tw, w_cells)
        self.sums: dict[tuple[int, int], dict[int, torch.Tensor]] = {}  # key -> sample -> [G, 3]
        self.pending: dict[tuple[int, int], torch.Tensor] = {}  # key -> [B, G, 3]: (count, mean, M2) per row
        self.pending_local: dict[tuple[int, int], torch.Tensor] = {}  # key -> [B, G, 2]: whole-tile (mean, var)
        self.local: dict[tuple[tuple[int, int], _Unit], torch.Tensor] = {}  # (key, unit) -> [G, 2]
        self.frozen: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}  # key -> (mean, var) [N, G]
        self.frozen_local: dict[tuple[tuple[int, int], _Unit], torch.Tensor] = {}
        self.rows: Sequence[_Unit] = ()
        self.calls: dict[int, int] = {}
        self.saved: list[object] = []
        self.collect = True  # record statistics in this pass (not needed in the last one)

    def __enter__(self) -> _TileNorm:
        self.saved = [m.__dict__.get("forward") for m in self.modules]
        for m in self.modules:
            m.forward = self._forward_of(m)  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        for m, old in zip(self.modules, self.saved, strict=True):
            if old is None:
                del m.forward
            else:
                m.forward = old  # type: ignore[method-assign]

    def begin(self, rows: Sequence[_Unit]) -> None:
        """A batch of tiles starts: ``rows`` says which (sample, row, column) each batch row is."""
        self.rows, self.pending, self.pending_local, self.calls = rows, {}, {}, {}

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

    def _forward_of(self, m: torch.nn.GroupNorm) -> Callable[[torch.Tensor], torch.Tensor]:
        def forward(x: torch.Tensor) -> torch.Tensor:
            call = self.calls.get(id(m), 0)
            self.calls[id(m)] = call + 1
            key = (id(m), call)
            b, c, g = x.shape[0], x.shape[1], m.num_groups
            if not self.collect and key not in self.frozen:
                return torch.nn.functional.group_norm(x, g, m.weight, m.bias, m.eps)
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
                return torch.nn.functional.group_norm(x, g, m.weight, m.bias, m.eps)
            image_mean, image_var = self.frozen[key]
            rows = []
            for i, unit in enumerate(self.rows):
                before = self.frozen_local[(key, unit)]
                mean = local[i, :, 0] + (image_mean[unit[0]] - before[:, 0])
                var = local[i, :, 1] * (image_var[unit[0]] + m.eps) / (before[:, 1] + m.eps)
                mean_c = mean.repeat_interleave(c // g).to(x.device, torch.float32)
                var_c = var.repeat_interleave(c // g).to(x.device, torch.float32)
                weight = None if m.weight is None else m.weight.float()  # float statistics and parameters:
                bias = None if m.bias is None else m.bias.float()  # the CPU kernel's mixed bf16/fp16 mode
                rows.append(
                    torch.nn.functional.batch_norm(x[i : i + 1], mean_c, var_c, weight, bias, False, 0.0, m.eps)
                )
            return rows[0] if b == 1 else torch.cat(rows)

        return forward


def _merge(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Combine (count, mean, M2) statistics of two disjoint regions (Chan et al.'s parallel variance)."""
    n = a[:, 0] + b[:, 0]
    delta = b[:, 1] - a[:, 1]
    mean = a[:, 1] + delta * b[:, 0] / n.clamp_min(1)
    m2 = a[:, 2] + b[:, 2] + delta**2 * a[:, 0] * b[:, 0] / n.clamp_min(1)
    return torch.stack([n, mean, m2], dim=1)


def _run_tiled(
    job: _Job,
    x: torch.Tensor,
    plan: TilePlan,
    in_unit: int,
    out_unit: int,
    batch_size: int,
    passes: int,
    advance: Callable[[int], None],
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
    norm = _TileNorm(job.weights.module if passes > 1 else None, plan, h_cells, w_cells, th, tw)
    with norm:
        for p in range(passes):
            out: torch.Tensor | None = None
            if p > 0:
                norm.next_pass()
            norm.collect = p < passes - 1
            for lo in range(0, len(units), batch_size):
                chunk = units[lo : lo + batch_size]
                tiles = torch.stack(
                    [x[n, ..., _span(plan.rows[r], th, in_unit), _span(plan.cols[c], tw, in_unit)] for n, r, c in chunk]
                )
                labels = [f"sample {n} tile ({r}, {c})" for n, r, c in chunk]
                y = job.run(tiles, labels, norm, chunk)
                advance(len(chunk))
                if out is None:
                    shape = (x.shape[0], *y.shape[1:-2], h_cells * out_unit, w_cells * out_unit)
                    out = torch.zeros(shape, device=y.device)
                for (n, r, c), tile in zip(chunk, y, strict=True):
                    weight = wh[r].to(y.device)[:, None] * ww[c].to(y.device)[None, :]
                    out[n, ..., _span(plan.rows[r], th, out_unit), _span(plan.cols[c], tw, out_unit)] += tile * weight
            if norm.collect and not norm.sums:  # no GroupNorm ran (e.g. only the encoder has one): done
                advance(len(units) * (passes - 1 - p))
                break
    assert out is not None  # at least one unit: x has N >= 1 (checked by the callers)
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


def _largest_activation(job: _Job, probe: torch.Tensor) -> int:
    """Bytes of the largest tensor any submodule outputs on ``probe`` (outputs only when no torch module)."""
    sizes = [0]

    def hook(_module: torch.nn.Module, _inputs: object, output: object) -> None:
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                sizes.append(t.numel() * t.element_size())

    module = job.weights.module
    handles = [m.register_forward_hook(hook) for m in module.modules()] if module is not None else []
    try:
        job.weights.use(job.dtype)
        x = probe.to(device=job.device, dtype=job.dtype)
        with torch.inference_mode():
            y = job.fn(x)
        sizes.append(y.numel() * y.element_size())
        sizes.append(x.numel() * x.element_size())
    finally:
        for h in handles:
            h.remove()
    return max(sizes)


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


def _memory_model(job: _Job, vae: VAE, shape: tuple[int, ...], in_unit: int) -> _MemoryModel:
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
    return _MemoryModel(per_cell, job.weights.extra_bytes(job.dtype), in_per_cell + out_per_cell, out_per_cell, cells)


def _cells_in_flight(shape: tuple[int, ...], in_unit: int, batch_size: int, tile_cells: int | None) -> int:
    h, w = shape[-2] // in_unit, shape[-1] // in_unit
    if tile_cells is None:
        return min(batch_size, shape[0]) * h * w
    return batch_size * min(tile_cells, h) * min(tile_cells, w)


def estimate_memory(
    vae: VAE,
    shape: Sequence[int],
    *,
    op: str = "decode",
    dtype: str | torch.dtype = "fp32",
    batch_size: int = 1,
    tile: int | None = None,
    channels_last: bool = False,
    tile_passes: int = TILE_PASSES,
) -> int:
    """Estimated peak bytes of one :func:`encode`/:func:`decode` call (the process baseline not included).

    Runs the network once on a ``PROBE_CELLS``×``PROBE_CELLS``-cell input with forward hooks, takes the largest
    activation per latent cell, and scales it: ``ACTIVATION_FACTOR × largest activation × cells in flight``,
    plus the weight copy for ``dtype`` and the full-size input and output buffers. Activations grow linearly
    with pixels in convolutional VAEs (measured on the SD KL f8 decoder: peak RSS delta / largest activation
    = 3.91 at 256 px and 3.82 at 512 px in fp32, 4.55 / 4.08 in bf16). Without a torch module (ONNX) only the
    network's input and output are seen, so the estimate is a lower bound.

    Args:
        vae: the VAE.
        shape: the input's shape: latent [N, C, (T,) h, w] in the VAE's native space for decode, images
            [N, 3, (T,) H, W] for encode.
        op: "decode" or "encode".
        dtype: compute dtype.
        batch_size: samples (or tiles) per network call.
        tile: tile side in **pixels**, or None for the whole image.
        channels_last: the channels-last fast path (weights copied in that layout).
        tile_passes: passes of a tiled run; more than 1 through a network with GroupNorm adds the
            whole-image statistics correction's memory (:data:`TILE_NORM_FACTOR`).

    Returns:
        Estimated peak bytes.
    """
    if op not in ("decode", "encode"):
        raise LatentBridgeError(f"op must be 'decode' or 'encode', got {op!r}")
    _check_batch_size(batch_size)
    shape = tuple(shape)
    job, in_unit, _ = _make_job(vae, op, torch.device("cpu"), resolve_dtype(dtype), channels_last)
    ratio = vae.output_ratio if op == "decode" else vae.spatial_ratio
    try:
        model = _memory_model(job, vae, shape, in_unit)
    finally:
        job.weights.restore()
    tile_cells = None if tile is None else max(tile // ratio, 1)
    tile_norm = tile is not None and tile_passes > 1 and _has_group_norm(vae.module)
    return model.peak(_cells_in_flight(shape, in_unit, batch_size, tile_cells), tile is not None, tile_norm)


def _auto_tile(
    job: _Job, vae: VAE, shape: tuple[int, ...], in_unit: int, batch_size: int, max_memory: int, tile_norm: bool
) -> int | None:
    """The tile side in pixels that fits ``max_memory`` (announced), or None when the whole image fits."""
    op = job.what
    ratio = vae.output_ratio if op == "decode" else vae.spatial_ratio
    model = _memory_model(job, vae, shape, in_unit)
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
                stacklevel=4,
            )
            return cells * ratio
    smallest = model.peak(_cells_in_flight(shape, in_unit, batch_size, 8), True, tile_norm)
    raise LatentBridgeError(
        f"max_memory {max_memory / 2**30:.2f} GiB is too small for {op} with {vae.name}: even 8-cell tiles "
        f"({8 * ratio} px) need an estimated {smallest / 2**30:.2f} GiB; raise --max-memory or lower --batch-size"
    )


# --- shared plumbing -------------------------------------------------------------------------------------------


def _make_job(
    vae: VAE, op: str, device: torch.device, dtype: torch.dtype, channels_last: bool
) -> tuple[_Job, int, int]:
    """(job, in_unit, out_unit) for ``op`` with ``vae``."""
    fn = vae.decode if op == "decode" else vae.encode
    if fn is None:
        half = "decoder" if op == "decode" else "encoder"
        raise IncompatibleError(
            f"VAE {vae.name!r} has no {half} (the file holds only the other half); "
            f"pass a file with the {half} or a full VAE to {op}"
        )
    if vae.module is None and (dtype != torch.float32 or device.type != "cpu"):
        raise LatentBridgeError(
            f"VAE {vae.name!r} ({vae.architecture}) runs outside torch, in float32 on the CPU; "
            f"got dtype {_dtype_name(dtype)} on {device}: use dtype fp32 and device cpu"
        )
    job = _Job(fn, op, vae.name, _Weights(vae.module, device, channels_last), device, dtype, channels_last)
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


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise LatentBridgeError(f"batch_size must be at least 1, got {batch_size}")


def _execute(
    job: _Job,
    vae: VAE,
    x: torch.Tensor,
    *,
    in_unit: int,
    out_unit: int,
    batch_size: int,
    tile: int | None,
    overlap: int | None,
    max_memory: int | None,
    tile_passes: int,
    progress: bool,
) -> torch.Tensor:
    op = job.what
    if tile_passes < 1:
        raise LatentBridgeError(f"tile_passes must be at least 1, got {tile_passes}")
    ratio = vae.output_ratio if op == "decode" else vae.spatial_ratio
    try:
        if tile is None and max_memory is not None:
            tile_norm = tile_passes > 1 and _has_group_norm(vae.module)
            tile = _auto_tile(job, vae, tuple(x.shape), in_unit, batch_size, max_memory, tile_norm)
        plan = None
        if tile is not None:
            t, o = _tile_cells(tile, overlap, ratio, op)
            plan = plan_tiles(x.shape[-2] // in_unit, x.shape[-1] // in_unit, t, o)
            if plan.count == 1:
                plan = None
        passes = tile_passes if plan and _has_group_norm(vae.module) else 1
        total = x.shape[0] * (plan.count * passes if plan else 1)
        label = f"{op} {vae.name}" + (
            f" ({plan.count} tiles of {plan.th * ratio}×{plan.tw * ratio} px)" if plan else ""
        )
        with _progress_bar(progress, total, label) as advance:
            if plan is None:
                return _run_whole(job, x, batch_size, advance)
            return _run_tiled(job, x, plan, in_unit, out_unit, batch_size, passes, advance)
    finally:
        job.weights.restore()


# --- public API ----------------------------------------------------------------------------------------------


def encode(
    vae: VAE,
    images: torch.Tensor,
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "fp32",
    tile: int | None = None,
    overlap: int | None = None,
    max_memory: int | None = None,
    tile_passes: int = TILE_PASSES,
    progress: bool = True,
    channels_last: bool = False,
    provenance: Provenance | None = None,
) -> Latent:
    """Encode images into a latent in the VAE's native space.

    Args:
        vae: a VAE with an encoder.
        images: float [N, 3, H, W] in [-1, 1] (video VAEs: [N, 3, T, H, W]); H and W multiples of the format's
            ``size_multiple`` (the VAE's spatial ratio when its format is unknown).
        batch_size: images (or tiles) per network call.
        device: where the network runs ("cpu", "cuda", …).
        dtype: "fp32" (default, exact), "bf16" or "fp16"; non-finite samples are redone in fp32 with a warning.
        tile: tile side in pixels (a multiple of the spatial ratio) to encode in overlapping tiles, blended in
            latent space; None = whole images unless ``max_memory`` says otherwise.
        overlap: tile overlap in pixels (default: a quarter of the tile, rounded to whole latent cells).
        max_memory: peak-memory budget in bytes; when the estimate passes it, tiling turns on (announced with a
            :class:`LatentBridgeWarning`).
        tile_passes: passes over the tiles for networks with GroupNorm: 1 uses per-tile statistics (fastest,
            seams show as tile-wise colour shifts); each further pass brings the statistics closer to the
            whole image's (default 2).
        progress: show a progress bar (only on a terminal).
        channels_last: run convolutions in channels-last layout (faster with bf16 on CPU; results differ from
            the default layout by rounding only).
        provenance: what is known about the images (source file, …); the VAE's name and sha256 are added.

    Returns:
        A :class:`Latent` with float32 tensor [N, C, h, w] (video [N, C, t, h, w]) in ``vae.native_space`` —
        "raw" for full VAEs, "model" for tiny autoencoders — with ``vae.format``, the canonical layout,
        ``vae.stats`` and provenance (``vae_name``, ``vae_sha256``, a history entry).

    Raises:
        ShapeError: images not [N, 3, H, W] / sizes the format cannot take (the message names valid sizes).
        LatentBridgeError: images outside [-1, 1] (e.g. [0, 255]), bad dtype/batch size.
        IncompatibleError: a VAE without encoder. NonFiniteError: NaN/inf in the images or in fp32 output.
    """
    _check_batch_size(batch_size)
    torch_dtype, dev = resolve_dtype(dtype), check_device(device)
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
    job, in_unit, out_unit = _make_job(vae, "encode", dev, torch_dtype, channels_last)
    tensor = _execute(
        job,
        vae,
        images,
        in_unit=in_unit,
        out_unit=out_unit,
        batch_size=batch_size,
        tile=tile,
        overlap=overlap,
        max_memory=max_memory,
        tile_passes=tile_passes,
        progress=progress,
    )
    prov = dataclasses.replace(
        provenance or Provenance(), vae_name=vae.name, vae_sha256=vae.sha256, tool=f"latentbridge {__version__}"
    ).then(f"encode {vae.name} {_dtype_name(torch_dtype)}" + (f" tile {tile}" if tile else ""))
    layout = "NCHW" if tensor.ndim == 4 else "NCTHW"
    return Latent(tensor, format=fmt, space=vae.native_space, layout=layout, provenance=prov, stats=vae.stats)


def native_latent(vae: VAE, latent: Latent) -> tuple[torch.Tensor, LatentFormat | None]:
    """The latent's tensor in the VAE's native space and canonical layout, after checking they belong together.

    The latent's format wins when both are known and they agree; when the latent's format is unknown the
    VAE's format is used (the caller chose this VAE for it). Conversion uses the latent's own normalisation
    statistics when it carries them, else the VAE's (FLUX.2 BatchNorm).

    Raises:
        IncompatibleError: different formats, dimensions or channel counts.
        ValueError: an unknown space, or no format to convert with.
    """
    if not isinstance(latent, Latent):
        raise TypeError(
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
        raise ValueError(
            "this latent's space is unknown (raw VAE output or model space?); pass --space raw|model, "
            "or run `latentbridge check` to have it estimated"
        )
    if fmt is None:
        if latent.space != vae.native_space:
            raise ValueError(
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


def decode(
    vae: VAE,
    latent: Latent,
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = "fp32",
    tile: int | None = None,
    overlap: int | None = None,
    max_memory: int | None = None,
    tile_passes: int = TILE_PASSES,
    progress: bool = True,
    channels_last: bool = False,
    crop_padding: bool = True,
) -> torch.Tensor:
    """Decode a latent (raw or model space) to images.

    Args:
        vae: a VAE with a decoder.
        latent: the latent, in either space; its format must match the VAE's (an unknown format takes the
            VAE's). Converted to ``vae.native_space`` first (scale/shift, mean/std, FLUX.2 BatchNorm + patchify).
        batch_size: samples (or tiles) per network call.
        device: where the network runs.
        dtype: "fp32" (default, exact), "bf16" or "fp16"; non-finite samples are redone in fp32 with a warning.
        tile: tile side in output pixels (a multiple of the decoder's output ratio), or None.
        overlap: tile overlap in output pixels (default: a quarter of the tile, whole latent cells).
        max_memory: peak-memory budget in bytes; tiling turns on (with a warning) when the estimate passes it.
        tile_passes: passes over the tiles for networks with GroupNorm (1 = per-tile statistics; default 2).
        progress: show a progress bar (only on a terminal).
        channels_last: run convolutions in channels-last layout (the bf16 fast path on CPU).
        crop_padding: remove the padding recorded at encode time (``provenance.extra["padding"]``).

    Returns:
        float32 images [N, 3, H, W] (video [N, 3, T, H, W]) in [0, 1], on ``device``.

    Raises:
        IncompatibleError: the latent belongs to another format / channel count / dimensionality.
        NonFiniteError: NaN/inf in the latent, or in the fp32 output.
        ValueError: unknown space, no format to convert with.
    """
    from latentbridge.images import PADDING_KEY, Padding  # local: images imports PIL, the codec needs it only here

    _check_batch_size(batch_size)
    torch_dtype, dev = resolve_dtype(dtype), check_device(device)
    tensor, _ = native_latent(vae, latent)
    if tensor.shape[0] < 1:
        raise ShapeError(f"the latent has an empty batch (shape {tuple(tensor.shape)}); nothing to decode")
    if not torch.isfinite(tensor).all():
        bad = (~torch.isfinite(tensor)).flatten(1).any(1).nonzero().flatten().tolist()
        raise NonFiniteError(
            f"the latent holds NaN or inf values (samples {bad}); it is corrupt or was saved after a diverged "
            "sampling run: regenerate it"
        )
    job, in_unit, out_unit = _make_job(vae, "decode", dev, torch_dtype, channels_last)
    images = _execute(
        job,
        vae,
        tensor,
        in_unit=in_unit,
        out_unit=out_unit,
        batch_size=batch_size,
        tile=tile,
        overlap=overlap,
        max_memory=max_memory,
        tile_passes=tile_passes,
        progress=progress,
    )
    images = (images.clamp(-1.0, 1.0) + 1.0) / 2.0
    padding = dict(latent.provenance.extra).get(PADDING_KEY)
    if crop_padding and padding:
        images = Padding.parse(padding).scaled(vae.output_ratio, vae.spatial_ratio).crop(images)
    return images
