"""VAEApprox: the AUTOMATIC1111 web UI's approximate preview decoder (about 52k parameters).

Eight unpadded convolutions after a nearest 2× upsample and 11 px of zero padding; every convolution,
the last included, is followed by ``leaky_relu(0.1)``. Input: **model-space** latents (SD1: raw × 0.18215,
SDXL: raw × 0.13025, SD3: (raw − 0.0609) × 1.5305), [N, C, h, w] with C = 4 (SD1/SDXL) or 16 (SD3).
Output: images [N, 3, 2h, 2w], about [-1, 1] — at twice the latent size, not the VAE's 8×.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (out_channels, kernel) of conv1 … conv8; conv1's input is the latent channel count
LAYERS: tuple[tuple[int, int], ...] = ((8, 7), (16, 5), (32, 3), (64, 3), (32, 3), (16, 3), (8, 3), (3, 3))
PAD = 11  # zero padding each side: 2·11 = 6 + 4 + 6·2 pixels eaten by the unpadded 7×7, 5×5 and six 3×3 convs


class VAEApprox(nn.Module):
    """The preview decoder; attribute names ``conv1`` … ``conv8`` match the published state dicts."""

    def __init__(self, latent_channels: int = 4) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        c_in = latent_channels
        for i, (c_out, k) in enumerate(LAYERS, start=1):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c_out, k))
            c_in = c_out

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """Model-space latents [N, C, h, w] -> images [N, 3, 2h, 2w], about [-1, 1]."""
        x = F.interpolate(latents, scale_factor=2, mode="nearest")
        x = F.pad(x, (PAD, PAD, PAD, PAD))
        for i in range(1, len(LAYERS) + 1):
            x = F.leaky_relu(getattr(self, f"conv{i}")(x), 0.1)
        return x
