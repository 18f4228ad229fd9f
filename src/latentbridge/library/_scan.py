"""Walk the folders users keep models in and identify each weight file from its header (and hash it).

Layouts recognised (a folder's name says what it holds; nothing is guessed from file names):

* ComfyUI ``models/vae``, ``models/vae_approx``, ``models/checkpoints``, ``models/unet``,
  ``models/diffusion_models``, ``models/diffusers`` (folder_paths.py).
* A1111 / Forge ``models/VAE``, ``models/Stable-diffusion``, ``models/VAE-approx`` (modules/paths, sd_vae.py).
* InvokeAI ``models/<base>/<type>/<name>`` (``vae``, ``main`` …), usually diffusers folders.
* diffusers model folders (``config.json`` + ``diffusion_pytorch_model.*``) and pipeline folders
  (``model_index.json`` + ``vae/``), indexed as one entry each, not file by file.
* Hugging Face caches ``models--org--name/snapshots/<revision>/…`` (the ``blobs`` store is skipped; the snapshot
  links, named as the repository names them, are indexed, with ``org/name`` recorded).

Below a scanned folder, sibling folders that hold other kinds of weights (``loras``, ``embeddings``,
``controlnet``, ``upscale_models``, ``clip_vision`` …) are skipped and reported; the folder given is always read.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from latentbridge.errors import LatentBridgeError
from latentbridge.weights import DIFFUSERS_INDEX_NAMES, DIFFUSERS_WEIGHT_NAMES, read_header
from latentbridge.weights.info import identify, modelspec_format

WEIGHT_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx")
# model-folder names -> what they hold (ComfyUI, A1111/Forge, InvokeAI types)
MODEL_FOLDERS: dict[str, str] = {
    "vae": "vae",
    "vae_approx": "vae",
    "vae-approx": "vae",
    "checkpoints": "checkpoint",
    "stable-diffusion": "checkpoint",
    "main": "checkpoint",
    "unet": "diffusion_model",
    "diffusion_models": "diffusion_model",
    "diffusers": "checkpoint",
}
SKIP_FOLDERS = frozenset(
    (
        "loras",
        "lora",
        "lycoris",
        "embeddings",
        "textual_inversion",
        "hypernetworks",
        "controlnet",
        "t2i_adapter",
        "upscale_models",
        "esrgan",
        "realesrgan",
        "clip_vision",
        "style_models",
        "gligen",
        "photomaker",
        "ipadapter",
        "insightface",
        "facerestore_models",
        "codeformer",
        "gfpgan",
        "sams",
        "ultralytics",
        "blobs",
        "refs",
        ".no_exist",
    )
)
_HF_REPO = re.compile(r"models--([^/\\]+?)--([^/\\]+)")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One thing to index: a weight file, a diffusers model folder or a pipeline folder."""

    path: Path  # as found (a snapshot link stays a link)
    root: Path
    layout: str  # "file", "diffusers", "pipeline"
    stat_of: Path  # the file whose size/mtime decide whether it changed

    @property
    def folder(self) -> str:
        """The nearest model-folder name above it ("vae", "checkpoints" …), or ""."""
        for part in reversed(self.path.relative_to(self.root).parts[:-1] or ()):
            if part.lower() in MODEL_FOLDERS:
                return part
        return self.root.name if self.root.name.lower() in MODEL_FOLDERS else ""

    @property
    def rel(self) -> str:
        """Its path below its model folder (what ComfyUI lists), else below the root; "/"-separated."""
        parts = self.path.relative_to(self.root).parts
        for i in range(len(parts) - 2, -1, -1):
            if parts[i].lower() in MODEL_FOLDERS:
                return "/".join(parts[i + 1 :])
        return "/".join(parts)

    @property
    def hf_repo(self) -> str:
        """ "org/name" of the Hugging Face cache repository it sits in, or ""."""
        m = _HF_REPO.search(str(self.path))
        return f"{m.group(1)}/{m.group(2)}" if m else ""


