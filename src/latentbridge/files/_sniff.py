"""Recognise a file from its content (magic bytes and structure), never from its name or extension.

Every check here reads headers only: no tensor data is loaded and nothing from the file is executed.
A file that is empty, truncated, an HTML error page, a git-lfs pointer or any other impostor raises one
:class:`FileFormatError` that names the file, what it is, and what to do.
"""

from __future__ import annotations

import lzma
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from latentbridge._guard import load_json, regular_file
from latentbridge.errors import FileFormatError
from latentbridge.files import _npy

# Container kinds `sniff` answers. "latent" is a safetensors file holding ComfyUI's `latent_tensor` key (written
# by ComfyUI's SaveLatent or by latentbridge); "kohya-npz" is an sd-scripts latent cache.
KINDS: tuple[str, ...] = ("latent", "safetensors", "pt", "npy", "npz", "kohya-npz", "onnx", "gguf")

COMFY_KEY = "latent_tensor"  # ComfyUI nodes.py SaveLatent / LoadLatent
COMFY_MARKER = "latent_format_version_0"  # empty tensor; absent = legacy file holding SD1-scaled latents

_MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library refuses larger headers too
_HEAD = 1024  # bytes read to recognise text impostors
_LFS = b"version https://git-lfs.github.com/spec/"
_KOHYA_KEY = re.compile(r"(latents|latents_flipped|original_size|crop_ltrb|alpha_mask)(_\d+x\d+)?")
_ONNX_TAGS = frozenset((0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42))  # ModelProto fields 2..8 after ir_version

