"""PyTorch ``.pt``/``.pth``/``.ckpt`` files checked before ``torch.load(weights_only=True)`` sees them.

torch's safe unpickler refuses what it must not run, but it trusts the structure of what it reads: a damaged
pickle ends in UnicodeDecodeError, IndexError, KeyError, AssertionError or struct errors from deep inside
torch, and a storage whose element count was damaged is allocated at that size before the data is read. So,
first:

* a **zip** file (``torch.save`` since 1.6) must be one folder holding ``data.pkl`` (read whole, CRC checked,
  at most :data:`MAX_PICKLE_BYTES`), ``data/<key>`` storage records, and ``byteorder`` / ``.storage_alignment``
  records with values torch can parse;
* a **legacy** file (``_use_new_zipfile_serialization=False``) must hold the five pickles torch writes (magic
  number, protocol, system info, the object, the storage keys) followed by one size-prefixed record per storage;
* the pickle itself is walked opcode by opcode (:func:`pickletools.genops` on an in-memory copy) with a small
  stack machine that builds nothing but the persistent ids: damage is reported as "truncated or corrupt at byte
  N", and every storage's declared size (element count × element size) is compared with the bytes the file holds
  for it, and with the caller's memory budget, before anything is allocated.

Only then is the file handed to ``torch.load``; what that can still raise on a damaged file is listed in
:data:`LOAD_ERRORS`.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentbridge._guard import check_bytes, size_text
from latentbridge.errors import FileFormatError

# The pickle part of a .pt file is small: a 2,500-tensor SDXL checkpoint's data.pkl is 0.3 MB (the tensors live in
# separate records). A larger one is walked opcode by opcode in Python, so it is bounded.
MAX_PICKLE_BYTES = 32 * 2**20
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION

# Element size of each storage class a torch pickle can name (torch.storage._dtype_to_storage_type_map).
STORAGE_BYTES: dict[str, int] = {
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
    "ComplexDoubleStorage": 16,
    "ComplexFloatStorage": 8,
    "QInt8Storage": 1,
    "QInt32Storage": 4,
    "QUInt8Storage": 1,
    "QUInt4x2Storage": 1,
    "QUInt2x4Storage": 1,
    "UntypedStorage": 1,
}

# What torch.load(weights_only=True) still raises on a damaged file that passed the checks above. Measured with
# `benchmarks/fuzz_readers.py --torch-load-errors 100000` (mutated .pt files, zip and legacy, latents and state
# dicts): 64.8 % refused by the checks, 31.8 % loaded, and torch raised only RuntimeError (2.2 %), UnpicklingError
# (0.86 %), UnicodeDecodeError (0.24 %) and TypeError (0.07 %); AttributeError came up 3 times in a 60,000-case run
# of the reader fuzz suite (seed 7); EOFError is torch's own "ran out of input".
LOAD_ERRORS: tuple[type[BaseException], ...] = (
    pickle.UnpicklingError,  # the safe unpickler's refusals ("Weights only load failed") and its stack/memo errors
    RuntimeError,  # torch's zip reader (PytorchStreamReader) and its storage/tensor rebuild checks
    ValueError,  # a string that is not UTF-8 (UnicodeDecodeError) in the pickle or its records
    TypeError,  # _rebuild_tensor_v2 or OrderedDict called with the wrong arguments by a damaged REDUCE
    AttributeError,  # the same, handed a tuple where a storage belongs
    EOFError,  # a pickle that ends early
)


@dataclass(frozen=True, slots=True)
class Storage:
    """One storage a pickle refers to: its class, key, element count and bytes."""

    type_name: str
    key: str
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * STORAGE_BYTES[self.type_name]


@dataclass(frozen=True, slots=True)
class _Global:
    module: str
    name: str


class _Obj:
    """Any value the stack machine does not need to know (the result of REDUCE, BUILD, NEWOBJ …)."""


_MARK = object()


class _Corrupt(Exception):
    """Raised inside the walk; carries the byte position of the damaged opcode."""

    def __init__(self, pos: int, problem: str) -> None:
        super().__init__(problem)
        self.pos = pos
        self.problem = problem


def _pop_mark(stack: list[Any], pos: int, op: str) -> list[Any]:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            items = stack[i + 1 :]
            del stack[i:]
            return items
    raise _Corrupt(pos, f"opcode {op} has no MARK before it")


def _pop(stack: list[Any], pos: int, op: str, n: int = 1) -> list[Any]:
    if len(stack) < n or any(v is _MARK for v in stack[len(stack) - n :]):
        raise _Corrupt(pos, f"opcode {op} needs {n} value(s) on the stack")
    items = stack[len(stack) - n :]
    del stack[len(stack) - n :]
    return items


_PUSH_ARG = frozenset(  # opcodes that push their argument: ints, floats, strings, bytes
    (
        *("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"),
        *("STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8"),
        *("BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"),
    )
)


@dataclass(frozen=True, slots=True)
class Walk:
    """What walking one pickle found."""

    value: Any  # the value, for pickles of plain lists/tuples/strings/ints; a placeholder otherwise
    pids: list[tuple[Any, ...]]  # the persistent ids (storage references), in order
    globals: list[str]  # "module.name" of every class or function the pickle names, in order
    end: int  # offset just after its STOP opcode


def walk(data: bytes, base: int = 0) -> Walk:
    """Walk one pickle in ``data`` (it may continue past its STOP).

    Raises:
        _Corrupt: with the absolute byte position (``base`` + offset) of the damage.
    """
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    pids: list[tuple[Any, ...]] = []
    names: list[str] = []
    stream = io.BytesIO(data)
    ops = pickletools.genops(stream)
    while True:
        start = stream.tell()  # genops reads lazily: this is where the next opcode begins
        try:
            op, arg, _ = next(ops)
        except StopIteration:
            break
        except ValueError as exc:  # unknown opcode, truncated argument, bad text literal (UnicodeDecodeError too)
            raise _Corrupt(base + start, str(exc)) from exc
        name, at = op.name, base + start
        if name in _PUSH_ARG:
            stack.append(arg)
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name == "MARK":
            stack.append(_MARK)
        elif name in ("EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
            stack.append({"EMPTY_TUPLE": (), "EMPTY_LIST": [], "EMPTY_DICT": {}, "EMPTY_SET": _Obj()}[name])
        elif name == "TUPLE":
            stack.append(tuple(_pop_mark(stack, at, name)))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            stack.append(tuple(_pop(stack, at, name, int(name[-1]))))
        elif name == "LIST":
            stack.append(_pop_mark(stack, at, name))
        elif name == "DICT":
            items = _pop_mark(stack, at, name)
            if len(items) % 2:
                raise _Corrupt(at, "DICT needs key/value pairs")
            stack.append(_Obj())
        elif name in ("FROZENSET", "POP_MARK"):
            _pop_mark(stack, at, name)
            if name == "FROZENSET":
                stack.append(_Obj())
        elif name == "APPEND":
            (value,) = _pop(stack, at, name)
            target = _pop(stack, at, name)[0]
            if isinstance(target, list):
                target.append(value)
            stack.append(target)
        elif name in ("APPENDS", "ADDITEMS", "SETITEMS"):
            items = _pop_mark(stack, at, name)
            if name == "SETITEMS" and len(items) % 2:
                raise _Corrupt(at, "SETITEMS needs key/value pairs")
            target = _pop(stack, at, name)[0]
            if name == "APPENDS" and isinstance(target, list):
                target.extend(items)
            stack.append(target)
        elif name == "SETITEM":
            _pop(stack, at, name, 2)
            if not stack or stack[-1] is _MARK:
                raise _Corrupt(at, "SETITEM has no dict to set")
        elif name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            stack.append(_Global(module, attr))
            names.append(f"{module}.{attr}")
        elif name == "STACK_GLOBAL":
            module, attr = _pop(stack, at, name, 2)
            stack.append(_Global(str(module), str(attr)))
            names.append(f"{module}.{attr}")
        elif name in ("REDUCE", "NEWOBJ"):
            _pop(stack, at, name, 2)
            stack.append(_Obj())
        elif name == "NEWOBJ_EX":
            _pop(stack, at, name, 3)
            stack.append(_Obj())
        elif name == "BUILD":
            _pop(stack, at, name)
            if not stack or stack[-1] is _MARK:
                raise _Corrupt(at, "BUILD has no object to build")
        elif name in ("OBJ", "INST"):
            _pop_mark(stack, at, name)
            stack.append(_Obj())
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if not stack or stack[-1] is _MARK:
                raise _Corrupt(at, f"{name} has nothing to remember")
            memo[len(memo) if name == "MEMOIZE" else int(arg or 0)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if int(arg or 0) not in memo:
                raise _Corrupt(at, f"{name} recalls memo entry {arg}, which was never stored")
            stack.append(memo[int(arg or 0)])
        elif name == "BINPERSID":
            (pid,) = _pop(stack, at, name)
            if not isinstance(pid, tuple):
                raise _Corrupt(at, "a persistent id (a storage reference) that is not a tuple")
            pids.append(pid)
            stack.append(_Obj())
        elif name == "PERSID":
            raise _Corrupt(at, "a text persistent id (torch writes tuples)")
        elif name == "POP":
            _pop(stack, at, name)
        elif name == "DUP":
            if not stack or stack[-1] is _MARK:
                raise _Corrupt(at, "DUP of an empty stack")
            stack.append(stack[-1])
        elif name in ("EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "READONLY_BUFFER"):
            stack.append(_Obj())
        elif name == "STOP":
            if not stack or stack[-1] is _MARK:
                raise _Corrupt(at, "STOP with nothing on the stack")
            return Walk(stack[-1], pids, names, start + 1)
        # PROTO and FRAME change nothing here
    raise _Corrupt(base + len(data), "the pickle ends without its STOP opcode")


def _damaged(path: Path, at: int, problem: str) -> FileFormatError:
    return FileFormatError(
        f"{path}: this .pt file is truncated or corrupt at byte {at} ({problem}); re-download or re-save it"
    )


def _storages(path: Path, pids: list[tuple[Any, ...]], legacy: bool) -> list[Storage]:
    """The storages the persistent ids declare, each checked for the shape torch writes."""
    out: list[Storage] = []
    for pid in pids:
        expected = 6 if legacy else 5
        if len(pid) != expected or pid[0] != "storage":
            raise FileFormatError(
                f"{path}: a storage reference in this .pt file is {str(pid)[:120]}, not the {expected}-field "
                "('storage', type, key, location, size…) tuple torch writes: the file is damaged; re-save it"
            )
        kind, key, location, numel = pid[1:5]
        if not isinstance(kind, _Global) or kind.module != "torch" or kind.name not in STORAGE_BYTES:
            raise FileFormatError(
                f"{path}: a storage in this .pt file has type {kind!r}, not one of torch's storage classes: the file "
                "is damaged; re-save it"
            )
        if not isinstance(key, str) or not isinstance(location, str) or type(numel) is not int or numel < 0:
            raise FileFormatError(
                f"{path}: a storage reference in this .pt file has key {key!r}, location {location!r} and size "
                f"{numel!r}; expected strings and a non-negative element count: the file is damaged; re-save it"
            )
        out.append(Storage(kind.name, key, numel))
    return out


def _total(storages: list[Storage]) -> dict[str, Storage]:
    """One entry per key (a key named twice must agree), largest declaration kept."""
    by_key: dict[str, Storage] = {}
    for s in storages:
        if s.key not in by_key or s.nbytes > by_key[s.key].nbytes:
            by_key[s.key] = s
    return by_key


def check_zip(path: Path, size: int, budget: int | None) -> None:
    """Check a zip-based .pt file (see the module docstring); nothing is allocated beyond data.pkl."""
    from latentbridge.files._sniff import zip_errors  # the zip reader's exceptions, translated in one place

    with zip_errors(path, "PyTorch zip archive"), zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        pkl = [i for i in infos if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
        if len(pkl) != 1:
            raise FileFormatError(
                f"{path}: a PyTorch zip archive needs exactly one data.pkl, this one holds {len(pkl)}: the file is "
                "damaged; re-save it"
            )
        root = pkl[0].filename[: -len("data.pkl")]
        by_name: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if not info.filename.startswith(root) or info.filename in by_name:
                raise FileFormatError(
                    f"{path}: member {info.filename!r} of this PyTorch archive is outside its folder {root!r} or "
                    "named twice: the file is damaged; re-save it"
                )
            if info.flag_bits & 0x1:
                raise FileFormatError(f"{path}: member {info.filename!r} is encrypted; torch never writes that")
            end = info.header_offset + 30 + len(info.filename.encode()) + info.compress_size
            if info.compress_type == zipfile.ZIP_STORED and (info.compress_size != info.file_size or end > size):
                raise FileFormatError(
                    f"{path}: member {info.filename!r} declares {info.file_size} bytes stored at offset "
                    f"{info.header_offset}, but the file is {size} bytes: it is truncated or damaged; re-download "
                    "or re-save it"
                )
            by_name[info.filename] = info
        if pkl[0].file_size > MAX_PICKLE_BYTES:
            raise FileFormatError(
                f"{path}: its data.pkl is {size_text(pkl[0].file_size)}; the pickle of a real state dict is well "
                f"under {size_text(MAX_PICKLE_BYTES)} (the tensors live beside it): the file is damaged"
            )
        data = zf.read(pkl[0])
        for name, check in (("byteorder", _byteorder), (".storage_alignment", _digits), ("version", _digits)):
            if root + name in by_name:
                check(path, name, zf.read(by_name[root + name]))
    offset = pkl[0].header_offset + 30 + len(pkl[0].filename.encode()) + len(pkl[0].extra)
    try:
        pids = walk(data).pids
    except _Corrupt as exc:
        raise _damaged(path, offset + exc.pos, f"data.pkl byte {exc.pos}: {exc.problem}") from exc
    storages = _total(_storages(path, pids, legacy=False))
    for s in storages.values():
        record = by_name.get(f"{root}data/{s.key}")
        if record is None:
            raise FileFormatError(
                f"{path}: its pickle refers to storage {s.key!r}, which the archive does not hold (no "
                f"{root}data/{s.key}): the file is truncated or damaged; re-download or re-save it"
            )
        check_bytes(
            s.nbytes, str(path), f"storage {s.key!r} ({s.numel} × {s.type_name})", present=record.file_size, budget=None
        )
    if budget is not None:
        check_bytes(sum(s.nbytes for s in storages.values()), str(path), "its tensors", budget=budget)


def _byteorder(path: Path, record: str, value: bytes) -> None:
    if value not in (b"little", b"big"):
        raise FileFormatError(
            f"{path}: its {record} record says {value[:20]!r}; torch writes 'little' or 'big': the file is damaged"
        )


def _digits(path: Path, record: str, value: bytes) -> None:
    if not value.strip().isdigit() or len(value) > 20:
        raise FileFormatError(
            f"{path}: its {record} record is {value[:20]!r}, not a number as torch writes: the file is damaged"
        )


def check_legacy(path: Path, size: int, budget: int | None) -> None:
    """Check a legacy (non-zip) torch.save file: its five pickles, then one size-prefixed record per storage."""
    with path.open("rb") as f:
        head = f.read(min(size, MAX_PICKLE_BYTES))
    at = 0
    values = []
    pids: list[tuple[Any, ...]] = []
    for what in ("magic number", "protocol version", "system info", "object", "storage keys"):
        try:
            found = walk(head[at:], base=at)
        except _Corrupt as exc:
            if exc.pos >= len(head) and len(head) == MAX_PICKLE_BYTES:
                raise FileFormatError(
                    f"{path}: the pickled part of this legacy .pt file is larger than {size_text(MAX_PICKLE_BYTES)}; "
                    "real ones are a few MB: the file is damaged"
                ) from exc
            raise _damaged(path, exc.pos, f"in the {what} pickle: {exc.problem}") from exc
        value = found.value
        values.append(value)
        pids += found.pids
        at += found.end
        if what == "magic number" and value != LEGACY_MAGIC:
            unsafe = [g for g in found.globals if not g.startswith(("torch.", "collections.OrderedDict"))]
            if unsafe:
                raise FileFormatError(
                    f"{path}: refused to load this pickle: it references {unsafe[0]}, which unpickling would import "
                    "and call. latentbridge loads pickles only with torch.load(weights_only=True), so nothing from "
                    "the file was executed; only tensors, dicts, lists and plain values are accepted: if you trust "
                    "the file, re-save its tensors with safetensors in a trusted environment"
                )
            raise FileFormatError(
                f"{path}: a pickle, but not one torch.save wrote (it does not start with torch's magic number): "
                "latentbridge reads PyTorch files only; re-save the tensors with torch.save or safetensors"
            )
        if what == "protocol version" and value != LEGACY_PROTOCOL:
            raise FileFormatError(
                f"{path}: a legacy PyTorch file of protocol version {value!r}; torch reads {LEGACY_PROTOCOL}: the file "
                "is damaged or from an unknown writer; re-save it"
            )
    keys = values[-1]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _damaged(path, at, "the storage key list is not a list of strings")
    storages = _total(_storages(path, pids, legacy=True))
    unknown = sorted(set(keys) - set(storages))
    if unknown:
        raise _damaged(path, at, f"storage keys {unknown[:3]} are listed but no tensor refers to them")
    missing = sorted(set(storages) - set(keys))
    if missing:
        raise _damaged(path, at, f"tensors refer to storages {missing[:3]}, which the file does not list")
    need = sum(8 + storages[k].nbytes for k in keys)
    check_bytes(need, str(path), f"its {len(keys)} storages", present=size - at, budget=None)
    if budget is not None:
        check_bytes(need, str(path), "its tensors", budget=budget)
    with path.open("rb") as f:  # each record: the element count (8 bytes, little-endian), then the data
        for k in keys:
            f.seek(at)
            raw = f.read(8)
            (numel,) = struct.unpack("<q", raw) if len(raw) == 8 else (-1,)
            if numel != storages[k].numel:
                raise _damaged(
                    path,
                    at,
                    f"storage {k!r} is recorded with {numel} elements but its tensors declare {storages[k].numel}",
                )
            at += 8 + storages[k].nbytes
