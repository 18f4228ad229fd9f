"""latentbridge: make diffusion-model latents safe to move around."""

from __future__ import annotations

__version__ = "0.1.0"
