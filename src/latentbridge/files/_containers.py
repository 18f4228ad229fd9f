"""The byte-level layouts of each container: list the arrays in a file, load one, write one.

Nothing here interprets a tensor as a latent (that is ``_read.py``); this module only knows containers:

* safetensors (also ComfyUI's ``.latent``): header parsed and validated by ``_sniff``, tensors via ``safe_open``.
* PyTorch ``.pt``/``.pth``: ``torch.load(..., weights_only=True)`` only; a tensor, a list of tensors or a dict
  (nested dicts of tensors under dotted names, as a Lightning checkpoint's ``state_dict.…``).
* NumPy ``.npy``/``.npz``: ``allow_pickle=False`` only. NumPy has no bfloat16, so latentbridge stores a bf16
  tensor as **float32** (every bf16 value is exactly a float32 whose low 16 bits are zero: a plain NumPy user
  sees the true values) and records ``"latentbridge.dtype": "bfloat16"``; reading takes the high 16 bits back,
  so the round trip is bit-exact, NaN payloads included. The record lives in an ``__latentbridge__`` entry of
  an ``.npz`` (a 0-d unicode array holding JSON) and in a sidecar ``<file>.latentbridge.json`` beside an ``.npy``
  (a bare ``.npy`` has no room for it).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import sys
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from latentbridge._guard import MAX_ARRAY_BYTES, MAX_JSON_BYTES, check_bytes, load_json, read_json_file, regular_file
from latentbridge.errors import FileFormatError
from latentbridge.files import _npy, _pickles
from latentbridge.files._sniff import Entry, read_npy_entry, read_safetensors_header, starts_like_zip, zip_errors

NPZ_RECORD = "__latentbridge__"  # npz entry / pt dict key holding latentbridge's record
SIDECAR_SUFFIX = ".latentbridge.json"  # beside an .npy
DTYPE_KEY = "latentbridge.dtype"  # set only when the stored dtype differs from the tensor's (bf16 -> float32)


@dataclass(frozen=True, slots=True)
class Contents:
    """What a container holds, described without loading tensor data where the container allows it."""

    kind: str
    entries: dict[str, Entry]  # every array, in file order ("" names the array of a bare .npy / .pt tensor)
    metadata: dict[str, str] = field(default_factory=dict)  # string metadata (safetensors __metadata__, our record)
    other: dict[str, str] = field(default_factory=dict)  # non-tensor values in a .pt dict, as text
    loader: Callable[[str], torch.Tensor] | None = None

    def load(self, key: str) -> torch.Tensor:
        """The tensor stored under ``key``, as stored (dtype and layout unchanged)."""
        if self.loader is None:  # pragma: no cover - every reader sets one
            raise RuntimeError("no loader")
        return self.loader(key)


def _fail(path: Path, problem: str) -> FileFormatError:
    return FileFormatError(f"{path}: {problem}")


# --- reading ---------------------------------------------------------------------------------------------


def read_contents(path: Path, kind: str) -> Contents:
    """List the arrays (and metadata) of a file of container ``kind`` (from ``sniff``)."""
    if kind in ("latent", "safetensors"):
        return _read_safetensors(path, kind)
    if kind == "pt":
        return _read_pt(path)
    if kind == "npy":
        return _read_npy(path)
    if kind in ("npz", "kohya-npz"):
        return _read_npz(path, kind)
    raise _fail(path, f"a {kind} file holds a network, not a latent: inspect it with `latentbridge inspect`")


def _read_safetensors(path: Path, kind: str) -> Contents:
    entries, meta = read_safetensors_header(path)

    def load(key: str) -> torch.Tensor:
        entry = entries[key]
        check_bytes(entry.numel * _element_bytes(entry.dtype), str(path), f"array {key!r} {list(entry.shape)}")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return f.get_tensor(key)
        except SafetensorError as exc:
            raise _fail(path, f"cannot read tensor {key!r} ({exc}): the file is damaged; re-download it") from exc

    return Contents(kind, entries, meta, {}, load)


_ITEM_BYTES = {"float64": 8, "int64": 8, "complex64": 8, "float32": 4, "int32": 4, "float16": 2, "bfloat16": 2}


def _element_bytes(dtype: str) -> int:
    """Bytes per element of a dtype name as ``Entry`` reports it (8, the largest, for names not listed)."""
    if dtype in ("int8", "uint8", "bool") or dtype.startswith("float8"):
        return 1
    return _ITEM_BYTES.get(dtype, 8)


def refused_global(exc: Exception) -> str | None:
    """The ``module.name`` a weights_only unpickler refused (a class or function the pickle would import), if named."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    return found.group(1) if found else None


