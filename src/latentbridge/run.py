"""How work executes: one frozen :class:`Run` value that every long operation takes (``run=Run()``).

A ``Run`` says where and how a network runs — device, compute dtype, batch size, tiling, a memory budget,
channels-last — and how the caller follows and stops it: a progress callback ``(Progress) -> None`` and a
:class:`CancelToken`. The library never draws a progress bar and never reads the environment; the CLI turns
its options into one ``Run`` and draws the bar from the callback, a web service would stream the same events,
a ComfyUI node would feed its progress hook::

    from latentbridge import Run, Tiling, CancelToken
    token = CancelToken()
    run = Run(dtype="bf16", tiling=Tiling(tile=512), progress=print, cancel=token)
    images = latentbridge.decode(vae, latent, run=run)   # token.cancel() from another thread stops it

A cancelled operation raises :class:`~latentbridge.errors.Cancelled` at its next step and writes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from latentbridge._device import check_device
from latentbridge.errors import Cancelled, DtypeError, LatentBridgeError

__all__ = [
    "AUTO_MEMORY_FRACTION",
    "COMPUTE_DTYPES",
    "DTYPE_ALIASES",
    "TILE_PASSES",
    "TILING_MODES",
    "CancelToken",
    "Progress",
    "ProgressFn",
    "Run",
    "Tiling",
    "TilingMode",
    "available_memory",
    "dtype_name",
    "parse_dtype",
]

COMPUTE_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
"""The dtypes latentbridge computes and loads weights in, by their short names."""

DTYPE_ALIASES: dict[str, str] = {
    "float32": "fp32",
    "float": "fp32",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
}
"""Other names accepted for the same dtypes (torch's and numpy's spellings)."""

TILE_PASSES = 2
"""Default passes of a tiled run through a network with GroupNorm (1 = per-tile statistics; see the codec)."""

TilingMode = Literal["blend"]
TILING_MODES: tuple[str, ...] = ("blend",)
"""Tiling modes: "blend" (overlapping tiles blended with raised-cosine ramps, whole-image GroupNorm statistics
corrected over ``passes``). An exact layer-by-layer mode is planned (issue 19) and will be added here."""

AUTO_MEMORY_FRACTION = 0.75
"""``max_memory="auto"``: this fraction of the memory available when the operation starts."""


def parse_dtype(dtype: str | torch.dtype, what: str = "dtype") -> torch.dtype:
    """The torch dtype for "fp32" / "bf16" / "fp16" (or "float32", "bfloat16", "half", torch.float16 …).

    Args:
        dtype: a name (case-insensitive) or a torch dtype.
        what: how the message names the value ("compute dtype", "dtype").

    Raises:
        DtypeError: any other name or dtype (the message lists the accepted ones).
    """
    if isinstance(dtype, torch.dtype):
        if dtype in COMPUTE_DTYPES.values():
            return dtype
        raise DtypeError(f"{what} {dtype} is not supported: use one of {', '.join(COMPUTE_DTYPES)}")
    if not isinstance(dtype, str):
        raise DtypeError(f"{what} must be a name or a torch dtype, got {type(dtype).__name__}: use fp32, bf16 or fp16")
    key = DTYPE_ALIASES.get(dtype.lower(), dtype.lower())
    if key not in COMPUTE_DTYPES:
        raise DtypeError(
            f"unknown {what} {dtype!r}: expected one of {', '.join(COMPUTE_DTYPES)} (or {', '.join(DTYPE_ALIASES)})"
        )
    return COMPUTE_DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    """The short name ("fp32", "bf16", "fp16") of a dtype :func:`parse_dtype` accepts, else torch's own name."""
    return next((k for k, v in COMPUTE_DTYPES.items() if v == dtype), str(dtype).removeprefix("torch."))


