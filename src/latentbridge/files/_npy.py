"""NumPy ``.npy`` streams (a bare ``.npy`` file, or one member of an ``.npz``) read without trusting their headers.

NumPy's own reader evaluates the header text and allocates whatever shape it declares: a damaged header raises
tokenizer and syntax errors, and a shape of 2⁴⁰ elements is allocated before the first data byte is read. Here
the header is bounded in length and nesting, parsed with ``ast.literal_eval`` into a dict whose fields are
checked one by one, and the data is read only once its size has been compared with what the file holds and with
the memory budget (:func:`latentbridge._guard.check_bytes`). Format versions 1.0, 2.0 and 3.0
(numpy/lib/format.py) are read; object arrays never are (they are pickles).
"""

from __future__ import annotations

import ast
import math
import struct
from dataclasses import dataclass
from typing import IO

import numpy as np

from latentbridge._guard import MAX_ARRAY_BYTES, check_bytes
from latentbridge.errors import FileFormatError

MAGIC = b"\x93NUMPY"
# Header text, in bytes: NumPy writes ~120 (padded to 64-byte alignment) and its own reader refuses more than 10,000
# by default; structured dtypes with many fields are the only long ones, and no latent is one.
MAX_HEADER = 65_536
MAX_HEADER_DEPTH = 8  # {'shape': (1, 4, 64, 64)} nests 2 levels; a structured descr a few more
_VERSIONS = {1: ("<H", "latin1"), 2: ("<I", "latin1"), 3: ("<I", "utf8")}


@dataclass(frozen=True, slots=True)
class NpyHeader:
    """A checked .npy header: shape, dtype, memory order and where the data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int  # bytes from the start of the stream to the first data byte

    @property
    def nbytes(self) -> int:
        """Bytes of data the header declares."""
        return math.prod(self.shape) * self.dtype.itemsize

    def describe(self, name: str) -> str:
        """'array 'latent' [1, 4, 64, 64] float32' (for messages)."""
        label = f"array {name!r}" if name else "the array"
        return f"{label} {list(self.shape)} {self.dtype.name}"


def _read(fp: IO[bytes], n: int) -> bytes:
    data = fp.read(n)
    return data if data is not None else b""


def read_header(fp: IO[bytes], where: str, name: str) -> NpyHeader:
    """Parse the header of the .npy stream at ``fp`` (left at the first data byte).

    Args:
        fp: a binary stream positioned at the magic string.
        where: the file, for messages; name: the array's name in an .npz ("" for a bare .npy).

    Raises:
        FileFormatError: anything but a well-formed header of a supported version.
    """
    label = f"array {name!r}" if name else "the .npy array"

    def bad(problem: str) -> FileFormatError:
        return FileFormatError(f"{where}: {label} has a damaged .npy header ({problem}); re-download or re-save it")

    prefix = _read(fp, 8)
    if len(prefix) < 8 or not prefix.startswith(MAGIC):
        raise bad(f"it does not start with the .npy magic bytes; found {prefix[:8]!r}")
    major, minor = prefix[6], prefix[7]
    if minor != 0 or major not in _VERSIONS:
        raise FileFormatError(
            f"{where}: {label} uses .npy format version {major}.{minor}; latentbridge reads 1.0, 2.0 and 3.0: "
            "re-save it with numpy.save"
        )
    length_format, encoding = _VERSIONS[major]
    raw_length = _read(fp, struct.calcsize(length_format))
    if len(raw_length) < struct.calcsize(length_format):
        raise bad("the file ends inside the header length")
    (length,) = struct.unpack(length_format, raw_length)
    if length > MAX_HEADER:
        raise bad(
            f"its header claims {length} bytes; NumPy writes about 120 and this reader takes {MAX_HEADER} at most"
        )
    raw = _read(fp, length)
    if len(raw) < length:
        raise bad(f"the header claims {length} bytes but the file ends after {len(raw)}")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise bad(f"the header text is not {encoding}: {exc}") from exc
    depth = max((d for d in _depths(text)), default=0)
    if depth > MAX_HEADER_DEPTH:
        raise bad(f"the header nests {depth} levels deep")
    try:
        fields = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError) as exc:  # not a literal / malformed node / unhashable key
        raise bad(f"the header is not a Python literal: {type(exc).__name__}: {exc}") from exc
    if not isinstance(fields, dict) or set(fields) != {"descr", "fortran_order", "shape"}:
        keys = sorted(map(str, fields)) if isinstance(fields, dict) else type(fields).__name__
        raise bad(f"expected a dict of descr, fortran_order and shape, found {keys}")
    shape, order, descr = fields["shape"], fields["fortran_order"], fields["descr"]
    if not isinstance(shape, tuple) or not all(type(s) is int and s >= 0 for s in shape):
        raise bad(f"shape must be a tuple of non-negative integers, found {shape!r}"[:300])
    if not isinstance(order, bool):
        raise bad(f"fortran_order must be True or False, found {order!r}"[:300])
    if not isinstance(descr, str):
        raise bad(f"descr must name a plain dtype such as '<f4', found {descr!r}"[:300])
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError) as exc:  # numpy's two answers to a name it does not know
        raise bad(f"descr {descr!r} is not a NumPy dtype: {exc}"[:300]) from exc
    if dtype.itemsize == 0 and not dtype.hasobject:
        raise bad(f"descr {descr!r} has zero-byte elements")
    return NpyHeader(tuple(shape), dtype, order, 8 + len(raw_length) + length)


def _depths(text: str):
    depth = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            yield depth
        elif ch in ")]}":
            depth -= 1


def read_array(
    fp: IO[bytes],
    header: NpyHeader,
    where: str,
    name: str,
    *,
    present: int | None,
    budget: int | None = MAX_ARRAY_BYTES,
) -> np.ndarray:
    """The array after ``header`` (``fp`` at its first data byte): sizes checked, then read into fresh memory.

    Args:
        present: bytes the container holds after the header (None: unknown); budget: bytes the array may take.

    Returns:
        A writable ndarray of the header's shape and dtype (byte order as stored).

    Raises:
        FileFormatError: object arrays, sizes the file or the budget cannot hold, data that ends early.
    """
    what = header.describe(name)
    if header.dtype.hasobject:
        raise FileFormatError(f"{where}: {what} holds Python objects (a pickle); latentbridge never unpickles them")
    check_bytes(header.nbytes, where, what, present=present, budget=budget)
    buf = bytearray(header.nbytes)
    view = memoryview(buf)
    got = 0
    while got < header.nbytes:
        chunk = fp.readinto(view[got:]) if hasattr(fp, "readinto") else None
        if chunk is None:
            data = _read(fp, header.nbytes - got)
            chunk = len(data)
            view[got : got + chunk] = data
        if not chunk:
            break
        got += chunk
    if got < header.nbytes:
        raise FileFormatError(
            f"{where}: {what} needs {header.nbytes} bytes of data but the file ends after {got}: it is truncated; "
            "re-download or re-save it"
        )
    arr = np.frombuffer(buf, dtype=header.dtype)
    return arr.reshape(header.shape, order="F" if header.fortran_order else "C")