# Opcodes that pickle protocols 4 and 5 added (0x8c SHORT_BINUNICODE … 0x95 FRAME … 0x98 READONLY_BUFFER); torch's
# weights_only unpickler reads protocols 2 and 3 only, whatever the file holds.
_PROTOCOL_4_OPCODES = range(0x8C, 0x99)


def pickle_refusal(exc: Exception) -> tuple[str, str]:
    """(what the safe unpickler refused, the fix) for an UnpicklingError from ``torch.load(weights_only=True)``."""
    name = refused_global(exc)
    if name:
        return (
            f"it references {name}, which unpickling would import and call",
            "only tensors, dicts, lists and plain values are accepted; if you trust the file, re-save its tensors "
            "with safetensors in a trusted environment",
        )
    op = re.search(r"Unsupported operand (\d+)", str(exc))
    if op and int(op.group(1)) in _PROTOCOL_4_OPCODES:
        return (
            "it was saved with pickle protocol 4 or 5 (torch.save(..., pickle_protocol=4)), which torch's safe "
            f"loader cannot read (opcode 0x{int(op.group(1)):02x})",
            "re-save it with torch.save's default protocol, or with safetensors, in a trusted environment",
        )
    return (
        "it uses pickle features or Python objects that the safe loader does not accept",
        "only tensors, dicts, lists and plain values are accepted; if you trust the file, re-save its tensors "
        "with safetensors in a trusted environment",
    )


def _describe_pickle_refusal(exc: Exception) -> str:
    what, fix = pickle_refusal(exc)
    return (
        f"refused to load this pickle: {what}. latentbridge loads pickles only with torch.load(weights_only=True), "
        f"so nothing from the file was executed; {fix}"
    )


def load_pickle(path: Path, *, mmap: bool = False, budget: int | None = None) -> Any:
    """``torch.load(..., weights_only=True)`` of a file whose content (``sniff``) says it is a PyTorch pickle.

    The file's structure is checked first (:mod:`latentbridge.files._pickles`: zip records, the pickle opcode by
    opcode, every storage's declared size against the bytes the file holds and against ``budget``); damage found
    there is a FileFormatError naming the byte. What torch can still raise is the caller's to translate
    (:data:`~latentbridge.files._pickles.LOAD_ERRORS`, or use :func:`torch_load`).

    torch.load dispatches on the *name*: a path ending in ".safetensors" goes to ``safetensors.load_file``
    whatever the file holds, so a renamed ``.ckpt`` would fail there with an unrelated header error. Such a
    file is handed over as an open file instead (without memory-mapping, which needs a path).

    Args:
        mmap: memory-map the tensors of a zip file (they stay on disk).
        budget: bytes the tensors may take in memory (None: only the file's own size bounds them).
    """
    size = regular_file(path, "PyTorch file").st_size
    if starts_like_zip(path):
        _pickles.check_zip(path, size, budget)
    else:
        _pickles.check_legacy(path, size, budget)
    with warnings.catch_warnings():
        # torch warns about pickle protocols other than 2; the safe unpickler refuses what it cannot read
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        if mmap and not os.fspath(path).endswith(".safetensors"):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        with open(path, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)


def is_truncation(exc: BaseException) -> bool:
    """True for a torch.load failure that says the pickle ended early (not that it holds something unsafe)."""
    return isinstance(exc, EOFError) or bool(re.search(r"truncated|ran out of input", str(exc), re.I))


