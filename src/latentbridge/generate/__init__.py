"""Text-to-image generation stages: empty latent -> seeded noise -> CLIP text embeddings -> sampling.

Each stage has one job and one documented signature, and every latent it hands out is a
:class:`~latentbridge.latent.Latent` in **model** space whose provenance records what made it:

* :func:`empty_latent` (``latents.py``): zeros of the right shape for a format, size and frame count;
* :func:`noise` (``latents.py``): seeded noise drawn on the CPU (the same numbers on every device);
* :func:`encode_prompt` (``prompts.py``): CLIP embeddings with A1111's emphasis and long-prompt chunking;
* :func:`sample` (``sampling.py``): diffusers models from local files; split schedules, img2img, progress.

Decoding is the codec's (``latentbridge.codec.decode`` with the model's own VAE).
"""

from __future__ import annotations

from latentbridge.generate._latents import draw_noise, empty_latent, item_seeds, latent_size, noise
from latentbridge.generate._prompts import (
    Chunk,
    Fragment,
    PromptEmbedding,
    SpecialTokens,
    TextEncoder,
    chunk_tokens,
    encode_prompt,
    load_text_encoder,
    parse_emphasis,
)
from latentbridge.generate._sampling import (
    Model,
    Step,
    from_pipeline,
    load_model,
    model_vae,
    sample,
    set_scheduler,
)

__all__ = [
    "Chunk",
    "Fragment",
    "Model",
    "PromptEmbedding",
    "SpecialTokens",
    "Step",
    "TextEncoder",
    "chunk_tokens",
    "draw_noise",
    "empty_latent",
    "encode_prompt",
    "from_pipeline",
    "item_seeds",
    "latent_size",
    "load_model",
    "load_text_encoder",
    "model_vae",
    "noise",
    "parse_emphasis",
    "sample",
    "set_scheduler",
]
