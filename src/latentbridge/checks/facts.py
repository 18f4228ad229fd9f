"""What the check knows about each side before comparing them: the VAE's identity, the channel counts it
takes, the latent as a Latent with a layout, numbers recorded in the provenance."""

from __future__ import annotations

from typing import Any

import torch

from latentbridge.errors import InputTypeError
from latentbridge.latent import Latent
from latentbridge.vae import VaeIdentity, as_vae

# Provenance keys that may hold the source image size / frame count (ComfyUI workflows, our own records).
SIZE_KEYS: tuple[str, ...] = ("height", "image_height", "pixel_height")


WIDTH_KEYS: tuple[str, ...] = ("width", "image_width", "pixel_width")


FRAME_KEYS: tuple[str, ...] = ("frames", "num_frames", "length", "video_length")


def vae_identity(vae: Any) -> VaeIdentity:
    """The :class:`~latentbridge.vae.VaeIdentity` the check compares with: of a loaded VAE (or diffusers
    autoencoder module), a VaeIdentity itself, or a weight file's header description (``WeightsInfo``)."""
    if isinstance(vae, VaeIdentity):
        return vae.identity
    if isinstance(vae, torch.nn.Module):
        return as_vae(vae).identity
    from latentbridge.weights import WeightsInfo  # local: the weights package is only needed for files

    if isinstance(vae, WeightsInfo):
        return vae.identity()
    raise InputTypeError(
        "check needs a VAE, a VaeIdentity, a WeightsInfo or a diffusers autoencoder module for the VAE, got "
        f"{type(vae).__name__}: load one with latentbridge.load_vae(path) or wrap pipe.vae with latentbridge.as_vae"
    )


def accepted_channels(vae: VaeIdentity) -> dict[int, str]:
    """Channel counts the VAE can take (after the codec's space conversion) -> which space that is."""
    fmt = vae.format
    if fmt is None:
        return {vae.channels: vae.native_space}
    out = {fmt.channels: "raw", fmt.model_channels: "model"}
    if fmt.channels == fmt.model_channels:
        out[fmt.channels] = "raw or model"
    return out


def provenance_int(latent: Latent, keys: tuple[str, ...]) -> int | None:
    extra = dict(latent.provenance.extra)
    for key in keys:
        if key in extra:
            try:
                value = int(float(extra[key]))
            except ValueError:
                continue
            if value > 0:
                return value
    return None


def _canonical_for(ndim: int, vae_dims: int) -> str:
    """The layout a tensor of ``ndim`` dims is assumed to be in when nothing is declared."""
    return {3: "CHW", 4: "NCHW", 5: "NCTHW"}.get(ndim, "")


def as_latent(latent: Latent | torch.Tensor, vae: VaeIdentity) -> tuple[Latent, bool]:
    """(Latent, layout declared?) — a bare tensor gets the canonical layout for its rank."""
    if isinstance(latent, Latent):
        return latent, True
    if not isinstance(latent, torch.Tensor):
        raise TypeError(f"check needs a Latent or a torch.Tensor, got {type(latent).__name__}")
    layout = _canonical_for(latent.ndim, vae.dims)
    if not layout:
        raise ValueError(
            f"a latent is 3-D (C, H, W), 4-D (N, C, H, W) or 5-D (N, C, T, H, W); got shape {tuple(latent.shape)}. "
            "Reshape it, or wrap it in a Latent with its layout."
        )
    return Latent(latent, layout=layout), False
