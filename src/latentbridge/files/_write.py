"""Write a Latent to any container, atomically, with latentbridge's record of format, space, layout, provenance.

The record is five strings, the same in every container::

    latentbridge.format      registry name, "" when unknown
    latentbridge.space       "raw" | "model" | "unknown"
    latentbridge.layout      dimension letters of the stored tensor, e.g. "NCHW"
    latentbridge.provenance  JSON of Provenance.to_dict()
    latentbridge.version     the latentbridge version that wrote the file

Where it lives: the safetensors ``__metadata__`` (``.latent`` and ``.safetensors``), a ``__latentbridge__``
dict in a ``.pt``, a ``__latentbridge__`` JSON entry in an ``.npz``, a ``<file>.latentbridge.json`` sidecar
beside an ``.npy``. NumPy containers add ``latentbridge.dtype: bfloat16`` when a bf16 tensor is stored as
float32 (exact; see ``_containers``), and the sidecar adds ``latentbridge.shape`` to detect a replaced .npy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from latentbridge import __version__
from latentbridge._atomic import atomic_write
from latentbridge.errors import IncompatibleError, did_you_mean
from latentbridge.files import _containers as C
from latentbridge.files._sniff import COMFY_KEY, COMFY_MARKER
from latentbridge.formats import Space
from latentbridge.latent import Latent

CONTAINERS: tuple[str, ...] = ("latent", "safetensors", "pt", "npy", "npz")
# file-name suffixes (any case) -> the containers a reader of that name expects; the first is the default
SUFFIX_CONTAINERS: dict[str, tuple[str, ...]] = {
    ".latent": ("latent",),  # ComfyUI's LoadLatent needs latent_tensor
    ".safetensors": ("safetensors", "latent"),  # a .latent file is a safetensors file
    ".pt": ("pt",),
    ".pth": ("pt",),
    ".npy": ("npy",),
    ".npz": ("npz",),
}
_SUFFIX = {"latent": ".latent", "safetensors": ".safetensors", "pt": ".pt", "npy": ".npy", "npz": ".npz"}


def record(latent: Latent) -> dict[str, str]:
    """latentbridge's record of ``latent``: the five ``latentbridge.*`` strings (see the module docstring)."""
    return {
        "latentbridge.format": latent.format_name,
        "latentbridge.space": latent.space,
        "latentbridge.layout": latent.layout,
        "latentbridge.provenance": json.dumps(latent.provenance.to_dict(), sort_keys=True, ensure_ascii=False),
        "latentbridge.version": __version__,
    }


def comfy_ready(latent: Latent) -> Latent:
    """The latent as ComfyUI's LoadLatent expects it, in canonical layout (NCHW, or NCTHW for video).

    ComfyUI's LATENT holds raw VAE latents, except for formats whose normalisation statistics live in the
    VAE file (FLUX.2, LTX-Video), where ComfyUI's VAE normalises and packs itself and the LATENT holds the
    model-space tensor (:attr:`LatentFormat.comfy_space`). The latent is converted to that space with its
    format; an unknown space is kept as is and recorded as unknown.

    Raises:
        IncompatibleError: a model-space latent whose format is unknown, or a conversion that needs VAE
            statistics the Latent does not carry.
    """
    target: Space = latent.format.comfy_space if latent.format is not None else "raw"
    if latent.space not in ("unknown", target):
        if latent.format is None:
            raise IncompatibleError(
                "cannot write a model-space latent of unknown format to a .latent file: ComfyUI expects raw VAE "
                "latents and converting needs the format; pass the format (--format NAME, see `latentbridge "
                "formats`), or write container='safetensors'/'pt'/'npz', which keep the model space as is"
            )
        try:
            latent = latent.to_space(target)
        except ValueError as exc:
            raise IncompatibleError(
                f"cannot convert this {latent.space}-space {latent.format_name} latent to {target} space for a "
                f".latent file: {exc}"
            ) from exc
    if latent.format is not None:
        return latent.canonical()
    return latent.to_layout("NCTHW" if "T" in latent.layout else "NCHW")


