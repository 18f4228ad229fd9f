"""Recognise a file from its content (magic bytes and structure), never from its name or extension.

Every check here reads headers only: no tensor data is loaded and nothing from the file is executed.
A file that is empty, truncated, an HTML error page, a git-lfs pointer or any other impostor raises one
:class:`FileFormatError` that names the file, what it is, and what to do.
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from latentbridge.errors import FileFormatError

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
_ST_BYTES = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2}


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


def zip_kind(path: Path) -> str:
    """ "pt" (a torch.save archive), "npz" or "kohya-npz" for a zip file; anything else raises FileFormatError."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise _fail(path, f"a damaged or truncated zip archive ({exc}): re-download or re-save it") from exc
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
        FileNotFoundError: no such file.
        FileFormatError: empty, truncated, an HTML page, a git-lfs pointer, a zip that is not npz, …
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: pass a latent or weight file")
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

    Raises FileFormatError for a truncated header or data section, invalid JSON, or malformed entries.
    """
    size = path.stat().st_size
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
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problem = f"corrupt safetensors header (not valid JSON: {exc}): re-download or re-save the file"
        raise _fail(path, problem) from exc
    if not isinstance(header, dict):
        raise _fail(path, "corrupt safetensors header: expected a JSON object of tensors")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise _fail(path, "corrupt safetensors header: __metadata__ must map strings to strings")
    entries: dict[str, Entry] = {}
    data_len = size - 8 - n
    end = 0
    for name, info in header.items():
        try:
            dtype, shape, (start, stop) = info["dtype"], tuple(int(s) for s in info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError) as exc:
            raise _fail(path, f"corrupt safetensors header: entry {name!r} lacks dtype/shape/data_offsets") from exc
        entries[name] = Entry(name, ST_DTYPES.get(dtype, dtype.lower()), shape)
        if dtype in _ST_BYTES and stop - start != entries[name].numel * _ST_BYTES[dtype]:
            raise _fail(path, f"corrupt safetensors header: entry {name!r} has {stop - start} bytes for shape {shape}")
        end = max(end, int(stop))
    if end > data_len:
        raise _fail(
            path,
            f"truncated safetensors file: the tensors need {end} bytes of data but only {data_len} are present; "
            "the download or copy was cut short: re-download the file",
        )
    return entries, dict(meta)


def read_npy_entry(fp: IO[bytes], name: str) -> Entry:
    """Describe one .npy stream from its header (format 1.0 or 2.0); the stream is left at the data."""
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"array {name!r} uses .npy format version {version}; latentbridge reads 1.0 and 2.0")
    return Entry(name, "object" if dtype.hasobject else dtype.name, tuple(int(s) for s in shape))