@dataclass(frozen=True, slots=True)
class Tiling:
    """How images (or latents) are cut into tiles so that big pictures fit in memory.

    Attributes:
        tile: tile side in pixels (a multiple of the VAE's spatial ratio), or None: whole images unless
            ``Run.max_memory`` calls for tiles (then the codec picks the side and says so).
        overlap: overlap between neighbouring tiles in pixels (default: a quarter of the tile, whole cells).
        passes: runs over all tiles for networks with GroupNorm: 1 uses per-tile statistics (fastest, seams
            show as tile-wise colour shifts); each further pass brings them closer to the whole image's.
        mode: "blend" (the only mode today; see :data:`TILING_MODES`).
    """

    tile: int | None = None
    overlap: int | None = None
    passes: int = TILE_PASSES
    mode: TilingMode = "blend"

    def __post_init__(self) -> None:
        if self.tile is not None and (not isinstance(self.tile, int) or self.tile < 1):
            raise LatentBridgeError(f"tile must be a positive number of pixels or None, got {self.tile!r}")
        if self.overlap is not None and (not isinstance(self.overlap, int) or self.overlap < 0):
            raise LatentBridgeError(f"tile overlap must be 0 or more pixels, or None, got {self.overlap!r}")
        if not isinstance(self.passes, int) or self.passes < 1:
            raise LatentBridgeError(f"tile passes must be at least 1, got {self.passes!r}")
        if self.mode not in TILING_MODES:
            raise LatentBridgeError(f"unknown tiling mode {self.mode!r}: expected one of {', '.join(TILING_MODES)}")


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress event: ``done`` of ``total`` steps of ``task`` are finished.

    Attributes:
        task: what runs, for a label: "decode zoo-a (4 tiles of 128×128 px)", "transfer reencode".
        done: steps finished so far (0 at the start).
        total: steps in all (samples, tiles × passes, files …); 0 when not known yet.
    """

    task: str
    done: int
    total: int


ProgressFn = Callable[[Progress], None]


class CancelToken:
    """A flag one thread sets to stop a long operation another thread runs; thread-safe.

    Operations check it before each step (a batch, a tile, a file, a refinement step) and raise
    :class:`~latentbridge.errors.Cancelled`; what they would have written is not written.
    """

    __slots__ = ("_event", "_reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason = ""

    def cancel(self, reason: str = "") -> None:
        """Ask the operation to stop at its next step (``reason`` goes into the error message)."""
        self._reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def raise_if_cancelled(self, what: str) -> None:
        """Raise :class:`~latentbridge.errors.Cancelled` naming ``what`` when cancelled."""
        if self._event.is_set():
            why = f" ({self._reason})" if self._reason else ""
            raise Cancelled(f"{what} was cancelled{why}; nothing was written for it: run it again to redo it")

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled})"


@dataclass(frozen=True, slots=True)
class Run:
    """How a long operation executes. Frozen: build one and pass it to every call (``run=``).

    Attributes:
        device: where networks run ("cpu", "cuda", "cuda:1", "mps", or a torch.device).
        dtype: compute dtype, "fp32" (default: exact), "bf16" or "fp16"; samples whose reduced-precision output
            holds NaN/inf are computed again in fp32 with a warning.
        batch_size: samples (or tiles) per network call.
        tiling: a :class:`Tiling` (default: whole images).
        max_memory: peak-memory budget in bytes, ``"auto"`` (75 % of the memory available when the operation
            starts, measured by the library), or None (no budget). When the estimated peak passes it and no tile
            size is given, tiling turns on, announced with a :class:`~latentbridge.errors.LatentBridgeWarning`.
        channels_last: run convolutions in channels-last layout (faster with bf16 on CPU; results differ from
            the default layout by rounding only).
        progress: called with a :class:`Progress` after each step (never from another thread).
        cancel: a :class:`CancelToken`; once cancelled, the operation raises
            :class:`~latentbridge.errors.Cancelled` at its next step.
    """

    device: str | torch.device = "cpu"
    dtype: str | torch.dtype = "fp32"
    batch_size: int = 1
    tiling: Tiling = Tiling()
    max_memory: int | Literal["auto"] | None = None
    channels_last: bool = False
    progress: ProgressFn | None = None
    cancel: CancelToken | None = None

    def __post_init__(self) -> None:
        parse_dtype(self.dtype, "compute dtype")
        if isinstance(self.device, str):
            try:
                torch.device(self.device)
            except RuntimeError as exc:
                raise LatentBridgeError(
                    f"unknown device {self.device!r}: expected cpu, cuda, cuda:N, mps … ({exc})"
                ) from exc
        elif not isinstance(self.device, torch.device):
            raise LatentBridgeError(f"device must be a name or a torch.device, got {type(self.device).__name__}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise LatentBridgeError(f"batch_size must be at least 1, got {self.batch_size!r}")
        if not isinstance(self.tiling, Tiling):
            raise LatentBridgeError(
                f"tiling must be a latentbridge Tiling, got {type(self.tiling).__name__}: use Tiling(tile=512)"
            )
        budget = self.max_memory
        if budget is not None and budget != "auto" and (isinstance(budget, bool) or not isinstance(budget, int)):
            raise LatentBridgeError(f"max_memory must be a number of bytes, 'auto' or None, got {budget!r}")
        if isinstance(budget, int) and budget < 1:
            raise LatentBridgeError(f"max_memory must be a positive number of bytes, got {budget}")
        if self.progress is not None and not callable(self.progress):
            raise LatentBridgeError(
                f"progress must be a callable taking a Progress, got {type(self.progress).__name__}"
            )
        if self.cancel is not None and not isinstance(self.cancel, CancelToken):
            raise LatentBridgeError(f"cancel must be a latentbridge CancelToken, got {type(self.cancel).__name__}")

    @property
    def torch_dtype(self) -> torch.dtype:
        """The compute dtype as a torch dtype."""
        return parse_dtype(self.dtype, "compute dtype")

    @property
    def torch_device(self) -> torch.device:
        """The device as a torch.device, once this torch and this machine are known to have it.

        Raises:
            DeviceError: ``cuda`` on a CPU-only torch or a machine without a visible GPU, an index past the GPUs
                there are, ``mps`` where Metal is unavailable (see :func:`latentbridge._device.check_device`).
        """
        return check_device(self.device)

    def replace(self, **changes: object) -> Run:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def report(self, task: str, done: int, total: int) -> None:
        """Tell the progress callback (if any) that ``done`` of ``total`` steps of ``task`` are finished."""
        if self.progress is not None:
            self.progress(Progress(task, done, total))

    def check_cancelled(self, what: str) -> None:
        """Raise :class:`~latentbridge.errors.Cancelled` when the cancel token is set."""
        if self.cancel is not None:
            self.cancel.raise_if_cancelled(what)

    def memory_budget(self) -> int | None:
        """``max_memory`` in bytes: "auto" is measured now on ``device`` (see :func:`available_memory`)."""
        if self.max_memory == "auto":
            return available_memory(self.torch_device)
        return self.max_memory


def available_memory(device: torch.device, fraction: float = AUTO_MEMORY_FRACTION) -> int | None:
    """``fraction`` of the memory free on ``device`` now, in bytes, or None when it cannot be measured.

    CUDA: ``torch.cuda.mem_get_info``; otherwise the host's ``MemAvailable`` (``/proc/meminfo``), else the
    available physical pages (``os.sysconf``).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * fraction)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(int(info["MemAvailable"].split()[0]) * 1024 * fraction)
    except (OSError, KeyError, ValueError):
        pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else 0
        return int(pages * os.sysconf("SC_PAGE_SIZE") * fraction) if pages > 0 else None