# safetensors dtype names -> numpy-like names we report
ST_DTYPES: dict[str, str] = {
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
# bits per element of every dtype the safetensors format defines (safetensors' Dtype enum, 0.8)
_ST_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F4": 4, "F6_E2M3": 6}
_ST_BITS |= {"F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32}
_ST_BITS |= {"C64": 64, "F64": 64, "I64": 64, "U64": 64}


@dataclass(frozen=True, slots=True)
class Entry:
    """One named array in a container, described from its header (no data loaded)."""

    name: str
    dtype: str  # "float32", "bfloat16", "int64", … (numpy-style names)
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        """Number of elements."""
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def is_float(self) -> bool:
        """True for floating-point dtypes."""
        return self.dtype.startswith(("float", "bfloat"))

    @property
    def could_be_latent(self) -> bool:
        """A non-empty floating-point array with 3 to 5 dimensions (CHW, NCHW, NCTHW and their permutations)."""
        return self.is_float and 3 <= len(self.shape) <= 5 and self.numel > 0


def _fail(path: Path, problem: str) -> FileFormatError:
    return FileFormatError(f"{path}: {problem}")


def text_impostor(path: Path, head: bytes) -> FileFormatError | None:
    """A clear error for a text file where a binary container was expected, or None."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    low = text[:_HEAD].lower()
    if text.startswith(_LFS):
        found = dict(line.split(b" ", 1) for line in text.splitlines() if b" " in line)
        oid = found.get(b"oid", b"?").decode("ascii", "replace")
        size = found.get(b"size", b"?").decode("ascii", "replace")
        return _fail(
            path,
            f"this is a git-lfs pointer file (oid {oid}, {size} bytes), not the file itself: "
            "run `git lfs pull` in its repository (or download the file directly)",
        )
    if low.startswith(b"<") and (b"<html" in low or b"<!doctype html" in low or b"<head" in low or b"<body" in low):
        return _fail(
            path,
            "this is an HTML page, probably a download error page (login wall, 404 or rate limit) saved under the "
            "file's name: re-download the file",
        )
    if low.startswith((b"{", b"[")) and _is_text(head):
        return _fail(
            path,
            f"this is a JSON text file (starts with {text[:60].decode('utf-8', 'replace')!r}), not a latent or "
            "weight container; if it came from a download it is probably an error response: re-download the file",
        )
    if _is_text(head):
        return _fail(
            path,
            f"this is a text file (starts with {text[:60].decode('utf-8', 'replace')!r}), not a latent or weight "
            "container (.latent/.safetensors, .pt/.pth, .npy/.npz, .onnx): check the file or re-download it",
        )
    return None


def _is_text(head: bytes) -> bool:
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the buffer is still text
        try:
            decoded = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return bool(decoded) and all(ch.isprintable() or ch in "\r\n\t" for ch in decoded)


def looks_like_safetensors(head: bytes) -> bool:
    """The first bytes of a safetensors file: an 8-byte little-endian header length, then the JSON header's "{".

    Decided before any pickle check: a header of 0x?280..0x?580 bytes begins with the pickle opcodes 80 02..80 05.
    The length is not checked against the file's size here: a truncated file must be reported as truncated.
    """
    return len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] >= 2


def _looks_like_onnx(head: bytes) -> bool:
    # ModelProto: field 1 (ir_version, varint) first, then producer_name / graph / opset_import …
    if len(head) < 4 or head[0] != 0x08 or not 1 <= head[1] <= 20:
        return False
    return head[2] in _ONNX_TAGS


# What Python's zip reader raises on a damaged archive, and why:
ZIP_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,  # bad signatures, sizes, CRCs, overlapping members
    zipfile.LargeZipFile,  # a ZIP64 record where none is allowed
    NotImplementedError,  # a compression method zipfile cannot decompress
    RuntimeError,  # an encrypted member (zipfile asks for a password)
    zlib.error,  # a damaged deflate stream
    lzma.LZMAError,  # a damaged lzma stream
    EOFError,  # a compressed stream that ends early
    OSError,  # a damaged bzip2 stream; seeking past the end of the file
    ValueError,  # member names that are not UTF-8 (UnicodeDecodeError), negative offsets
    struct.error,  # a header record cut short
)


@contextmanager
def zip_errors(path: Path, what: str = "zip archive") -> Iterator[None]:
    """Turn the zip reader's exceptions (:data:`ZIP_ERRORS`) into one FileFormatError naming the file."""
    try:
        yield
    except FileFormatError:
        raise
    except ZIP_ERRORS as exc:
        detail = f"{type(exc).__name__}: {exc}"[:200]
        raise _fail(path, f"a damaged or truncated {what} ({detail}): re-download or re-save it") from exc


def starts_like_zip(path: Path) -> bool:
    """True when ``path`` begins with a zip signature (local header or empty archive), as torch.load decides.

    Used instead of ``zipfile.is_zipfile``, which reads the end of the file and can itself raise on a damaged one.
    """
    with path.open("rb") as f:
        return f.read(4) in (b"PK\x03\x04", b"PK\x05\x06")


def zip_kind(path: Path) -> str:
    """ "pt" (a torch.save archive), "npz" or "kohya-npz" for a zip file; anything else raises FileFormatError."""
    with zip_errors(path), zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
        raise _fail(
            path,
            "this is a TorchScript archive (torch.jit.save): a compiled program, not a state dict of tensors, and "
            "latentbridge never runs code from a file; in a trusted environment load it with torch.jit.load and "
            "save its state_dict() with safetensors",
        )
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "pt"
    if names and all(n.endswith(".npy") for n in names):
        keys = [n[: -len(".npy")] for n in names]
        if all(_KOHYA_KEY.fullmatch(k) for k in keys) and any(k.startswith("latents") for k in keys):
            return "kohya-npz"
        return "npz"
    shown = ", ".join(names[:5]) + (", …" if len(names) > 5 else "") if names else "nothing"
    raise _fail(
        path,
        f"a zip archive that is neither an .npz (every member an .npy array) nor a PyTorch file (a data.pkl "
        f"member); it holds {shown}: unpack it and point latentbridge at the latent file inside",
    )


def sniff(path: str | Path) -> str:
    """The container kind of ``path``, recognised from its content.

    Returns one of :data:`KINDS`: "latent" (safetensors with ComfyUI's ``latent_tensor`` key), "safetensors",
    "pt" (PyTorch zip or legacy pickle), "npy", "npz", "kohya-npz" (sd-scripts latent cache), "onnx", "gguf".

    Raises:
        MissingFileError: no such file (a FileNotFoundError too).
        FileFormatError: a folder, FIFO, device or symlink loop; empty, truncated, an HTML page, a git-lfs pointer,
            a zip that is not npz, …
    """
    path = Path(path)
    regular_file(path, "latent or weight file")
    with path.open("rb") as f:
        head = f.read(_HEAD)
    if not head:
        raise _fail(path, "the file is empty (0 bytes): re-download or re-save it")
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return zip_kind(path)
    if head.startswith(b"GGUF"):
        return "gguf"
    # safetensors before pickle: a header length of 0x?380 bytes begins with the pickle protocol bytes 80 03
    if looks_like_safetensors(head):
        entries, _ = read_safetensors_header(path)
        return "latent" if COMFY_KEY in entries else "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pt"  # a legacy (non-zip) torch.save file or a bare pickle; loaded with weights_only=True only
    impostor = text_impostor(path, head)
    if impostor is not None:
        raise impostor
    if _looks_like_onnx(head):
        return "onnx"
    if len(head) < 9:
        raise _fail(path, f"the file is only {len(head)} bytes long, too short for any container: re-download it")
    raise _fail(
        path,
        f"unrecognised content (first bytes {head[:8].hex(' ')}): expected a safetensors/.latent file, a PyTorch "
        ".pt/.pth file, a NumPy .npy/.npz file, or an ONNX model; the file may be damaged or of another kind",
    )


def read_safetensors_header(path: Path) -> tuple[dict[str, Entry], dict[str, str]]:
    """Parse and validate a safetensors header: (entries by name, ``__metadata__``). No tensor data is read.

    Every field is checked for its JSON type and range (safetensors' format: ``{"name": {"dtype": "F32", "shape":
    [..], "data_offsets": [begin, end]}, "__metadata__": {str: str}}``) and every tensor's byte span against its
    dtype and shape and against the data the file holds, before anything trusts them.

    Raises FileFormatError for a truncated header or data section, invalid or too deeply nested JSON, or
    malformed entries.
    """
    size = regular_file(path).st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise _fail(path, f"truncated safetensors file: {len(prefix)} bytes, the header length alone needs 8")
        (n,) = struct.unpack("<Q", prefix)
        if n > _MAX_SAFETENSORS_HEADER:
            raise _fail(path, f"not a valid safetensors file: its header claims {n} bytes (the limit is 100 MB)")
        if n > size - 8:
            raise _fail(
                path,
                f"truncated safetensors header: it declares {n} bytes but the file holds only {size - 8} after "
                "the 8-byte length; the download or copy was cut short: re-download the file",
            )
        raw = f.read(n)
    fix = "re-download or re-save the file"
    header = load_json(raw, str(path), "corrupt safetensors header", fix, limit=_MAX_SAFETENSORS_HEADER)
    if not isinstance(header, dict):
        raise _fail(path, f"corrupt safetensors header: expected a JSON object of tensors, found {_kind(header)}")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _fail(path, "corrupt safetensors header: __metadata__ must map strings to strings")
    entries: dict[str, Entry] = {}
    data_len = size - 8 - n
    end = 0
    for name, info in header.items():
        dtype, shape, (start, stop) = _entry_fields(path, name, info)
        entries[name] = Entry(name, ST_DTYPES.get(dtype, dtype.lower()), shape)
        bits = entries[name].numel * _ST_BITS[dtype]
        if stop - start != (bits + 7) // 8:
            raise _fail(
                path,
                f"corrupt safetensors header: entry {name!r} spans {stop - start} bytes, but {dtype} {list(shape)} "
                f"needs {(bits + 7) // 8}",
            )
        end = max(end, stop)
    if end > data_len:
        raise _fail(
            path,
            f"truncated safetensors file: the tensors need {end} bytes of data but only {data_len} are present; "
            "the download or copy was cut short: re-download the file",
        )
    return entries, dict(meta)


def _kind(value: Any) -> str:
    """How a JSON value is named in messages: 'the number 3', 'a list', 'a string'."""
    if isinstance(value, bool) or value is None:
        return _json_name(value)
    if isinstance(value, int | float):
        return f"the number {value!r}"[:60]
    names: dict[type, str] = {str: "a string", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _json_name(value: Any) -> str:
    return {True: "true", False: "false", None: "null"}[value]


def _entry_fields(path: Path, name: str, info: Any) -> tuple[str, tuple[int, ...], tuple[int, int]]:
    """(dtype, shape, (begin, end)) of one safetensors entry, each field checked for type and range."""

    def bad(problem: str) -> FileFormatError:
        return _fail(path, f"corrupt safetensors header: entry {name[:80]!r} {problem}; re-download or re-save it")

    if not isinstance(info, dict):
        raise bad(f"is {_kind(info)}, not an object with dtype, shape and data_offsets")
    if not {"dtype", "shape", "data_offsets"} <= set(info):
        raise bad(f"lacks {', '.join(sorted({'dtype', 'shape', 'data_offsets'} - set(info)))}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in _ST_BITS:
        known = ", ".join(sorted(_ST_BITS))
        raise bad(f"has dtype {str(dtype)[:40]!r} ({_kind(dtype)}); safetensors dtypes are {known}")

    def count(v: Any) -> bool:
        return type(v) is int and v >= 0

    if not isinstance(shape, list) or not all(map(count, shape)):
        raise bad(f"has shape {str(shape)[:80]}: expected a list of non-negative integers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(count, offsets)) or offsets[0] > offsets[1]:
        raise bad(f"has data_offsets {str(offsets)[:80]}: expected [begin, end] with 0 ≤ begin ≤ end")
    return dtype, tuple(shape), (offsets[0], offsets[1])


def read_npy_entry(fp: IO[bytes], name: str, where: str | Path) -> tuple[Entry, _npy.NpyHeader]:
    """Describe one .npy stream from its checked header (formats 1.0–3.0); the stream is left at the data."""
    header = _npy.read_header(fp, str(where), name)
    dtype = "object" if header.dtype.hasobject else header.dtype.name
    return Entry(name, dtype, header.shape), header
