"""Entry points: provenance from in-memory metadata, from a :class:`~latentbridge.files.LatentFile`, or from a file.

Every reader works from plain values (a dict of metadata strings as safetensors or PNG text chunks hold them, a
parsed graph), so ComfyUI nodes and a web service can call them without files; the file readers only fetch those
values (headers and text chunks, never tensors for safetensors files) and hand them over.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from latentbridge.errors import FileFormatError
from latentbridge.files import LatentFile, open_latent, read_safetensors_header, sniff
from latentbridge.images import PNG_KEY, image_kind, read_image_text
from latentbridge.latent import Provenance
from latentbridge.provenance._a1111 import read_parameters
from latentbridge.provenance._comfy import read_prompt, read_workflow
from latentbridge.provenance._model import Gap, ProvenanceReport
from latentbridge.provenance._records import SOURCE_LB, kohya_name, latentbridge_record, read_records

KINDS = ("latent", "image")


def from_metadata(
    metadata: Mapping[str, Any], *, kind: str = "latent", file_name: str = "", channels: int | None = None
) -> ProvenanceReport:
    """Every piece of evidence in one file's metadata.

    Args:
        metadata: key -> value as stored: safetensors ``__metadata__`` (ComfyUI ``prompt``/``workflow``,
            ``latentbridge.*``, ``modelspec.*``, musubi ``architecture``, ai-toolkit ``latent_space_version``) or
            PNG text chunks (``prompt``, ``workflow``, A1111 ``parameters``, ``latentbridge``). ComfyUI graphs may
            be given parsed (dicts) or as their JSON text.
        kind: "latent" when the file holds a latent (trace ComfyUI's SaveLatent), "image" for an image (trace
            SaveImage and the VAEDecode before it).
        file_name: the file's name: picks the save node that wrote it and reads trainer-cache name suffixes.
        channels: the latent's channel count, when known (musubi architectures with several formats).

    Returns:
        One merged report; bad metadata becomes gaps in it, never an exception.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not isinstance(metadata, Mapping):
        return ProvenanceReport(
            gaps=(Gap("metadata", f"expected a mapping of keys to values, got {type(metadata).__name__}"),)
        )
    reports: list[ProvenanceReport] = []
    if metadata.get("prompt") not in (None, ""):
        reports.append(read_prompt(metadata["prompt"], kind=kind, file_name=file_name))
    if metadata.get("workflow") not in (None, ""):
        reports.append(read_workflow(metadata["workflow"], kind=kind, file_name=file_name))
    if metadata.get("parameters") not in (None, ""):
        reports.append(read_parameters(metadata["parameters"]))
    chunk = metadata.get(PNG_KEY)
    if chunk not in (None, ""):
        reports.append(_png_record(chunk))
    reports += read_records(metadata, channels=channels)
    if file_name and (named := kohya_name(file_name)) is not None:
        reports.append(named)
    return ProvenanceReport().merge(*reports)


def _png_record(chunk: Any) -> ProvenanceReport:
    """The ``latentbridge`` PNG chunk ``decode`` writes: its own fields and the latent's provenance inside."""
    data: Any = chunk
    if isinstance(chunk, str | bytes):
        try:
            data = json.loads(chunk)
        except (ValueError, RecursionError):
            data = None
    if not isinstance(data, dict):
        return ProvenanceReport(
            gaps=(Gap(SOURCE_LB, "the latentbridge text chunk is not a JSON object"),), sources=(SOURCE_LB,)
        )
    inner = data.get("provenance")
    reports = [latentbridge_record(data, "latentbridge chunk", "decoded")]
    if isinstance(inner, dict):
        reports.append(latentbridge_record(inner, "latentbridge chunk provenance"))
    return ProvenanceReport().merge(*reports)


def from_provenance(provenance: Provenance) -> ProvenanceReport:
    """Evidence from a latent's latentbridge :class:`~latentbridge.latent.Provenance` (``vae_name``, ``vae_sha256``)."""
    return latentbridge_record(provenance.to_dict(), "Provenance")


def from_latent_file(info: LatentFile) -> ProvenanceReport:
    """Evidence from a latent already read with :func:`latentbridge.files.open_latent` (no second read)."""
    lat = info.latent
    channels = lat.dim("C") if lat.layout else None
    report = from_metadata(info.metadata, kind="latent", file_name=info.path.name, channels=channels)
    if lat.provenance.vae_name or lat.provenance.vae_sha256:
        report = report.merge(from_provenance(lat.provenance))
    return report


def read_provenance(path: str | Path) -> ProvenanceReport:
    """Evidence from a latent file (any container latentbridge reads) or an image (PNG, JPEG, WebP).

    Safetensors files (ComfyUI ``.latent``, musubi/ai-toolkit caches, latentbridge files) are read from their
    header only; other containers through :func:`latentbridge.files.open_latent`.

    Raises:
        FileFormatError: the file is missing, damaged or not a latent or image file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file; pass a latent file or an image")
    if image_kind(path):
        return from_metadata(read_image_text(path), kind="image", file_name=path.name)
    kind = sniff(path)
    if kind in ("latent", "safetensors"):
        entries, meta = read_safetensors_header(path)
        latent = [e for e in entries.values() if e.could_be_latent]
        channels = _channels(latent[0].shape, meta) if len(latent) == 1 else None
        return from_metadata(meta, kind="latent", file_name=path.name, channels=channels)
    if kind in ("onnx", "gguf"):
        raise FileFormatError(
            f"{path}: an {kind.upper()} network, not a latent or image: nothing records its provenance"
        )
    return from_latent_file(open_latent(path))


def _channels(shape: tuple[int, ...], meta: Mapping[str, str]) -> int | None:
    """The channel count of a stored latent: dim 1 of [N, C, …] (ComfyUI), dim 0 of musubi's C×F×H×W."""
    if "architecture" in meta and "format_version" in meta:
        return shape[0]
    return shape[1] if len(shape) >= 4 else shape[0] if len(shape) == 3 else None
