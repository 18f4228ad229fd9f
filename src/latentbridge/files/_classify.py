"""Is a file a latent or a network's weights? Decided from content: container, key names, tensor count."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from latentbridge.files._containers import torch_load
from latentbridge.files._sniff import read_safetensors_header, sniff, starts_like_zip

# Key prefixes of VAE / checkpoint state dicts (diffusers, LDM, A1111, ComfyUI, TAESD-family nn.Sequential).
WEIGHT_PREFIXES: tuple[str, ...] = (
    "encoder.",
    "decoder.",
    "first_stage_model.",
    "vae.",
    "model.",
    "quant_conv.",
    "post_quant_conv.",
    "bn.",
    "state_dict.",
)
# Last dotted segment of a network parameter or buffer name.
PARAM_SUFFIXES = frozenset(("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))
MAX_LATENT_TENSORS = 16  # a latent file holds a few arrays (latent, flipped copy, mask, sizes); networks hold more


def weight_names(names: list[str]) -> list[str]:
    """The names that look like a network's: a known state-dict prefix or a ``*.weight``/``*.bias``-style last part."""
    return [n for n in names if n.startswith(WEIGHT_PREFIXES) or ("." in n and n.rsplit(".", 1)[1] in PARAM_SUFFIXES)]


def looks_like_weights(names: list[str]) -> bool:
    """True when tensor names look like a state dict: parameter-style names, known prefixes, or many tensors."""
    return len(names) > MAX_LATENT_TENSORS or bool(weight_names(names))


def _tensor_names(obj: Any, prefix: str = "") -> list[str]:
    if isinstance(obj, torch.Tensor):
        return [prefix.rstrip(".")]
    if isinstance(obj, Mapping):
        return [n for k, v in obj.items() for n in _tensor_names(v, f"{prefix}{k}.")]
    if isinstance(obj, list | tuple):
        return [n for i, v in enumerate(obj) for n in _tensor_names(v, f"{prefix}{i}.")]
    return []


def classify(path: str | Path) -> Literal["latent", "weights"]:
    """ "latent" for a latent file, "weights" for a VAE/model weight file, decided from content only.

    ONNX and GGUF files are weights; .latent, .npy, .npz and kohya caches are latents; safetensors and
    PyTorch files are weights when their tensor names look like a state dict (``encoder.``/``decoder.``/
    ``first_stage_model.``/``vae.`` prefixes, ``*.weight``/``*.bias`` names) or they hold more than 16 tensors.
    Only headers are read for safetensors; a PyTorch zip file is memory-mapped, not read.

    Raises:
        FileFormatError: the file is damaged, an impostor (HTML page, git-lfs pointer, …) or an unsafe pickle.
    """
    path = Path(path)
    kind = sniff(path)
    if kind in ("onnx", "gguf"):
        return "weights"
    if kind == "safetensors":
        entries, _ = read_safetensors_header(path)
        return "weights" if looks_like_weights(list(entries)) else "latent"
    if kind == "pt":
        obj = torch_load(path, mmap=starts_like_zip(path), budget=None)  # weights may be large: memory-mapped
        return "weights" if looks_like_weights(_tensor_names(obj)) else "latent"
    return "latent"
