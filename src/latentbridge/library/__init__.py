"""A local model library: an SQLite index of the VAEs and checkpoints on this machine, under an explicit home.

::

    from latentbridge.library import Library, resolve_vae
    lib = Library("~/.latentbridge")                 # home/library.sqlite (schema versioned, WAL)
    lib.scan("~/ComfyUI/models", "~/stable-diffusion-webui/models")   # incremental by size + mtime
    lib.find("sdxl"), lib.find("735e4c3a44"), lib.find("sdxl_vae")   # family, hash prefix, name
    resolve_vae("ComfyUI_00001_.latent", lib)        # -> ResolvedVAE(spec, entry, evidence, reasons)

Each scanned file is identified from its header (``weights.describe``'s reading, no tensors loaded) and hashed
once (sha256, the A1111/Civitai short hashes, the safetensors tensor hash; see ``weights.hashes``). The
environment variable ``LATENTBRIDGE_HOME`` is read by the CLI only.
"""

from __future__ import annotations

from latentbridge.library._db import DB_NAME, KINDS, SCHEMA_VERSION, LibraryEntry
from latentbridge.library._library import Library, NameMatch, ScanReport
from latentbridge.library._resolve import Candidate, ResolvedVAE, Which, resolve_vae, which
from latentbridge.library._scan import MODEL_FOLDERS, SKIP_FOLDERS, WEIGHT_SUFFIXES

__all__ = [
    "DB_NAME",
    "KINDS",
    "MODEL_FOLDERS",
    "SCHEMA_VERSION",
    "SKIP_FOLDERS",
    "WEIGHT_SUFFIXES",
    "Candidate",
    "Library",
    "LibraryEntry",
    "NameMatch",
    "ResolvedVAE",
    "ScanReport",
    "Which",
    "resolve_vae",
    "which",
]
