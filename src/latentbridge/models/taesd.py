"""TAESD-family tiny autoencoders: TAESD/TAESDXL/TAESD3/TAEF1, TAEF2 (pool blocks) and TAESana (32×).

Architecture after madebyollin/taesd (MIT): plain 3×3 conv + ReLU residual blocks, stride-2 convs down,
nearest 2× upsampling up. Layer indices match the published ``nn.Sequential`` state dicts, so
``taef2_encoder.pth`` loads into ``TAESD(cfg).encoder`` as stored.

Conventions: images in **[0, 1]**; latents in the family's **model space** (what the diffusion model
sees), unpacked: TAEF2 reads/writes FLUX.2's 32-channel 8× latents *after* BatchNorm normalisation,
i.e. ``unpack(model-space latent, 2)``. The decoder starts with a soft clamp ``tanh(x / 3) * 3``.

Variants (``TAESDConfig.variant``):

* ``""`` — TAESD: 8×, 64 channels everywhere.
* ``"pool"`` — TAEF2: as TAESD, and the blocks of the encoder's last stage and the decoder's first stage
  add a 1×1-conv → GroupNorm(4) → ReLU → 1×1-conv "pool" branch to their input.
* ``"f32"`` — TAESana: two stride-2 stem convs (32×) and a wider decoder (256 → 128 → 64 channels).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

VARIANTS: tuple[str, ...] = ("", "pool", "f32")


@dataclass(frozen=True, slots=True)
class TAESDConfig:
    """Shape of a TAESD-family network."""

    latent_channels: int = 4
    variant: str = ""  # "", "pool" (TAEF2) or "f32" (TAESana)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown TAESD variant {self.variant!r}: expected one of {VARIANTS}")
        if self.latent_channels < 1:
            raise ValueError(f"latent_channels must be positive, got {self.latent_channels}")

    @property
    def spatial_ratio(self) -> int:
        """Pixels per latent cell: 32 for the f32 variant, else 8."""
        return 32 if self.variant == "f32" else 8


def conv3(c_in: int, c_out: int, stride: int = 1, bias: bool = True) -> nn.Conv2d:
    """3×3 convolution with 'same' padding."""
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


class SoftClamp(nn.Module):
    """``tanh(x / 3) * 3``: keeps decoder inputs within about ±3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Residual block ``relu(conv(x) + x)``, with TAEF2's optional "pool" branch added to the input first."""

    def __init__(self, channels: int, pool: bool = False) -> None:
        super().__init__()
        c = channels
        self.conv = nn.Sequential(conv3(c, c), nn.ReLU(), conv3(c, c), nn.ReLU(), conv3(c, c))
        self.pool = None
        if pool:
            self.pool = nn.Sequential(
                nn.Conv2d(c, 4 * c, 1, bias=False),
                nn.GroupNorm(4, 4 * c),
                nn.ReLU(),
                nn.Conv2d(4 * c, c, 1, bias=False),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = x + self.pool(x)
        return torch.relu(self.conv(x) + x)


def build_encoder(cfg: TAESDConfig) -> nn.Sequential:
    """Images [N, 3, H, W] in [0, 1] -> latents [N, C, H/r, W/r] (r = 8, or 32 for f32)."""
    if cfg.variant == "f32":
        layers: list[nn.Module] = [conv3(3, 32, stride=2), nn.ReLU(), conv3(32, 64, stride=2), nn.ReLU(), Block(64)]
    else:
        layers = [conv3(3, 64), Block(64)]
    for stage in range(3):
        pool = cfg.variant == "pool" and stage == 2  # TAEF2: the deepest stage
        layers += [conv3(64, 64, stride=2, bias=False), Block(64, pool), Block(64, pool), Block(64, pool)]
    layers.append(conv3(64, cfg.latent_channels))
    return nn.Sequential(*layers)


def build_decoder(cfg: TAESDConfig) -> nn.Sequential:
    """Latents [N, C, h, w] -> images [N, 3, h·r, w·r], about [0, 1]."""
    widths = (256, 128, 64, 64, 64, 64) if cfg.variant == "f32" else (64, 64, 64, 64)
    layers: list[nn.Module] = [SoftClamp(), conv3(cfg.latent_channels, widths[0]), nn.ReLU()]
    for stage, (width, next_width) in enumerate(itertools.pairwise(widths)):
        pool = cfg.variant == "pool" and stage == 0  # TAEF2: the deepest stage
        layers += [Block(width, pool), Block(width, pool), Block(width, pool)]
        layers += [nn.Upsample(scale_factor=2), conv3(width, next_width, bias=False)]
    layers += [Block(widths[-1]), conv3(widths[-1], 3)]
    return nn.Sequential(*layers)


class TAESD(nn.Module):
    """A TAESD-family autoencoder; either half may be absent (files ship encoder and decoder separately)."""

    def __init__(self, cfg: TAESDConfig, encoder: bool = True, decoder: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg) if encoder else None
        self.decoder = build_decoder(cfg) if decoder else None

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, H, W] in [0, 1] -> model-space latents [N, C, H/r, W/r] (unpacked)."""
        if self.encoder is None:
            raise RuntimeError("this TAESD has no encoder: load the *_encoder weights too")
        return self.encoder(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Model-space latents [N, C, h, w] (unpacked) -> images [N, 3, h·r, w·r], about [0, 1]."""
        if self.decoder is None:
            raise RuntimeError("this TAESD has no decoder: load the *_decoder weights too")
        return self.decoder(latents)
