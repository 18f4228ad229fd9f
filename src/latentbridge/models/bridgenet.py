"""The bridge network: a learned converter from one VAE's native latents to another's (see latentbridge.bridge).

Normalise -> a linear 1×1 map on the coarse grid (plus a small residual conv body) -> denormalise. The linear
map sees the source pixel-unshuffled to the target grid (or writes the target pixel-shuffled from the source
grid); :class:`BridgeConfig` holds everything needed to rebuild the network before loading its weights.
Fitting, files and the ``Latent -> Latent`` transfer method live in :mod:`latentbridge.bridge`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from latentbridge.errors import IncompatibleError

BridgeKind = Literal["linear", "conv"]
BRIDGE_KINDS: tuple[str, ...] = ("linear", "conv")

__all__ = ["BRIDGE_KINDS", "BridgeConfig", "BridgeKind", "BridgeNet"]


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """Architecture of a bridge network: everything needed to rebuild it before loading its weights.

    Attributes:
        src_channels, dst_channels: native latent channels of the source and target VAE.
        src_ratio, dst_ratio: their spatial ratios (pixels per latent cell); one must divide the other.
        hidden: width of the convolutional body.
        blocks: residual blocks in the body; 0 with ``kind == "linear"``.
        kind: "linear" (1×1 channel mixing only) or "conv" (linear map + residual conv body).
    """

    src_channels: int
    dst_channels: int
    src_ratio: int
    dst_ratio: int
    hidden: int = 64
    blocks: int = 2
    kind: str = "conv"

    def __post_init__(self) -> None:
        if self.kind not in BRIDGE_KINDS:
            raise ValueError(f"bridge kind must be one of {BRIDGE_KINDS}, got {self.kind!r}")
        for name in ("src_channels", "dst_channels", "src_ratio", "dst_ratio", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"bridge {name} must be a positive integer, got {getattr(self, name)}")
        if self.blocks < 0:
            raise ValueError(f"bridge blocks must be 0 or more, got {self.blocks}")
        lo, hi = sorted((self.src_ratio, self.dst_ratio))
        if hi % lo:
            raise IncompatibleError(
                f"a bridge needs spatial ratios that divide one another, got {self.src_ratio}× (source) and "
                f"{self.dst_ratio}× (target); transfer with --method reencode instead (it decodes to pixels)"
            )

    @property
    def unshuffle(self) -> int:
        """Input pixel-unshuffle factor (> 1 when the source latent is finer than the target)."""
        return self.dst_ratio // self.src_ratio if self.dst_ratio > self.src_ratio else 1

    @property
    def shuffle(self) -> int:
        """Output pixel-shuffle factor (> 1 when the source latent is coarser than the target)."""
        return self.src_ratio // self.dst_ratio if self.src_ratio > self.dst_ratio else 1

    @property
    def fine_body(self) -> bool:
        """True when the conv body runs on the finer of the two grids.

        A packed latent (FLUX.2's 128 ch / 16× model space is a 2×2 space-to-depth of 32 ch / 8×) is best
        predicted cell by cell on the fine grid: the body then sees (or writes) C·/k² channels per fine cell and
        the packing is exact. That needs the coarse side's channel count to be a multiple of k²; otherwise the
        body runs on the coarse grid, on the packed channels.
        """
        k = max(self.unshuffle, self.shuffle)
        coarse_channels = self.dst_channels if self.unshuffle > 1 else self.src_channels
        return k > 1 and coarse_channels % (k * k) == 0

    @property
    def body_ratio(self) -> int:
        """Pixels per cell of the grid the conv body runs on."""
        lo, hi = sorted((self.src_ratio, self.dst_ratio))
        return lo if self.fine_body else hi

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields."""
        return dataclasses.asdict(self)


# --- the network ----------------------------------------------------------------------------------------


class _Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class BridgeNet(nn.Module):
    """Normalise -> linear 1×1 map on the coarse grid [+ residual conv body] -> denormalise.

    The linear map sees the source pixel-unshuffled to the target grid (or writes the target pixel-shuffled from
    the source grid), so it mixes every channel of every cell that covers the same pixels. The conv body runs
    on the finer grid when the channel counts allow (see :attr:`BridgeConfig.fine_body`): a coarse source is
    pixel-shuffled before it, a coarse target is pixel-unshuffled after it.

    ``forward``: source native latents [N, C_src, h, w] -> target native latents
    [N, C_dst, h·src_ratio/dst_ratio, w·src_ratio/dst_ratio].
    """

    src_mean: torch.Tensor  # buffers, [C_src] / [C_dst]
    src_std: torch.Tensor
    dst_mean: torch.Tensor
    dst_std: torch.Tensor

    def __init__(self, cfg: BridgeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("src_mean", torch.zeros(cfg.src_channels))
        self.register_buffer("src_std", torch.ones(cfg.src_channels))
        self.register_buffer("dst_mean", torch.zeros(cfg.dst_channels))
        self.register_buffer("dst_std", torch.ones(cfg.dst_channels))
        self.linear = nn.Conv2d(cfg.src_channels * cfg.unshuffle**2, cfg.dst_channels * cfg.shuffle**2, 1)
        self.body: nn.Sequential | None = None
        if cfg.kind == "conv":
            if cfg.fine_body:  # channels per fine cell on each side
                bin_ = cfg.src_channels // cfg.shuffle**2
                bout = cfg.dst_channels // cfg.unshuffle**2
            else:
                bin_, bout = cfg.src_channels * cfg.unshuffle**2, cfg.dst_channels * cfg.shuffle**2
            head = nn.Conv2d(cfg.hidden, bout, 1)
            nn.init.zeros_(head.weight)  # start exactly at the linear map
            nn.init.zeros_(cast(torch.Tensor, head.bias))  # Conv2d(..., bias=True) has one
            self.body = nn.Sequential(
                nn.Conv2d(bin_, cfg.hidden, 3, padding=1),
                *[_Residual(cfg.hidden) for _ in range(cfg.blocks)],
                nn.SiLU(),
                head,
            )

    def _through(self, body: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        """Normalised source -> body output on the target grid."""
        cfg = self.cfg
        if cfg.fine_body:
            if cfg.shuffle > 1:
                return body(F.pixel_shuffle(x, cfg.shuffle))
            return F.pixel_unshuffle(body(x), cfg.unshuffle)
        if cfg.unshuffle > 1:
            return body(F.pixel_unshuffle(x, cfg.unshuffle))
        y = body(x)
        return F.pixel_shuffle(y, cfg.shuffle) if cfg.shuffle > 1 else y

    def normalised(self, x: torch.Tensor) -> torch.Tensor:
        """Source native latents -> the normalised target latents the network predicts (before denormalising)."""
        cfg = self.cfg
        x = (x - self.src_mean.view(1, -1, 1, 1)) / self.src_std.view(1, -1, 1, 1)
        y = self.linear(F.pixel_unshuffle(x, cfg.unshuffle) if cfg.unshuffle > 1 else x)
        if cfg.shuffle > 1:
            y = F.pixel_shuffle(y, cfg.shuffle)
        if self.body is not None:
            y = y + self._through(self.body, x)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalised(x) * self.dst_std.view(1, -1, 1, 1) + self.dst_mean.view(1, -1, 1, 1)