def describe_load_error(exc: BaseException) -> str:
    """What a torch.load failure (one of ``_pickles.LOAD_ERRORS``) says about the file, for a message."""
    if isinstance(exc, pickle.UnpicklingError) and not is_truncation(exc):
        return _describe_pickle_refusal(exc)
    if is_truncation(exc):
        return "this .pt file is truncated (it ends in the middle of its pickle): re-download or re-save it"
    first = str(exc).split("\n")[0].split(". ")[0][:200]
    return (
        f"this .pt file is truncated or corrupt ({type(exc).__name__} while torch rebuilt its tensors: {first}); "
        "re-download or re-save it"
    )


def torch_load(path: Path, *, mmap: bool = False, budget: int | None = MAX_ARRAY_BYTES) -> Any:
    """:func:`load_pickle` (by default at most a latent's budget of tensors), every failure one FileFormatError."""
    try:
        return load_pickle(path, mmap=mmap, budget=budget)
    except _pickles.LOAD_ERRORS as exc:
        raise _fail(path, describe_load_error(exc)) from exc


def _entry_of(name: str, t: torch.Tensor) -> Entry:
    return Entry(name, str(t.dtype).removeprefix("torch."), tuple(t.shape))


def _read_pt(path: Path) -> Contents:
    obj = torch_load(path, budget=MAX_ARRAY_BYTES)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, str] = {}
    other: dict[str, str] = {}
    if isinstance(obj, torch.Tensor):
        tensors[""] = obj
    elif isinstance(obj, Mapping):
        record = obj.get(NPZ_RECORD)
        if isinstance(record, Mapping):
            meta = {str(a): str(b) for a, b in record.items()}
        _flatten({k: v for k, v in obj.items() if k != NPZ_RECORD or not isinstance(v, Mapping)}, "", tensors, other)
    elif isinstance(obj, list | tuple) and obj and all(isinstance(v, torch.Tensor) for v in obj):
        tensors = {str(i): v for i, v in enumerate(obj)}
    else:
        raise _fail(
            path,
            f"this PyTorch file holds a {type(obj).__name__}, not a tensor, a dict of tensors or a list of tensors",
        )
    entries = {k: _entry_of(k, v) for k, v in tensors.items()}
    return Contents("pt", entries, meta, other, tensors.__getitem__)


def _holds_tensor(value: Any) -> bool:
    return isinstance(value, torch.Tensor) or (isinstance(value, Mapping) and any(map(_holds_tensor, value.values())))