def container_for(path: str | Path, container: str | None = None) -> str:
    """The container to write at ``path``: ``container`` when given, else the one its name's suffix implies.

    :func:`write_latent` writes any container under any name; this is for callers (the CLI) that let a name
    choose, so that ``out.npy`` is a NumPy file NumPy can open. ``.latent`` -> "latent", ``.safetensors`` ->
    "safetensors", ``.pt``/``.pth`` -> "pt", ``.npy`` -> "npy", ``.npz`` -> "npz" (any case); other names -> "latent".

    Raises:
        ValueError: ``container`` is unknown, or is not what a reader of that suffix expects (``--container pt``
            for ``out.npy``).
    """
    path = Path(path)
    if container is not None and container not in CONTAINERS:
        raise ValueError(
            f"unknown container {container!r}: expected one of {', '.join(CONTAINERS)}."
            + did_you_mean(container, CONTAINERS)
        )
    expected = SUFFIX_CONTAINERS.get(path.suffix.lower())
    if expected is None:
        return container or "latent"
    if container is None:
        return expected[0]
    if container not in expected:
        raise ValueError(
            f"{path.name} is named like a {path.suffix.lower()} file, but container {container!r} writes something "
            f"a {path.suffix.lower()} reader cannot open: name it {path.with_suffix(_SUFFIX[container]).name}, or "
            f"choose container {expected[0]!r} (--container {expected[0]})"
        )
    return container


def _extra_metadata(metadata: Mapping[str, str] | None, container: str) -> dict[str, str]:
    """``metadata`` checked for :func:`write_latent` (empty when None)."""
    if not metadata:
        return {}
    if container not in ("latent", "safetensors"):
        raise ValueError(
            f"extra metadata is stored only in safetensors containers ('latent', 'safetensors'), not {container!r}; "
            "write a .latent or .safetensors file, or drop the metadata"
        )
    bad = sorted(k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str))
    if bad:
        raise ValueError(f"metadata keys and values must be strings (JSON-encode other values); not: {bad}")
    own = sorted(k for k in metadata if k.startswith("latentbridge."))
    if own:
        raise ValueError(f"metadata keys {own} are latentbridge's record, written from the Latent itself; rename them")
    return dict(metadata)


def write_latent(
    latent: Latent,
    path: str | Path,
    *,
    container: str = "latent",
    overwrite: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``latent`` to ``path`` atomically (temp file in the same folder, then ``os.replace``).

    Args:
        latent: the latent; any space, dtype (fp32/fp16/bf16/…) and layout.
        path: where to write; the name is yours to choose (readers recognise content, not extensions).
        container: "latent" (ComfyUI-loadable: ``latent_tensor`` + ``latent_format_version_0``, converted to
            raw space and canonical layout), "safetensors" (key ``latent``), "pt" (``{"latent": tensor,
            "__latentbridge__": record}``), "npy" (+ sidecar record), "npz" (``latent`` + ``__latentbridge__``).
            All but "latent" store the tensor exactly as given (space, layout, dtype).
        overwrite: replace an existing file; without it an existing file is an error and nothing is written.
        metadata: more string metadata for the safetensors containers ("latent", "safetensors"), stored beside the
            record: what ComfyUI's SaveLatent stores (``prompt``, ``workflow`` JSON) so that provenance readers
            trace the file. Keys may not start with ``latentbridge.`` (the record's own).

    Returns:
        ``path`` as a Path.

    Raises:
        FileExistsError: ``path`` (or an .npy's sidecar) exists and ``overwrite`` is False.
        IncompatibleError: a model-space latent that cannot be converted to raw for a .latent file.
        ValueError: an unknown container name; ``metadata`` for another container, with non-string values or with a
            ``latentbridge.`` key.
    """
    path = Path(path)
    if container not in CONTAINERS:
        raise ValueError(
            f"unknown container {container!r}: expected one of {', '.join(CONTAINERS)}."
            + did_you_mean(container, CONTAINERS)
        )
    extra = _extra_metadata(metadata, container)
    if container == "latent":
        latent = comfy_ready(latent)
        tensors = {COMFY_KEY: latent.tensor, COMFY_MARKER: torch.tensor([])}
        return atomic_write(path, C.safetensors_bytes(tensors, extra | record(latent)), overwrite=overwrite)
    meta = record(latent)
    if container == "safetensors":
        return atomic_write(path, C.safetensors_bytes({"latent": latent.tensor}, extra | meta), overwrite=overwrite)
    if container == "pt":
        return atomic_write(path, C.pt_bytes(latent.tensor, meta), overwrite=overwrite)
    arr, extra = C.to_numpy(latent.tensor)
    meta.update(extra)
    if container == "npz":
        return atomic_write(path, C.npz_bytes(arr, meta), overwrite=overwrite)
    side = C.sidecar_path(path)
    if not overwrite:
        for p in (path, side):
            if p.exists():
                raise FileExistsError(f"{p} already exists: pass overwrite=True (--overwrite) to replace it")
    meta["latentbridge.shape"] = json.dumps(list(arr.shape))
    sidecar = json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
    atomic_write(side, sidecar, overwrite=overwrite)  # first: an .npy never exists without its record
    return atomic_write(path, C.npy_bytes(arr), overwrite=overwrite)
