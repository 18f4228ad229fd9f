"""Latent files: the one place that knows each container layout. Containers are recognised from content.

Read any latent file into a :class:`~latentbridge.latent.Latent`, write one to any container, tell latents
from weight files, and summarise a latent::

    from latentbridge.files import read_latent, write_latent, sniff, classify, latent_stats
    lat = read_latent("ComfyUI_00001_.latent")          # raw space; format unknown unless recorded
    write_latent(lat.replace(format="sdxl"), "out.latent")  # ComfyUI-loadable, records format/space/provenance

Containers (see ``_read``, ``_write`` and ``_containers`` for the exact layouts and their sources):
ComfyUI ``.latent`` (current and legacy), latentbridge's own ``.latent`` (ComfyUI-loadable, plus a
``latentbridge.*`` record), any ``.safetensors``, ``.pt``/``.pth`` (``weights_only=True`` only), ``.npy``/``.npz``
(bfloat16 stored exactly as float32 with a dtype record), and kohya-ss/sd-scripts ``.npz`` latent caches.

The safe-reading helpers (``load_pickle``, ``pickle_refusal``, ``refused_global``, ``describe_load_error``,
``is_truncation``, ``LOAD_ERRORS``, ``looks_like_safetensors``, ``read_safetensors_header``, ``starts_like_zip``,
``text_impostor``, ``zip_kind``) are public so that :mod:`latentbridge.weights` reads weight files with the same
rules; ``atomic_write`` is the one way latentbridge writes a file.
"""

from __future__ import annotations

from latentbridge._atomic import atomic_write
from latentbridge.files._classify import classify
from latentbridge.files._containers import (
    describe_load_error,
    is_truncation,
    load_pickle,
    pickle_refusal,
    refused_global,
)
from latentbridge.files._pickles import LOAD_ERRORS
from latentbridge.files._read import KOHYA_SPACE, MUSUBI_FORMATS, LatentFile, musubi_known, open_latent, read_latent
from latentbridge.files._sniff import (
    KINDS,
    looks_like_safetensors,
    read_safetensors_header,
    sniff,
    starts_like_zip,
    text_impostor,
    zip_kind,
)
from latentbridge.files._stats import latent_stats
from latentbridge.files._write import CONTAINERS, comfy_ready, container_for, record, write_latent

__all__ = [
    "CONTAINERS",
    "KINDS",
    "KOHYA_SPACE",
    "LOAD_ERRORS",
    "MUSUBI_FORMATS",
    "LatentFile",
    "atomic_write",
    "classify",
    "comfy_ready",
    "container_for",
    "describe_load_error",
    "is_truncation",
    "latent_stats",
    "load_pickle",
    "looks_like_safetensors",
    "musubi_known",
    "open_latent",
    "pickle_refusal",
    "read_latent",
    "read_safetensors_header",
    "record",
    "refused_global",
    "sniff",
    "starts_like_zip",
    "text_impostor",
    "write_latent",
    "zip_kind",
]
