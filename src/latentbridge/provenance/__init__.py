"""Provenance readers: what a file's metadata says made (or should decode) a latent, and where each fact came from.

Pure readers that turn metadata into typed :class:`Evidence` (the VAE, checkpoint, model file names and hashes,
the latent family), with the :class:`Gap` s they could not follow and why::

    from latentbridge.provenance import read_provenance, from_metadata, read_prompt
    report = read_provenance("ComfyUI_00001_.latent")    # or a PNG, JPEG, WebP, kohya/musubi/ai-toolkit cache
    for e in report.by_role("vae", "checkpoint"):
        print(e.sentence())
    report = from_metadata({"prompt": prompt_json}, kind="latent")   # in memory: ComfyUI nodes, web services

Sources: ComfyUI ``prompt`` (API) and ``workflow`` (UI) graphs traced from the saved latent or image back to the
loaders (:mod:`._comfy`, node table in :mod:`._comfy_nodes`); A1111/Forge/SD.Next ``parameters`` (:mod:`._a1111`);
latentbridge's records, ``modelspec.*``, musubi-tuner, sd-scripts and ai-toolkit caches (:mod:`._records`).
"""

from __future__ import annotations

from latentbridge.provenance._a1111 import A1111Parameters, parse_parameters, read_parameters
from latentbridge.provenance._comfy import read_prompt, read_workflow
from latentbridge.provenance._comfy_nodes import NODE_KINDS, NodeKind
from latentbridge.provenance._model import HASH_KINDS, RELATIONS, ROLES, Evidence, Gap, ProvenanceReport
from latentbridge.provenance._read import from_latent_file, from_metadata, from_provenance, read_provenance
from latentbridge.provenance._records import AITK_SPACES, KOHYA_SUFFIXES, kohya_name

__all__ = [
    "AITK_SPACES",
    "HASH_KINDS",
    "KOHYA_SUFFIXES",
    "NODE_KINDS",
    "RELATIONS",
    "ROLES",
    "A1111Parameters",
    "Evidence",
    "Gap",
    "NodeKind",
    "ProvenanceReport",
    "from_latent_file",
    "from_metadata",
    "from_provenance",
    "kohya_name",
    "parse_parameters",
    "read_parameters",
    "read_prompt",
    "read_provenance",
    "read_workflow",
]
