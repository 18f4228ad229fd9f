"""Inspecting and loading VAE weight files: headers, declared signatures, key maps, hashes, strict loading.

Public API::

    describe(path, format=None, *, hash=None) -> WeightsInfo   # identify from the header, never loading tensors
    detect(header) -> list[Match]                               # every signature that fits
    load_vae(spec, *, format=None, device=None, dtype=None, part="available") -> VAE
    resolve_spec(spec) -> (path, extra)                         # what a zoo name / hub:ID / path names on disk
"""

from __future__ import annotations

from latentbridge.weights._header import DIFFUSERS_INDEX_NAMES, DIFFUSERS_WEIGHT_NAMES, Header, TensorInfo, read_header
from latentbridge.weights.hashes import KNOWN_FILES, FileHashes, KnownFile, autov2, file_hashes, sha256_file
from latentbridge.weights.info import WeightsInfo, describe
from latentbridge.weights.load import load_vae, resolve_spec
from latentbridge.weights.signatures import SIGNATURES, Match, Signature, detect

__all__ = [
    "DIFFUSERS_INDEX_NAMES",
    "DIFFUSERS_WEIGHT_NAMES",
    "KNOWN_FILES",
    "SIGNATURES",
    "FileHashes",
    "Header",
    "KnownFile",
    "Match",
    "Signature",
    "TensorInfo",
    "WeightsInfo",
    "autov2",
    "describe",
    "detect",
    "file_hashes",
    "load_vae",
    "read_header",
    "resolve_spec",
    "sha256_file",
]
