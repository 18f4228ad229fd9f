"""Read what a weight file holds — tensor names, shapes, dtypes, metadata — without reading its tensors.

Containers, recognised by their first bytes (never by the file name):

* **safetensors** — ``safe_open`` reads the JSON header only.
* **PyTorch pickles** (.ckpt/.pt/.pth/.bin) — pickles have no separate header, so the file is opened with
  ``torch.load(weights_only=True, mmap=True)``: tensors stay on disk (memory-mapped) and nothing in the
  file is executed. Lightning checkpoints (``{"state_dict": {...}, "global_step": ...}``) are unwrapped.
* **ONNX** — the graph's initializers become tensors; graph inputs/outputs become pseudo-keys
  ``onnx.input.<name>`` / ``onnx.output.<name>`` whose shapes hold -1 for dynamic dimensions.
* **diffusers folders** — ``config.json`` plus ``diffusion_pytorch_model.(fp16.)safetensors|bin``, or the shards
  a ``diffusion_pytorch_model.safetensors.index(.fp16).json`` lists; a pipeline folder (``model_index.json`` +
  ``vae/``) is read through its ``vae/`` subfolder.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import torch
from safetensors import SafetensorError, safe_open

from latentbridge._guard import existing_path, read_json_file, regular_file
from latentbridge.errors import FileFormatError
from latentbridge.files import (
    LOAD_ERRORS,
    describe_load_error,
    is_truncation,
    load_pickle,
    looks_like_safetensors,
    pickle_refusal,
    read_safetensors_header,
    refused_global,
    starts_like_zip,
    text_impostor,
    zip_kind,
)

# safetensors dtype codes -> torch dtype names
_ST_DTYPES: dict[str, str] = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn",
    "F8_E5M2": "float8_e5m2",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}

# diffusers weight file names inside a model folder, in the order diffusers itself prefers them
DIFFUSERS_WEIGHT_NAMES: tuple[str, ...] = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)
# indexes of sharded weights (diffusers' _add_variant puts the variant before ".json")
DIFFUSERS_INDEX_NAMES: tuple[str, ...] = (
    "diffusion_pytorch_model.safetensors.index.json",
    "diffusion_pytorch_model.safetensors.index.fp16.json",
    "diffusion_pytorch_model.bin.index.json",
    "diffusion_pytorch_model.bin.index.fp16.json",
)

_HEAD = 1024  # bytes read to recognise a container (and text impostors)
ONNX_INPUT = "onnx.input."
ONNX_OUTPUT = "onnx.output."


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """Shape and dtype of one stored tensor (dynamic ONNX dimensions are -1)."""

    shape: tuple[int, ...]
    dtype: str  # torch dtype name: "float16", "float32", "bfloat16", …

    @property
    def numel(self) -> int:
        """Number of elements (0 for graph inputs/outputs with dynamic dimensions)."""
        n = 1
        for d in self.shape:
            n *= max(d, 0)
        return n


@dataclass(frozen=True, slots=True, eq=False)
class Header:
    """Everything readable about a weight file without loading its tensors.

    Attributes:
        source: what the caller named (a file or a folder).
        path: the file whose tensors these are (inside the folder for diffusers folders).
        container: "safetensors", "pickle" or "onnx".
        tensors: key -> TensorInfo, in file order.
        metadata: safetensors ``__metadata__`` (strings), ONNX ``metadata_props``; else empty.
        config: the diffusers ``config.json`` of a folder; else empty.
        size: bytes of ``path`` (of every shard, for sharded weights).
        prefix: the key prefix stripped by :meth:`sub` ("" for the file as stored).
        shards: for a sharded diffusers folder, stored key -> the shard file holding it (``path`` is then the
            ``*.index.json``); empty for a single file.
    """

    source: Path
    path: Path
    container: str
    tensors: Mapping[str, TensorInfo]
    metadata: Mapping[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=dict)
    size: int = 0
    prefix: str = ""
    shards: Mapping[str, Path] = field(default_factory=dict)

    def sub(self, prefix: str) -> Header:
        """The keys under ``prefix`` with the prefix removed (a checkpoint's ``first_stage_model.`` VAE)."""
        if not prefix:
            return self
        n = len(prefix)
        tensors = {k[n:]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        return replace(self, tensors=tensors, prefix=prefix)


def _fail(path: Path, what: str, fix: str) -> FileFormatError:
    return FileFormatError(f"cannot read {path}: {what}; {fix}")


def read_header(path: str | os.PathLike[str]) -> Header:
    """Read the header of a weight file or diffusers folder.

    Raises:
        FileFormatError: the path is missing, empty, truncated, not a weight container, or (pickles) holds
            Python objects that ``weights_only=True`` refuses.
    """
    path = Path(path).expanduser()
    if not path.exists() and not path.is_symlink():
        raise FileFormatError(f"no such file or folder: {path}; check the path (zoo VAEs are named 'zoo-a' …)")
    existing_path(path, "weight file or folder")  # a FIFO, device, socket or symlink loop is refused here
    if path.is_dir():
        return _read_folder(path)
    kind = sniff(path)
    if kind == "safetensors":
        return _read_safetensors(path, source=path)
    if kind == "pickle":
        return _read_pickle(path, source=path)
    return _read_onnx(path, source=path)


def sniff(path: Path) -> str:
    """The container of ``path`` from its first bytes: "safetensors", "pickle" or "onnx"."""
    regular_file(path, "weight file")
    with path.open("rb") as f:
        head = f.read(_HEAD)
    if not head:
        raise _fail(path, "the file is empty (0 bytes)", "re-download or re-export it")
    if head[:4] == b"PK\x03\x04":
        kind = zip_kind(path)  # a torch.save archive; TorchScript programs and damaged zips raise
        if kind != "pt":
            raise _fail(path, "it is a NumPy .npz archive, not network weights", "pass the VAE's weight file")
        return "pickle"
    if looks_like_safetensors(head):
        return "safetensors"  # before the pickle check: 0x?280..0x?580-byte headers start with 80 02..80 05
    if head[:1] == b"\x80":
        return "pickle"  # legacy (pre-1.6) torch pickle: pickle protocol opcode
    if head[:1] == b"\x08":  # protobuf field 1 (ir_version, varint): an ONNX ModelProto
        return "onnx"
    impostor = text_impostor(path, head)  # a git-lfs pointer, an HTML error page, … saved under the file's name
    if impostor is not None:
        raise impostor
    raise _fail(
        path,
        f"its first bytes {head[:8]!r} are not safetensors, a PyTorch pickle or ONNX",
        "pass a VAE weight file (.safetensors, .ckpt/.pt/.pth/.bin, .onnx) or a diffusers folder",
    )


def _read_safetensors(path: Path, source: Path) -> Header:
    read_safetensors_header(path)  # every field checked (types, ranges, sizes, JSON depth) before safe_open
    try:
        with safe_open(path, framework="pt") as f:
            tensors = {}
            for key in f.keys():  # noqa: SIM118 - safe_open is not a Mapping
                sl = f.get_slice(key)
                tensors[key] = TensorInfo(tuple(sl.get_shape()), _ST_DTYPES.get(sl.get_dtype(), sl.get_dtype()))
            metadata = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise _fail(
            path, f"it is not a valid safetensors file ({exc})", "the file may be truncated: re-download it"
        ) from exc
    return Header(source, path, "safetensors", tensors, metadata, {}, path.stat().st_size)


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    """torch.load with weights_only=True (memory-mapped for zip archives), unwrapped to a flat state dict."""
    mmap = starts_like_zip(path)  # legacy pickles cannot be memory-mapped
    try:
        obj = load_pickle(path, mmap=mmap)  # by content: torch.load alone would treat a "*.safetensors" name as one
    except pickle.UnpicklingError as exc:
        if is_truncation(exc):
            raise FileFormatError(f"{path}: {describe_load_error(exc)}") from exc
        what, fix = pickle_refusal(exc)
        if refused_global(exc):
            fix = (
                "use the .safetensors or pruned release of this file (full training checkpoints also carry "
                "callbacks and optimizer state), or re-save its state_dict with safetensors in a trusted environment"
            )
        raise _fail(
            path,
            f"latentbridge refuses to unpickle it: {what} (weights_only=True; nothing from the file was executed)",
            fix,
        ) from exc
    except LOAD_ERRORS as exc:
        raise FileFormatError(f"{path}: {describe_load_error(exc)}") from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]  # Lightning / LDM checkpoint
    if not isinstance(obj, Mapping):
        raise _fail(
            path,
            f"it holds a {type(obj).__name__}, not a state dict of tensors",
            "save the module's state_dict() (or use safetensors)",
        )
    bad = sorted(str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise _fail(
            path,
            f"its state dict holds non-tensor values under {bad[:5]}{' …' if len(bad) > 5 else ''}",
            "save a plain state dict of tensors (or use safetensors)",
        )
    return {str(k): v for k, v in obj.items()}


def _read_pickle(path: Path, source: Path) -> Header:
    sd = _load_pickle(path)
    tensors = {k: TensorInfo(tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in sd.items()}
    return Header(source, path, "pickle", tensors, {}, {}, path.stat().st_size)


def _read_onnx(path: Path, source: Path) -> Header:
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError as exc:  # pragma: no cover - onnx is a dev dependency
        raise FileFormatError(f"{path} is ONNX, which needs the onnx package: pip install onnx") from exc
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as exc:
        raise _fail(path, f"it is not a valid ONNX model ({exc})", "the file may be truncated: re-download it") from exc
    graph = model.graph
    if not graph.node:
        raise _fail(path, "it parses as ONNX but holds no graph nodes", "pass the exported model, not another file")
    tensors: dict[str, TensorInfo] = {}
    try:
        for init in graph.initializer:
            dtype = onnx.helper.tensor_dtype_to_np_dtype(init.data_type).name
            tensors[_onnx_name(path, init.name)] = TensorInfo(tuple(int(d) for d in init.dims), dtype)
        init_names = set(tensors)
        for prefix, values in ((ONNX_INPUT, graph.input), (ONNX_OUTPUT, graph.output)):
            for v in values:
                name = _onnx_name(path, v.name)
                if name in init_names:
                    continue
                ttype = v.type.tensor_type
                dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim)
                tensors[prefix + name] = TensorInfo(dims, onnx.helper.tensor_dtype_to_np_dtype(ttype.elem_type).name)
    except (KeyError, ValueError) as exc:  # onnx's answer to an element type code it does not define
        raise _fail(path, f"its graph names an unknown tensor element type ({exc})", "re-export the model") from exc
    metadata = {_onnx_name(path, p.key): _onnx_name(path, p.value) for p in model.metadata_props}
    if model.producer_name:
        metadata.setdefault("onnx.producer", _onnx_name(path, model.producer_name))
    return Header(source, path, "onnx", tensors, metadata, {}, path.stat().st_size)


def _onnx_name(path: Path, name: str | bytes) -> str:
    """A name or text from an ONNX model (protobuf hands back bytes for a string field that is not UTF-8)."""
    if isinstance(name, str):
        return name
    raise _fail(path, f"its graph holds a name that is not UTF-8 text ({name[:40]!r})", "re-export the model")


def diffusers_weight_file(folder: Path) -> Path | None:
    """The weight file of a diffusers model folder, or None when it holds none."""
    for name in DIFFUSERS_WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def diffusers_index_file(folder: Path) -> Path | None:
    """The index of a sharded diffusers model folder (``save_pretrained(max_shard_size=...)``), or None."""
    for name in DIFFUSERS_INDEX_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def _listing(folder: Path) -> str:
    names = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    shown = ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")
    return shown or "nothing"


def _read_folder(folder: Path) -> Header:
    if not (folder / "config.json").is_file() and (folder / "vae" / "config.json").is_file():
        folder = folder / "vae"  # a diffusers pipeline folder: its VAE lives in vae/
    config_path = folder / "config.json"
    if not config_path.is_file():
        what = ""
        if (folder / "model_index.json").is_file():
            what = " (a diffusers pipeline folder without a vae/ subfolder)"
        elif (folder / "snapshots").is_dir() and (folder / "blobs").is_dir():
            what = " (a Hugging Face cache folder: pass its snapshots/<revision> folder)"
        raise FileFormatError(
            f"folder {folder} is not a diffusers VAE folder{what}: expected config.json beside "
            f"{DIFFUSERS_WEIGHT_NAMES[0]} (or a vae/ subfolder holding both); it holds {_listing(folder)}. Pass the "
            "weight file itself, or the folder that holds both"
        )
    weights = diffusers_weight_file(folder)
    index = diffusers_index_file(folder) if weights is None else None
    if weights is None and index is None:
        raise FileFormatError(
            f"folder {folder} has a config.json but no weights: expected one of {', '.join(DIFFUSERS_WEIGHT_NAMES)} "
            f"or a sharded {DIFFUSERS_INDEX_NAMES[0]}; it holds {_listing(folder)}. The download is probably "
            "incomplete: fetch the weight file too (huggingface-cli download REPO --include 'vae/*')"
        )
    config = read_json_file(config_path, "damaged config.json", "restore the folder's config.json")
    if not isinstance(config, dict):
        raise _fail(config_path, "it is not a JSON object", "restore the folder's config.json")
    inner = _read_weight_file(weights, folder) if weights is not None else _read_sharded(cast(Path, index), folder)
    return replace(inner, source=folder, config=config)


def _read_weight_file(path: Path, source: Path) -> Header:
    kind = sniff(path)
    if kind == "onnx":
        raise _fail(path, "it is an ONNX model, not diffusers weights", "restore the folder's weight file")
    return _read_safetensors(path, source) if kind == "safetensors" else _read_pickle(path, source)


def _read_sharded(index: Path, folder: Path) -> Header:
    """A sharded diffusers folder: the index's ``weight_map`` (key -> shard file) and every shard's header."""
    data = read_json_file(index, "damaged shard index", "restore the folder's index file")
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if (
        not isinstance(weight_map, dict)
        or not weight_map
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in weight_map.items())
    ):
        raise _fail(index, "it has no weight_map of tensor names to shard files", "restore the folder's index file")
    names = sorted(set(weight_map.values()))
    bad = [n for n in names if Path(n).name != n or n in (".", "..") or len(n.encode("utf-8", "replace")) > 255]
    if bad:
        shown = [b[:80] for b in bad[:3]]
        raise _fail(index, f"its weight_map names files outside the folder or impossible names: {shown}", "restore it")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise _fail(
            index,
            f"{len(missing)} of its {len(names)} shards are missing ({', '.join(missing[:3])}"
            f"{' …' if len(missing) > 3 else ''})",
            "the download is incomplete: fetch every shard the index names",
        )
    parts = {n: _read_weight_file(folder / n, folder) for n in names}
    containers = {h.container for h in parts.values()}
    if len(containers) != 1:
        raise _fail(index, f"its shards mix containers ({', '.join(sorted(containers))})", "re-save the model")
    tensors: dict[str, TensorInfo] = {}
    shards: dict[str, Path] = {}
    for name, part in parts.items():
        for key, info in part.tensors.items():
            if key in shards:
                raise _fail(index, f"tensor {key!r} is stored in two shards ({shards[key].name}, {name})", "re-save it")
            tensors[key], shards[key] = info, part.path
    astray = sorted(k for k, n in weight_map.items() if shards.get(k) != folder / n)
    if astray:
        raise _fail(
            index,
            f"{len(astray)} tensors are not in the shard its weight_map names (first: {astray[0]!r})",
            "the shards and the index come from different saves: re-download the folder",
        )
    metadata = next(iter(parts.values())).metadata
    size = sum(h.size for h in parts.values())
    return Header(folder, index, containers.pop(), tensors, metadata, {}, size, "", shards)


def load_tensors(header: Header, keys: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Load the tensors behind ``header`` (only ``keys``, with the header's prefix, when given).

    Returns a dict keyed like ``header.tensors`` (prefix stripped). ONNX graphs are not loaded here.
    """
    wanted = list(header.tensors) if keys is None else keys
    full = {header.prefix + k: k for k in wanted}
    if header.shards:  # one pass per shard file
        by_file: dict[Path, list[str]] = {}
        for fk in full:
            by_file.setdefault(header.shards[fk], []).append(fk)
        out: dict[str, torch.Tensor] = {}
        for file, stored in by_file.items():
            got = load_tensors(replace(header, path=file, prefix="", shards={}), stored)
            out.update({full[fk]: got[fk] for fk in stored})
        return out
    if header.container == "safetensors":
        out = {}
        try:
            with safe_open(header.path, framework="pt") as f:
                for fk, k in full.items():
                    out[k] = f.get_tensor(fk)
        except (SafetensorError, OSError, ValueError) as exc:
            raise _fail(
                header.path, f"reading its tensors failed ({exc})", "the file may be truncated: re-download it"
            ) from exc
        return out
    if header.container == "pickle":
        sd = _load_pickle(header.path)
        return {k: sd[fk] for fk, k in full.items()}
    raise FileFormatError(f"{header.path} is {header.container}: its tensors are run by onnxruntime, not loaded")