def _weights_of(folder: Path) -> Path | None:
    for name in (*DIFFUSERS_WEIGHT_NAMES, *DIFFUSERS_INDEX_NAMES):
        if (folder / name).is_file():
            return folder / name
    return None


def walk(root: Path) -> tuple[list[Candidate], list[str]]:
    """Every candidate below ``root`` and the folders skipped (relative names), in a stable order."""
    found: list[Candidate] = []
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames.sort()
        keep = []
        for d in dirnames:
            if d.startswith(".") or d.lower() in SKIP_FOLDERS:
                if d not in ("blobs", "refs", ".no_exist") and not d.startswith("."):
                    skipped.append(str((here / d).relative_to(root)))
                continue
            keep.append(d)
        dirnames[:] = keep
        if "config.json" in filenames and (target := _weights_of(here)) is not None:
            found.append(Candidate(here, root, "diffusers", target))
            dirnames[:] = []
            continue
        if "model_index.json" in filenames and "vae" in dirnames:
            target = _weights_of(here / "vae")
            if target is not None:
                found.append(Candidate(here, root, "pipeline", target))
            dirnames[:] = ["vae"]  # the VAE folder is indexed on its own; the UNet/text encoders are not
            continue
        for name in sorted(filenames):
            p = here / name
            if name.lower().endswith(WEIGHT_SUFFIXES) and p.is_file():
                found.append(Candidate(p, root, "file", p))
    return found, skipped


@dataclass(frozen=True, slots=True)
class Identity:
    """What the header says about a candidate (no hashes)."""

    kind: str
    has_vae: bool = False
    has_encoder: bool = False
    has_decoder: bool = False
    architecture: str = ""
    format: str = ""
    formats: tuple[str, ...] = ()
    format_source: str = ""
    modelspec_hash: str = ""
    modelspec_arch: str = ""
    title: str = ""
    note: str = ""
    hash_file: Path | None = None  # the file to hash (None: nothing single to hash, e.g. sharded weights)


def _folder_kind(c: Candidate) -> str:
    return MODEL_FOLDERS.get(c.folder.lower(), "")


def identify_candidate(c: Candidate) -> Identity:
    """Identify one candidate from its header only (``weights.describe``'s reading), never loading tensors."""
    with open(c.stat_of, "rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        kind = "diffusion_model" if _folder_kind(c) == "diffusion_model" else "other"
        return Identity(
            kind, note="GGUF file: its header is not parsed (quantised UNet/DiT or text encoder)", hash_file=c.stat_of
        )
    try:
        header = read_header(c.path)
        info = identify(header, hash=False)
    except (LatentBridgeError, OSError) as exc:
        return Identity("unreadable", note=str(exc), hash_file=c.stat_of)
    meta = header.metadata
    spec_hash = meta.get("modelspec.hash_sha256", "")
    spec_hash = spec_hash.lower().removeprefix("0x") if re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", spec_hash) else ""
    arch = meta.get("modelspec.architecture", "")
    if c.layout == "pipeline":
        kind = "checkpoint"
    elif info.checkpoint:
        kind = "diffusion_model" if not info.has_vae and _folder_kind(c) == "diffusion_model" else "checkpoint"
    elif info.has_vae:
        kind = "vae"
    else:
        kind = {"diffusion_model": "diffusion_model", "checkpoint": "checkpoint"}.get(_folder_kind(c), "other")
    fmt = info.format or (modelspec_format(arch) if arch and not info.has_vae else "")
    return Identity(
        kind=kind,
        has_vae=info.has_vae,
        has_encoder=info.has_encoder,
        has_decoder=info.has_decoder,
        architecture=info.title or info.architecture or "",
        format=fmt or "",
        formats=info.formats,
        format_source=info.format_source if info.format else ("modelspec" if fmt else ""),
        modelspec_hash=spec_hash,
        modelspec_arch=arch,
        title=meta.get("modelspec.title", ""),
        note="; ".join(n for n in info.notes if not n.startswith("sha256 not computed"))[:500],
        hash_file=None if header.shards else Path(header.path),
    )
