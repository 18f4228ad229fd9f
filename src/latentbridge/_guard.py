"""What every reader checks before it trusts a byte: the limits, and the checks that enforce them.

Every reader of a user's file (latent containers, weight headers, images, our JSON records) calls these before
it hands bytes to a parser that would allocate, recurse or block on them:

* :func:`regular_file` — only regular files are read: a FIFO would block forever, a device never ends, a socket
  cannot be opened, a symlink loop is named as one;
* :func:`load_json` — JSON records are bounded in size and nesting *before* ``json.loads`` recurses into them;
* :func:`check_bytes` — what a header declares is compared with what the file holds and with the memory budget,
  with the numbers, before anything is allocated;
* :func:`check_pixels` — an image's pixel count is checked from its header before it is decoded.

The limits are module constants, each with the reason for its size. A refusal is a
:class:`~latentbridge.errors.FileFormatError` (or :class:`~latentbridge.errors.MissingFileError`) that names the
file, what it found, what was expected and what to do.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

from latentbridge.errors import FileFormatError, MissingFileError

# One array a latent reader loads into memory. The largest latents real pipelines write are ~100× smaller (a
# 1280×720, 129-frame HunyuanVideo latent is 16×33×90×160 float32 = 30 MB; a batch of 64 SDXL 1024² latents 16 MB),
# so an array above this is a damaged header or not a latent, and refusing it keeps a reader within ~1.5 GiB.
MAX_ARRAY_BYTES = 2**30
# JSON nesting: our records nest 3 levels deep, diffusers configs and safetensors headers 3–4; the safetensors
# library itself stops at serde_json's 128. Python's json recurses once per level, so the depth is checked first.
MAX_JSON_DEPTH = 64
# A JSON record read whole (sidecar, preview fit, config.json, shard index, provenance): real ones are kilobytes
# (a shard index of 2,500 tensors is 0.2 MB).
MAX_JSON_BYTES = 64 * 2**20
# Pixels of an image read for encoding: Pillow's own MAX_IMAGE_PIXELS (above it Pillow warns of a decompression
# bomb; at twice it refuses). 89.5 MP is a 9459×9459 image; as float32 RGB it already takes 1 GiB.
MAX_IMAGE_PIXELS = 89_478_485

_KIND = {
    stat.S_IFIFO: "a named pipe (FIFO): reading it would wait for a writer forever",
    stat.S_IFCHR: "a character device, not a file",
    stat.S_IFBLK: "a block device, not a file",
    stat.S_IFSOCK: "a socket, not a file",
}


def size_text(n: int | float) -> str:
    """Bytes for humans, binary units: '4.0 GiB', '512 B'."""
    for unit, div in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{int(n)} B"


def regular_file(path: str | os.PathLike[str], what: str = "file") -> os.stat_result:
    """``os.stat`` of ``path`` after checking that it is a regular file that can be read.

    Args:
        path: what the user named.
        what: how to call it in a message ("latent file", "image", "weight file").

    Raises:
        MissingFileError: nothing there (or a symlink to nothing).
        FileFormatError: a folder, FIFO, device, socket, a symlink loop, or a file this user may not read.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        if os.path.islink(path):
            target = os.readlink(path)
            raise MissingFileError(
                f"{path}: a symbolic link to {target}, which does not exist; fix the link or pass the {what} itself"
            ) from exc
        raise MissingFileError(f"{path}: no such {what}; check the path") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FileFormatError(
                f"{path}: a symbolic link loop (the link points, through other links, back to itself); fix or remove "
                f"the link and pass the {what} itself"
            ) from exc
        if exc.errno == errno.ENAMETOOLONG:
            raise FileFormatError(f"{path}: the path is too long for this system; shorten it") from exc
        raise FileFormatError(f"{path}: cannot be read ({exc.strerror or exc}); check the path") from exc
    kind = stat.S_IFMT(st.st_mode)
    if kind == stat.S_IFDIR:
        raise FileFormatError(f"{path}: a folder, not a {what}; pass the {what} inside it")
    if kind != stat.S_IFREG:
        found = _KIND.get(kind, "not a regular file")
        raise FileFormatError(f"{path}: {found}; latentbridge reads regular files only: save the data to a file first")
    if not os.access(path, os.R_OK):
        raise FileFormatError(f"{path}: permission denied: this user may not read the {what}; check its permissions")
    return st


def existing_path(path: str | os.PathLike[str], what: str = "file or folder") -> Path:
    """``path`` when it names a folder or a regular file; the errors of :func:`regular_file` otherwise."""
    path = Path(path)
    if os.path.isdir(path):  # isdir follows links and is False on loops: those reach regular_file
        return path
    regular_file(path, what)
    return path


