"""VAElight: a tiny approximate SD1 encoder/decoder pair shipped as ONNX, run through onnxruntime.

Source: Graphnull/VAElight (Apache-2.0). Both work on **raw** (unscaled) SD1.x/2.x latents.

* Encoder ``VAEencoder.onnx``: input ``input`` [N, 3, H, W] in [-1, 1] -> ``latent`` [N, 4, H/8, W/8].
* Decoder ``VAEpreview.onnx``: input ``latent`` [N, 4, h, w] -> four outputs, a base image and three
  frequency bands, at 1×, 2×, 4× and 8× the latent size. Each is upsampled bilinearly (half-pixel
  centres, as the reference's ``cv2.resize(INTER_LINEAR)``) to 8× and the four are summed: an image of
  [N, 3, 8h, 8w], about [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latentbridge.errors import ShapeError, WeightsError

SPATIAL_RATIO = 8
LATENT_CHANNELS = 4


def _session(path: Path):  # -> onnxruntime.InferenceSession
    try:
        import onnxruntime as ort
    except ImportError as exc:  # pragma: no cover - onnxruntime is a dependency
        raise WeightsError(f"{path} is an ONNX model, which needs onnxruntime: pip install onnxruntime") from exc
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except (RuntimeError, ValueError) as exc:  # onnxruntime raises its own RuntimeError subclasses
        raise WeightsError(f"onnxruntime cannot load {path}: {exc}; re-download the file") from exc


class VAELight:
    """The VAElight encoder and/or decoder (either may be None)."""

    def __init__(self, encoder_path: Path | None = None, decoder_path: Path | None = None) -> None:
        self.encoder = _session(encoder_path) if encoder_path is not None else None
        self.decoder = _session(decoder_path) if decoder_path is not None else None

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 3, H, W] in [-1, 1] (H, W multiples of 8) -> raw SD1 latents [N, 4, H/8, W/8]."""
        if self.encoder is None:
            raise RuntimeError("this VAElight has no encoder: load VAEencoder.onnx too")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ShapeError(f"VAElight encodes images [N, 3, H, W], got shape {tuple(images.shape)}")
        x = images.detach().to("cpu", torch.float32).numpy()
        (latent,) = self.encoder.run(["latent"], {"input": x})
        return torch.from_numpy(latent).to(images.device, images.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Raw SD1 latents [N, 4, h, w] -> images [N, 3, 8h, 8w], about [-1, 1] (the four bands summed)."""
        if self.decoder is None:
            raise RuntimeError("this VAElight has no decoder: load VAEpreview.onnx too")
        if latents.ndim != 4 or latents.shape[1] != LATENT_CHANNELS:
            raise ShapeError(
                f"VAElight decodes raw SD1 latents [N, 4, h, w], got shape {tuple(latents.shape)}; "
                "convert model-space latents to raw first (latentbridge.formats.model_to_raw)"
            )
        z = np.ascontiguousarray(latents.detach().to("cpu", torch.float32).numpy())
        size = (latents.shape[2] * SPATIAL_RATIO, latents.shape[3] * SPATIAL_RATIO)
        out = torch.zeros(latents.shape[0], 3, *size)
        for band in self.decoder.run(None, {"latent": z}):
            t = torch.from_numpy(band)
            if t.shape[-2:] != size:
                t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
            out += t
        return out.to(latents.device, latents.dtype)