def _flatten(obj: Mapping[Any, Any], prefix: str, tensors: dict[str, torch.Tensor], other: dict[str, str]) -> None:
    """Tensors of a (nested) dict under dotted names (a Lightning checkpoint's ``state_dict.…``); the rest as text."""
    for k, v in obj.items():
        name = f"{prefix}{k}"
        if isinstance(v, torch.Tensor):
            tensors[name] = v
        elif isinstance(v, Mapping) and _holds_tensor(v):
            _flatten(v, name + ".", tensors, other)
        else:
            other[name] = _short(v)


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _to_tensor(arr: np.ndarray, meta: Mapping[str, str], path: Path, key: str) -> torch.Tensor:
    """NumPy array -> tensor, restoring bfloat16 from float32 when the record says so (bit-exact)."""
    if arr.dtype.hasobject:
        raise _fail(path, f"array {key!r} holds Python objects; latentbridge never unpickles them")
    if arr.dtype.kind not in "biufc":
        raise _fail(path, f"array {key!r} holds {arr.dtype} values (not numbers): not a latent")
    arr = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("="), copy=False))
    if meta.get(DTYPE_KEY) == "bfloat16":
        if arr.dtype != np.float32:
            raise _fail(path, f"the record says bfloat16 stored as float32, but array {key!r} is {arr.dtype}")
        bits = arr.view(np.uint32)
        if np.any(bits & 0xFFFF):
            raise _fail(
                path,
                f"the record says array {key!r} holds bfloat16 values (float32 with zero low bits) but some are not; "
                "the array was changed after latentbridge wrote it: remove the dtype record or re-export the latent",
            )
        high = (bits >> 16).astype(np.uint16)
        return torch.from_numpy(high.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # read into fresh memory: no second copy


def sidecar_path(path: Path) -> Path:
    """Where the record of an .npy lives: ``<file>.latentbridge.json`` beside it."""
    return path.with_name(path.name + SIDECAR_SUFFIX)


def _record(path: Path, loaded: Any, what: str) -> dict[str, str]:
    """latentbridge's record (a JSON object of strings) from a sidecar or an .npz entry, checked."""
    if not isinstance(loaded, dict):
        raise _fail(path, f"damaged {what}: expected a JSON object of strings, found {type(loaded).__name__}")
    bad = sorted(str(k) for k, v in loaded.items() if not isinstance(v, str))
    if bad:
        raise _fail(path, f"damaged {what}: the values of {', '.join(bad[:3])} are not strings; re-export the latent")
    return dict(loaded)


def _read_npy(path: Path) -> Contents:
    size = regular_file(path, "latent file").st_size
    with path.open("rb") as f:
        entry, _ = read_npy_entry(f, "", path)
    meta: dict[str, str] = {}
    side = sidecar_path(path)
    if side.is_file():
        fix = "delete it or re-export the latent"
        meta = _record(side, read_json_file(side, "damaged latentbridge sidecar", fix), "latentbridge sidecar")
        recorded = meta.get("latentbridge.shape")
        if recorded is not None and recorded != json.dumps(list(entry.shape)):
            raise _fail(
                path,
                f"its sidecar {side.name} describes shape {recorded} but the array is {list(entry.shape)}: the .npy "
                "was replaced after latentbridge wrote it; delete the stale sidecar",
            )

    def load(key: str) -> torch.Tensor:
        with path.open("rb") as f:
            _, header = read_npy_entry(f, key, path)
            arr = _npy.read_array(f, header, str(path), key, present=size - header.offset)
        return _to_tensor(arr, meta, path, key)

    return Contents("npy", {"": entry}, meta, {}, load)


def _npz_members(path: Path, zf: zipfile.ZipFile, size: int) -> dict[str, zipfile.ZipInfo]:
    """The members of an .npz by array name, each checked before it is opened (names, flags, method, sizes)."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        name = info.filename[: -len(".npy")]
        if name in members:
            raise _fail(path, f"damaged .npz archive: two members are named {info.filename!r}; re-save it")
        if info.flag_bits & 0x1:
            raise _fail(path, f"member {info.filename!r} is encrypted; NumPy never writes that: re-save the file")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _fail(
                path,
                f"member {info.filename!r} uses zip compression method {info.compress_type}; numpy.savez writes "
                "stored or deflated members: re-save the file with numpy.savez",
            )
        stored = info.compress_type == zipfile.ZIP_STORED
        if info.header_offset + info.compress_size > size or (stored and info.compress_size != info.file_size):
            raise _fail(
                path,
                f"member {info.filename!r} declares {info.compress_size} bytes at offset {info.header_offset} in a "
                f"{size}-byte file: the archive is truncated or damaged; re-download or re-save it",
            )
        members[name] = info
    return members


def _read_npz(path: Path, kind: str) -> Contents:
    size = regular_file(path, "latent file").st_size
    entries: dict[str, Entry] = {}
    meta: dict[str, str] = {}
    with zip_errors(path, ".npz archive"), zipfile.ZipFile(path) as zf:
        members = _npz_members(path, zf, size)
        for name, info in members.items():
            with zf.open(info) as member:
                entry, header = read_npy_entry(member, name, path)
                check_bytes(
                    header.nbytes, str(path), header.describe(name), present=info.file_size - header.offset, budget=None
                )
                if name == NPZ_RECORD:
                    meta = _read_record(path, member, header, info)
                    continue
                entries[name] = entry

    def load(key: str) -> torch.Tensor:
        with zip_errors(path, ".npz archive"), zipfile.ZipFile(path) as zf, zf.open(members[key]) as member:
            _, header = read_npy_entry(member, key, path)
            present = members[key].file_size - header.offset
            arr = _npy.read_array(member, header, str(path), key, present=present)
        return _to_tensor(arr, meta, path, key)

    return Contents(kind, entries, meta, {}, load)


def _read_record(path: Path, member: Any, header: _npy.NpyHeader, info: zipfile.ZipInfo) -> dict[str, str]:
    """The ``__latentbridge__`` entry: a 0-d unicode array holding the JSON record."""
    if header.shape != () or header.dtype.kind != "U":
        raise _fail(path, f"damaged {NPZ_RECORD} record: expected one string, found {header.describe(NPZ_RECORD)}")
    arr = _npy.read_array(
        member, header, str(path), NPZ_RECORD, present=info.file_size - header.offset, budget=MAX_JSON_BYTES
    )
    raw = arr.tobytes()  # UTF-32 code units, NUL-padded; decoded here (NumPy's str() crashes on invalid ones)
    try:
        text = raw.decode("utf-32-be" if header.dtype.byteorder == ">" else "utf-32-le").rstrip("\x00")
    except UnicodeDecodeError as exc:
        raise _fail(
            path, f"damaged {NPZ_RECORD} record: its text is not Unicode ({exc}); re-export the latent"
        ) from exc
    loaded = load_json(text, str(path), f"damaged {NPZ_RECORD} record", "re-export the latent")
    return _record(path, loaded, f"{NPZ_RECORD} record")


# --- writing ---------------------------------------------------------------------------------------------


_ST_NAMES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}


def safetensors_bytes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """A safetensors file as bytes, **deterministic**: the same tensors and metadata give the same bytes.

    The safetensors library writes ``__metadata__`` in a random order (a Rust HashMap), so two saves of one
    latent differ and no golden test or content hash can hold. This writes the same format (8-byte little-endian
    header length, compact JSON header padded with spaces to a multiple of 8, raw little-endian data) with
    metadata keys sorted and tensors ordered like the library does (larger elements first, then by name).
    The reference reader (``safetensors.safe_open``) reads it; the tests check that.
    """
    if sys.byteorder != "little":  # pragma: no cover - torch targets little-endian machines only
        raise RuntimeError("writing safetensors needs a little-endian machine")
    items = sorted(
        ((str(k), v.detach().cpu().contiguous()) for k, v in tensors.items()),
        key=lambda kv: (-kv[1].element_size(), kv[0]),
    )
    header: dict[str, Any] = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    blobs: list[bytes] = []
    offset = 0
    for name, t in items:
        if t.dtype not in _ST_NAMES:
            raise FileFormatError(f"safetensors cannot store {t.dtype} tensors ({name!r})")
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        span = [offset, offset + len(data)]
        header[name] = {"dtype": _ST_NAMES[t.dtype], "shape": list(t.shape), "data_offsets": span}
        offset += len(data)
        blobs.append(data)
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def pt_bytes(tensor: torch.Tensor, metadata: Mapping[str, str]) -> bytes:
    """A PyTorch file ``{"latent": tensor, "__latentbridge__": {str: str}}`` that ``weights_only=True`` loads."""
    buf = io.BytesIO()
    torch.save({"latent": tensor.detach().cpu().contiguous(), NPZ_RECORD: dict(metadata)}, buf)
    return buf.getvalue()


def to_numpy(tensor: torch.Tensor) -> tuple[np.ndarray, dict[str, str]]:
    """Tensor -> NumPy array plus record entries; bfloat16 becomes float32 (exact) with a dtype record."""
    t = tensor.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        return t.float().numpy(), {DTYPE_KEY: "bfloat16"}
    try:
        return t.numpy(), {}
    except TypeError as exc:
        raise FileFormatError(
            f"NumPy cannot hold {t.dtype} tensors: write this latent as .latent, .safetensors or .pt instead"
        ) from exc


def npy_bytes(arr: np.ndarray) -> bytes:
    """An .npy file as bytes."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def npz_bytes(arr: np.ndarray, metadata: Mapping[str, str]) -> bytes:
    """An uncompressed .npz holding ``latent`` and the ``__latentbridge__`` JSON record (0-d unicode array).

    The same layout ``np.savez`` writes, with a fixed member timestamp so that the bytes are deterministic.
    """
    buf = io.BytesIO()
    members = (("latent", arr), (NPZ_RECORD, np.array(json.dumps(dict(metadata), sort_keys=True))))
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, value in members:
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)
    return buf.getvalue()