# --- JSON --------------------------------------------------------------------------------------------------

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_OPEN, _CLOSE = np.zeros(256, np.int8), np.zeros(256, np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_CLOSE[[ord("]"), ord("}")]] = 1


def json_depth(raw: bytes | str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text (brackets inside strings do not count), in linear time."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    bare = np.frombuffer(_STRING.sub(b'""', data), np.uint8)
    if bare.size == 0:
        return 0
    steps = _OPEN[bare].astype(np.int32) - _CLOSE[bare]
    return int(np.cumsum(steps).max(initial=0))


def load_json(raw: bytes | str, where: str, what: str, fix: str, *, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse JSON text from a file after bounding its size and nesting depth.

    Args:
        raw: the text (bytes are decoded as UTF-8).
        where: the file, for the message.
        what: the thing, as the message names it when it is bad ("corrupt safetensors header", "damaged
            latentbridge.provenance record").
        fix: what the user should do about a bad one.
        limit: largest text accepted, in bytes.

    Raises:
        FileFormatError: ``"{where}: {what} ({the problem}); {fix}"`` — too large, nested deeper than
            :data:`MAX_JSON_DEPTH`, not UTF-8 or not JSON.
    """

    def bad(problem: str) -> FileFormatError:
        return FileFormatError(f"{where}: {what} ({problem}); {fix}")

    if len(raw) > limit:
        raise bad(f"{size_text(len(raw))}, above the {size_text(limit)} limit")
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise bad(f"nested {depth} levels deep; latentbridge reads {MAX_JSON_DEPTH} at most and real files nest 3 or 4")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        return json.loads(text)
    except UnicodeDecodeError as exc:
        raise bad(f"not UTF-8 text: {exc}") from exc
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python's 4300-digit limit
        raise bad(f"not valid JSON: {exc}") from exc


def read_json_file(path: str | os.PathLike[str], what: str, fix: str) -> Any:
    """A JSON file read whole (a regular file of at most :data:`MAX_JSON_BYTES`); see :func:`load_json`."""
    st = regular_file(path, "JSON file")
    if st.st_size > MAX_JSON_BYTES:
        raise FileFormatError(
            f"{path}: {what} ({size_text(st.st_size)}, above the {size_text(MAX_JSON_BYTES)} limit); {fix}"
        )
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise FileFormatError(f"{path}: {what} (cannot be read: {exc.strerror or exc}); {fix}") from exc
    return load_json(raw, str(path), what, fix)


# --- sizes -------------------------------------------------------------------------------------------------


def check_bytes(
    needed: int, where: str, what: str, *, present: int | None = None, budget: int | None = MAX_ARRAY_BYTES
) -> None:
    """Refuse, with the numbers, an allocation the file cannot back or the budget cannot hold.

    Args:
        needed: bytes the header declares (shape × element size).
        where: the file; what: the array ("array 'latent' [1, 4, 64, 64] float32").
        present: bytes the file actually holds for it (None: not known, e.g. compressed).
        budget: bytes one array may take in memory (None: no budget, e.g. memory-mapped weights).
    """
    if present is not None and needed > present:
        raise FileFormatError(
            f"{where}: {what} takes {size_text(needed)} ({needed} bytes), more than the {present} bytes the file holds "
            "for it: the file is truncated or its header is damaged; re-download or re-save it"
        )
    if budget is not None and needed > budget:
        raise FileFormatError(
            f"{where}: {what} would take {size_text(needed)} in memory, above the {size_text(budget)} a latent may "
            "take (the largest real latents are ~30 MB); the header is damaged or this is not a latent: re-save it"
        )


def check_pixels(width: int, height: int | None, where: str, *, limit: int = MAX_IMAGE_PIXELS) -> None:
    """Refuse an image whose header declares no pixels, or more than ``limit``, before it is decoded.

    ``height`` None: ``width`` is the pixel count (all Pillow says of a bomb it refuses itself).
    """
    if height is None:
        raise FileFormatError(
            f"{where}: an image of {width / 1e6:.1f} MP is above the {limit / 1e6:.1f} MP latentbridge decodes (a "
            "decompression bomb, or a picture far larger than any VAE encodes in one piece); resize it first"
        )
    if width < 1 or height < 1:
        raise FileFormatError(f"{where}: the image header declares {width}×{height} pixels: the file is damaged")
    if width * height > limit:
        raise FileFormatError(
            f"{where}: a {width}×{height} image ({width * height / 1e6:.1f} MP) is above the {limit / 1e6:.1f} MP "
            "latentbridge decodes (a decompression bomb, or a picture far larger than any VAE encodes in one piece: "
            f"{width * height * 12 / 2**30:.1f} GiB as float RGB); resize it first"
        )
