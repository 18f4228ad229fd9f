"""The loaded-VAE value every codec path runs through, whatever the architecture or file layout.

A :class:`VAE` wraps one network behind two plain functions with one convention:

* ``encode(images) -> latents``: images [N, 3, H, W] float in [-1, 1]  ->  latents in ``native_space``
  (for KL VAEs the posterior **mean**, deterministic);
* ``decode(latents) -> images``: latents in ``native_space``  ->  images [N, 3, H', W'] float, about [-1, 1]
  (not clamped: the codec clamps, so NaN/overflow checks see the real output).

``native_space`` is "raw" for full VAEs (AutoencoderKL & co. and VAElight) and "model" for the
TAESD family and VAEApprox previews, which were trained on model-space latents. The codec converts a
:class:`~latentbridge.latent.Latent` to ``native_space`` before calling them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from latentbridge.formats import LatentFormat, NormStats

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, slots=True, eq=False)
class VAE:
    """A loaded VAE (or half of one) with its identity.

    Attributes:
        name: what the user called it ("zoo-a", a file path, a hub id).
        sha256: content hash of the weight file ("" when built in memory).
        architecture: the identified architecture ("autoencoder_kl", "taesd", "vaeapprox", …).
        format: the latent format it reads/writes, or None when the file alone cannot tell.
        native_space: "raw" or "model": the space ``encode`` returns and ``decode`` takes.
        channels: latent channels in ``native_space``.
        spatial_ratio: pixels per latent cell in ``native_space``.
        dims: 2 (image) or 3 (video).
        encode: images [-1, 1] -> native latents, or None when the file has no encoder.
        decode: native latents -> images about [-1, 1], or None when the file has no decoder.
        module: the torch module behind both (for device/dtype moves), or None (ONNX).
        stats: per-channel normalisation statistics from the file (FLUX.2 BatchNorm), else None.
        decode_ratio: output pixels per latent cell of ``decode`` (VAEApprox: 2, not ``spatial_ratio``).
    """

    name: str
    sha256: str
    architecture: str
    format: LatentFormat | None
    native_space: str
    channels: int
    spatial_ratio: int
    dims: int
    encode: Fn | None
    decode: Fn | None
    module: torch.nn.Module | None = None
    stats: NormStats | None = None
    decode_ratio: int = 0  # 0 = same as spatial_ratio

    @property
    def output_ratio(self) -> int:
        """Pixels per latent cell of what ``decode`` returns."""
        return self.decode_ratio or self.spatial_ratio

    @property
    def size_multiple(self) -> int:
        """Image sizes ``encode`` takes are multiples of this: the format's, else the spatial ratio."""
        return self.format.size_multiple if self.format is not None else self.spatial_ratio


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
    cfg = model.config
    channels = int(cfg.get("latent_channels", cfg.get("z_dim", 0)))
    n_down = len(cfg.get("block_out_channels", (0, 0, 0, 0))) - 1
    spatial_ratio = 2**n_down if "block_out_channels" in cfg else (fmt.spatial_ratio if fmt else 8)

    def encode(images: torch.Tensor) -> torch.Tensor:
        return model.encode(images).latent_dist.mean

    def decode(latents: torch.Tensor) -> torch.Tensor:
        return model.decode(latents).sample

    return VAE(
        name=name,
        sha256=sha256,
        architecture=architecture,
        format=fmt,
        native_space="raw",
        channels=channels,
        spatial_ratio=spatial_ratio,
        dims=fmt.dims if fmt is not None else 2,
        encode=encode,
        decode=decode,
        module=model,
    )
