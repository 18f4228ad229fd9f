"""The bad-input catalogue (issue 18): every class of bad input the issue lists, one case each.

Each case builds the bad file from a valid one (written by latentbridge, torch, NumPy or Pillow), calls the
public reader, and asserts the error class and a message that names the file and the problem. The important
ones also go through the CLI: exit code 1, exactly one red ``error:`` line, no traceback. Batch runs, data-loss
guards and the device check have their own tests at the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import re
import signal
import socket
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from latentbridge.cli import app
from latentbridge.errors import (
    DeviceError,
    FileFormatError,
    LatentBridgeError,
    MissingFileError,
    NonFiniteError,
)
from latentbridge.files import open_latent, read_latent, write_latent
from latentbridge.formats import get_format
from latentbridge.images import load_image, read_png_metadata
from latentbridge.latent import Latent, Provenance
from latentbridge.weights import describe

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()
ZOO_A = get_format("zoo-a")
BOMB_SHAPE = (1, 4, 16384, 16384)  # a plausible latent shape: 4 GiB of float32


# --- building blocks ---------------------------------------------------------------------------------------


def _latent(seed: int = 0, shape: tuple[int, ...] = (1, 4, 8, 8)) -> Latent:
    g = torch.Generator().manual_seed(seed)
    prov = Provenance(vae_name="zoo-a", seed=7, history=("encode zoo-a",), extra=(("note", "x"),))
    return Latent(torch.randn(shape, generator=g), ZOO_A, "raw", "NCHW", prov)


def _written(tmp: Path, name: str = "in.latent", container: str = "latent", latent: Latent | None = None) -> Path:
    return write_latent(latent or _latent(), tmp / name, container=container)


def _header(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _with_header(data: bytes, header: dict | str) -> bytes:
    head = (header if isinstance(header, str) else json.dumps(header)).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + _header(data)[1]


def _edit_header(tmp: Path, edit: Callable[[dict], dict | str], name: str = "bad.latent") -> Path:
    """A valid .latent whose safetensors header JSON was changed by ``edit`` (length prefix kept right)."""
    data = _written(tmp, "good.latent").read_bytes()
    header, _ = _header(data)
    path = tmp / name
    path.write_bytes(_with_header(data, edit(header)))
    return path


def _edit_provenance(tmp: Path, change: dict) -> Path:
    def edit(h: dict) -> dict:
        record = json.loads(h["__metadata__"]["latentbridge.provenance"])
        h["__metadata__"]["latentbridge.provenance"] = json.dumps({**record, **change})
        return h

    return _edit_header(tmp, edit)


def _saved(obj: Any, *, legacy: bool = False) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _rezip(data: bytes, member_suffix: str, change: Callable[[bytes], bytes]) -> bytes:
    """The zip ``data`` with the member ending in ``member_suffix`` rewritten by ``change`` (CRCs stay valid)."""
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            dst.writestr(info, change(body) if info.filename.endswith(member_suffix) else body)
    return out.getvalue()


def _npy(header_text: str, body: bytes = b"\x00" * 64) -> bytes:
    """A version-1.0 .npy file with this header text (padded and newline-terminated as NumPy writes it)."""
    raw = header_text.encode("latin1")
    raw += b" " * (-(len(raw) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw + body


def _png(tmp: Path, name: str = "in.png", **pnginfo: str) -> Path:
    rng = np.random.default_rng(0)
    info = PngInfo()
    for k, v in pnginfo.items():
        info.add_text(k, v)
    path = tmp / name
    Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)).save(path, pnginfo=info)
    return path


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        out.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + n]))
        i += 12 + n
    return out


def _png_bytes(
    chunks: list[tuple[bytes, bytes]], *, bad_crc: bytes = b"", short: bytes = b"", zero: bytes = b""
) -> bytes:
    """PNG bytes from chunks; the chunk named ``bad_crc`` gets a wrong CRC, ``short`` a length field 10 bytes short,
    ``zero`` its body zeroed (with a right CRC)."""
    parts = [b"\x89PNG\r\n\x1a\n"]
    for kind, body in chunks:
        body = bytes(len(body)) if kind == zero else body
        crc = zlib.crc32(kind + body) ^ (1 if kind == bad_crc else 0)
        n = len(body) - (10 if kind == short else 0)
        parts.append(struct.pack(">I", n) + kind + body + struct.pack(">I", crc))
    return b"".join(parts)


def _png_sized(tmp: Path, width: int, height: int) -> Path:
    """A real PNG whose IHDR (CRC recomputed) declares ``width``×``height``: what a decompression bomb looks like."""
    chunks = _png_chunks(_png(tmp, "small.png").read_bytes())
    chunks[0] = (b"IHDR", struct.pack(">II", width, height) + chunks[0][1][8:])
    path = tmp / f"{width}x{height}.png"
    path.write_bytes(_png_bytes(chunks))
    return path


def _zero_bomb_npz(path: Path) -> Path:
    """A valid .npz whose member 'latent' is 4 GiB of float32 zeros, deflated to 4 MB (the issue's bomb).

    Each 16 MiB block of zeros ends in a full flush, so its compressed form is the same bytes every time: the
    member is built by repeating one block instead of compressing 4 GiB (checked below by inflating its start).
    """
    hdr = io.BytesIO()
    np.lib.format.write_array_header_2_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": BOMB_SHAPE})
    header = hdr.getvalue()
    block, blocks = 2**24, 2**32 // 2**24
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    first = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    same = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    data = head + first + same * (blocks - 1) + c.flush()
    crc = zlib.crc32(header)
    zeros = bytes(block)
    for _ in range(blocks):
        crc = zlib.crc32(zeros, crc)
    size, name = len(header) + 2**32, b"latent.npy"
    assert size - len(header) == 4 * int(np.prod(BOMB_SHAPE))
    extra = struct.pack("<HHQQ", 1, 16, size, len(data))  # ZIP64: both sizes exceed 4 GiB's 32-bit fields
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45, 0, 8, 0, 0x21, crc, 2**32 - 1, 2**32 - 1, len(name), 20)
    central = struct.pack(
        "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 45, 45, 0, 8, 0, 0x21, crc, 2**32 - 1, 2**32 - 1, len(name), 20,
        0, 0, 0, 0o644 << 16, 0,
    )  # fmt: skip
    body = local + name + extra + data
    cd = central + name + extra
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(cd), len(body), 0)
    path.write_bytes(body + cd + end)
    with zipfile.ZipFile(path) as zf, zf.open("latent.npy") as member:  # a genuine archive NumPy could open
        assert zf.getinfo("latent.npy").file_size == size
        start = member.read(len(header) + 4096)
        assert start[: len(header)] == header and not any(start[len(header) :])
    return path


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the block takes longer than ``seconds``."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still blocked after {seconds} s")

    before = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, before)


# --- the catalogue -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """One class of bad input: how to build it, which reader meets it, what it must say."""

    make: Callable[[Path], Path]
    read: Callable[[Path], Any]
    error: type[Exception]
    match: str
    cli: tuple[str, ...] = ()  # a command (with "{path}") that must fail with one red line; () for API only


def _opcode_pushing(data: bytes, text: str, start: int = 0) -> int:
    """The offset (in ``data``) of the opcode that pushes the string ``text`` in the pickle starting at ``start``."""
    import pickletools

    stream = io.BytesIO(data[start:])
    return start + next(pos for op, arg, pos in pickletools.genops(stream) if arg == text)


def _legacy_object_offset(data: bytes) -> int:
    """Where the object pickle of a legacy torch.save file starts (after its magic, protocol and system info)."""
    import pickletools

    at = 0
    for _ in range(3):
        stream = io.BytesIO(data[at:])
        for op, _arg, pos in pickletools.genops(stream):
            if op.name == "STOP":
                at += pos + 1
                break
    return at


def _pt_legacy_bad_opcode(tmp: Path) -> Path:
    data = bytearray(_saved({"latent": torch.randn(1, 4, 2, 2)}, legacy=True))
    at = _opcode_pushing(bytes(data), "latent", _legacy_object_offset(bytes(data)))
    data[at] = 0xFF  # the opcode that pushes the key string: now an opcode that does not exist
    path = tmp / "bad.pt"
    path.write_bytes(bytes(data))
    return path


def _pt_zip_bad_opcode(tmp: Path) -> Path:
    good = _saved({"latent": torch.randn(1, 4, 2, 2)})
    pkl = zipfile.ZipFile(io.BytesIO(good)).read("archive/data.pkl")
    at = _opcode_pushing(pkl, "latent")

    def damage(body: bytes) -> bytes:
        return body[:at] + b"\xff" + body[at + 1 :]

    path = tmp / "bad.pt"
    path.write_bytes(_rezip(good, "data.pkl", damage))
    return path


def _pt_zip_bad_utf8(tmp: Path) -> Path:
    good = _saved({"latent": torch.randn(1, 4, 2, 2)})
    path = tmp / "bad.pt"
    path.write_bytes(_rezip(good, "data.pkl", lambda b: b.replace(b"latent", b"lat\xffnt")))
    return path


def _pt_short_storage(tmp: Path) -> Path:
    good = _saved({"latent": torch.randn(1, 4, 4, 4)})
    path = tmp / "bad.pt"
    path.write_bytes(_rezip(good, "data/0", lambda b: b[: len(b) // 2]))
    return path


def _pt_byteorder(tmp: Path) -> Path:
    good = _saved({"latent": torch.randn(1, 4, 2, 2)})
    path = tmp / "bad.pt"
    path.write_bytes(_rezip(good, "byteorder", lambda b: b"littl"))
    return path


def _file(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data)
        return path

    return make


def _cut(make: Callable[[Path], Path], keep: float) -> Callable[[Path], Path]:
    def cut(tmp: Path) -> Path:
        path = make(tmp)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
        return path

    return cut


class _Payload:
    """A pickle that would create a file when unpickled."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.target}",))


def _pickle_with_code(tmp: Path) -> Path:
    path = tmp / "evil.pt"
    torch.save({"latent": torch.zeros(1, 4, 2, 2), "x": _Payload(tmp / "pwned")}, path)
    return path


def _npz_damaged_deflate(tmp: Path) -> Path:
    buf = io.BytesIO()
    np.savez_compressed(buf, latent=np.random.default_rng(0).normal(size=(1, 4, 16, 16)).astype(np.float32))
    data = bytearray(buf.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 200, start + 260):
        data[i] ^= 0x5A
    path = tmp / "bad.npz"
    path.write_bytes(bytes(data))
    return path


def _npz_method(tmp: Path) -> Path:
    data = bytearray(_written(tmp, "good.npz", "npz").read_bytes())
    for sig, at in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        i = 0
        while (i := data.find(sig, i)) >= 0:
            data[i + at : i + at + 2] = struct.pack("<H", 14)  # LZMA, which numpy.savez never writes
            i += 4
    path = tmp / "bad.npz"
    path.write_bytes(bytes(data))
    return path


def _npz_record(tmp: Path, text: str) -> Path:
    buf = io.BytesIO()
    np.savez(buf, latent=np.zeros((1, 4, 4, 4), np.float32), __latentbridge__=np.array(text))
    path = tmp / "bad.npz"
    path.write_bytes(buf.getvalue())
    return path


def _sidecar(tmp: Path) -> Path:
    path = _written(tmp, "in.npy", "npy")
    side = tmp / "in.npy.latentbridge.json"
    side.write_text(json.dumps({**json.loads(side.read_text()), "latentbridge.format": 5}))
    return path


def _diffusers_folder(tmp: Path, config: str) -> Path:
    from latentbridge.models.vaeapprox import VAEApprox

    folder = tmp / "vae"
    folder.mkdir()
    (folder / "config.json").write_text(config)
    safetensors.torch.save_file(VAEApprox(4).state_dict(), str(folder / "diffusion_pytorch_model.safetensors"))
    return folder


def _weights(tmp: Path, *, legacy: bool = False) -> Path:
    from latentbridge.models.vaeapprox import VAEApprox

    path = tmp / "vae.pt"
    path.write_bytes(_saved(VAEApprox(4).state_dict(), legacy=legacy))
    return path


def _onnx_unknown_type(tmp: Path) -> Path:
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 4, 1, 1], [0.1] * 12)
    weight.data_type = 99  # no such element type
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        [weight],
    )
    path = tmp / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


def _fifo(tmp: Path) -> Path:
    path = tmp / "pipe.latent"
    os.mkfifo(path)
    return path


def _socket(tmp: Path) -> Path:
    path = tmp / "s.latent"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the socket file stays
    return path


def _loop(tmp: Path) -> Path:
    (tmp / "a.latent").symlink_to(tmp / "b.latent")
    (tmp / "b.latent").symlink_to(tmp / "a.latent")
    return tmp / "a.latent"


def _dangling(tmp: Path) -> Path:
    (tmp / "gone.latent").symlink_to(tmp / "nothing-here.latent")
    return tmp / "gone.latent"


def _preview(path: Path) -> Any:
    from latentbridge.previews import preview

    return preview(read_latent(path))


def _bridge_with(tmp: Path, change: Callable[[dict], None]) -> Path:
    from latentbridge.bridge import META_KEY, BridgeConfig, BridgeNet

    configs = {
        k: BridgeConfig(4, 4, 8, 8, hidden=8, blocks=1 if k == "conv" else 0, kind=k) for k in ("linear", "conv")
    }
    tensors = {f"{k}.{n}": v for k, cfg in configs.items() for n, v in BridgeNet(cfg).state_dict().items()}
    end = {"vae_name": "zoo-a", "vae_sha256": "", "format": "zoo-a", "space": "raw", "channels": 4, "spatial_ratio": 8}
    meta = {"version": 1, "src": end, "dst": dict(end), "configs": {k: c.to_dict() for k, c in configs.items()}}
    change(meta)
    path = tmp / "bridge.safetensors"
    safetensors.torch.save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta)})
    return path


def _bridge(path: Path) -> Any:
    from latentbridge.bridge import load_bridge

    return load_bridge(path)


def _fit_deep(tmp: Path) -> Path:
    path = tmp / ("ab" * 32 + ".json")
    path.write_text('{"kind": ' + "[" * 5000 + "]" * 5000 + "}")
    return path


def _load_fit(path: Path) -> Any:
    from latentbridge.previews import load_fit

    return load_fit(path)


DEEP = "[" * 100_000 + "]" * 100_000
INSPECT = ("inspect", "{path}")
CATALOGUE: dict[str, Bad] = {
    # damaged pickles (.pt): refused as damaged, at the byte, never as UnicodeDecodeError/IndexError/KeyError…
    "pt-zip-truncated": Bad(
        _cut(lambda t: _written(t, "in.pt", "pt"), 0.6),
        read_latent,
        FileFormatError,
        r"damaged or truncated zip",
        INSPECT,
    ),
    "pt-legacy-truncated": Bad(
        _cut(_file("in.pt", _saved({"latent": torch.randn(1, 4, 2, 2)}, legacy=True)), 0.3),
        read_latent,
        FileFormatError,
        r"this \.pt file is truncated or corrupt at byte \d+",
        INSPECT,
    ),
    "pt-legacy-unknown-opcode": Bad(
        _pt_legacy_bad_opcode, read_latent, FileFormatError, r"truncated or corrupt at byte \d+ \(in the object pickle"
    ),
    "pt-zip-unknown-opcode": Bad(
        _pt_zip_bad_opcode,
        read_latent,
        FileFormatError,
        r"corrupt at byte \d+ \(data\.pkl byte \d+: at position",
        INSPECT,
    ),
    "pt-zip-string-not-utf8": Bad(
        _pt_zip_bad_utf8, read_latent, FileFormatError, r"truncated or corrupt at byte \d+ \(data\.pkl byte \d+"
    ),
    "pt-storage-shorter-than-declared": Bad(
        _pt_short_storage,
        read_latent,
        FileFormatError,
        r"storage '0' \(64 × FloatStorage\) takes 256 B \(256 bytes\), more than the 128 bytes the file holds",
    ),
    "pt-byteorder-record": Bad(_pt_byteorder, read_latent, FileFormatError, r"its byteorder record says b'littl'"),
    "pt-pickle-with-code": Bad(
        _pickle_with_code, read_latent, FileFormatError, r"refused to load this pickle: it references posix\.system"
    ),
    "pt-weights-truncated": Bad(
        _cut(lambda t: _weights(t, legacy=True), 0.02),
        describe,
        FileFormatError,
        r"its 16 storages takes 204\.8 KiB \(209708 bytes\), more than the \d+ bytes the file holds for it: the "
        r"file is truncated",
        INSPECT,
    ),
    # damaged .npy headers: parsed safely, never a TokenError/SyntaxError, never allocated from a wild shape
    "npy-header-unterminated": Bad(
        _file("in.npy", _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4,")),
        read_latent,
        FileFormatError,
        r"damaged \.npy header \(the header is not a Python literal: SyntaxError",
        INSPECT,
    ),
    "npy-shape-beyond-file": Bad(
        _file("in.npy", _npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4, 1048576, 1048576), }")),
        read_latent,
        FileFormatError,
        r"array \[1, 4, 1048576, 1048576\] float32 takes 16\.0 TiB .*, more than the 64 bytes the file holds",
    ),
    "npy-object-array": Bad(
        _file("in.npy", _npy("{'descr': '|O', 'fortran_order': False, 'shape': (1, 4, 2, 2), }")),
        lambda p: read_latent(p),
        FileFormatError,
        r"holds Python objects \(a pickle\); latentbridge never unpickles them|no array here could be a latent",
    ),
    "npy-fortran-order-not-bool": Bad(
        _file("in.npy", _npy("{'descr': '<f4', 'fortran_order': 1, 'shape': (1, 4, 2, 2), }")),
        read_latent,
        FileFormatError,
        r"fortran_order must be True or False, found 1",
    ),
    "npy-header-nested": Bad(
        _file("in.npy", _npy("{'descr': '<f4', 'fortran_order': False, 'shape': " + "(" * 200 + ")" * 200 + "}")),
        read_latent,
        FileFormatError,
        r"the header nests 201 levels deep",
    ),
    # zip streams: sizes checked before decompressing, damaged streams and methods named
    "npz-4gib-zero-member": Bad(
        lambda t: _zero_bomb_npz(t / "bomb.npz"),
        read_latent,
        FileFormatError,
        r"array 'latent' \[1, 4, 16384, 16384\] float32 would take 4\.0 GiB in memory, above the 1\.0 GiB",
    ),
    "npz-damaged-deflate": Bad(
        _npz_damaged_deflate, read_latent, FileFormatError, r"a damaged or truncated \.npz archive \(", INSPECT
    ),
    "npz-unsupported-method": Bad(
        _npz_method, read_latent, FileFormatError, r"uses zip compression method 14|damaged or truncated"
    ),
    # safetensors headers whose fields have the wrong JSON types
    "st-dtype-is-a-number": Bad(
        lambda t: _edit_header(t, lambda h: {**h, "latent_tensor": {**h["latent_tensor"], "dtype": 5}}),
        read_latent,
        FileFormatError,
        r"entry 'latent_tensor' has dtype '5' \(the number 5\); safetensors dtypes are",
        INSPECT,
    ),
    "st-shape-of-strings": Bad(
        lambda t: _edit_header(t, lambda h: {**h, "latent_tensor": {**h["latent_tensor"], "shape": ["1", "4"]}}),
        read_latent,
        FileFormatError,
        r"entry 'latent_tensor' has shape \['1', '4'\]: expected a list of non-negative integers",
    ),
    "st-offsets-of-strings": Bad(
        lambda t: _edit_header(t, lambda h: {**h, "latent_tensor": {**h["latent_tensor"], "data_offsets": ["0", "9"]}}),
        read_latent,
        FileFormatError,
        r"has data_offsets \['0', '9'\]: expected \[begin, end\]",
    ),
    "st-offset-infinite": Bad(
        lambda t: _edit_header(
            t,
            lambda h: json.dumps({**h, "latent_tensor": {**h["latent_tensor"], "data_offsets": [0, 7**20]}}).replace(
                str(7**20), "1e999"
            ),
        ),
        read_latent,
        FileFormatError,
        r"has data_offsets \[0, inf\]",
    ),
    "st-deep-nesting": Bad(
        lambda t: _edit_header(t, lambda h: json.dumps(h)[:-1] + ', "x": ' + DEEP + "}"),
        read_latent,
        FileFormatError,
        r"corrupt safetensors header \(nested 100001 levels deep; latentbridge reads 64 at most",
        INSPECT,
    ),
    "st-metadata-not-strings": Bad(
        lambda t: _edit_header(t, lambda h: {**h, "__metadata__": {"latentbridge.format": 5}}),
        read_latent,
        FileFormatError,
        r"__metadata__ must map strings to strings",
    ),
    "st-weights-header-nested": Bad(
        lambda t: _edit_header(t, lambda h: json.dumps(h)[:-1] + ', "x": ' + DEEP + "}", "vae.safetensors"),
        describe,
        FileFormatError,
        r"corrupt safetensors header \(nested",
    ),
    # damaged images: truncated, broken chunks, decompression-bomb sizes (refused before decoding)
    "png-truncated": Bad(_cut(_png, 0.7), load_image, FileFormatError, r"the PNG data is damaged"),
    "png-damaged-image-data": Bad(
        lambda t: _file("bad.png", _png_bytes(_png_chunks(_png(t).read_bytes()), zero=b"IDAT"))(t),
        load_image,
        FileFormatError,
        r"the PNG data is damaged \(OSError: broken data stream",
    ),
    "png-broken-chunk-length": Bad(
        lambda t: _file("bad.png", _png_bytes(_png_chunks(_png(t).read_bytes()), short=b"IDAT"))(t),
        load_image,
        FileFormatError,
        r"(the PNG data is damaged|a damaged image file) \(SyntaxError: broken PNG file",
    ),
    "png-bomb-100000px": Bad(
        lambda t: _png_sized(t, 100_000, 100_000),
        load_image,
        FileFormatError,
        r"an image of 10000\.0 MP is above the 89\.5 MP latentbridge decodes",
        ("encode", "{path}", "--vae", "zoo-a", "-o", "{tmp}/out.latent"),
    ),
    "png-12000px": Bad(
        lambda t: _png_sized(t, 12_000, 12_000),
        load_image,
        FileFormatError,
        r"a 12000×12000 image \(144\.0 MP\) is above the 89\.5 MP",
    ),
    "png-zero-width": Bad(
        lambda t: _png_sized(t, 0, 16),
        load_image,
        FileFormatError,
        r"not an image Pillow can read|declares 0×16 pixels",
    ),
    "jpeg-truncated": Bad(
        _cut(lambda t: (Image.new("RGB", (64, 64), "red").save(t / "in.jpg", quality=90), t / "in.jpg")[1], 0.5),
        load_image,
        FileFormatError,
        r"(the JPEG data is damaged|a damaged image file) \(OSError: Truncated File Read",
    ),
    # our metadata records with wrong types
    "provenance-seed-a-string": Bad(
        lambda t: _edit_provenance(t, {"seed": "abc"}),
        read_latent,
        FileFormatError,
        r"damaged latentbridge\.provenance record \(provenance record: 'seed' is the string 'abc'; expected an "
        r"integer or null\)",
        INSPECT,
    ),
    "provenance-history-a-string": Bad(
        lambda t: _edit_provenance(t, {"history": "encode zoo-a"}),
        read_latent,
        FileFormatError,
        r"'history' is the string 'encode zoo-a'; expected a list of strings",
    ),
    "provenance-extra-a-number": Bad(
        lambda t: _edit_provenance(t, {"extra": 5}),
        read_latent,
        FileFormatError,
        r"'extra' is the number 5; expected an object",
    ),
    "provenance-tool-a-list": Bad(
        lambda t: _edit_provenance(t, {"tool": ["x"]}),
        read_latent,
        FileFormatError,
        r"'tool' is a list; expected a string",
    ),
    "provenance-nested-deep": Bad(
        lambda t: _edit_provenance(t, {"extra": json.loads("[" * 80 + "]" * 80)}),
        read_latent,
        FileFormatError,
        r"damaged latentbridge\.provenance record \(nested 81 levels deep",
    ),
    "sidecar-value-not-a-string": Bad(
        _sidecar, read_latent, FileFormatError, r"the values of latentbridge\.format are not strings"
    ),
    "npz-record-not-an-object": Bad(
        lambda t: _npz_record(t, "[1, 2]"), read_latent, FileFormatError, r"damaged __latentbridge__ record: expected"
    ),
    "png-record-a-list": Bad(
        lambda t: _png(t, latentbridge="[1, 2]"),
        read_png_metadata,
        FileFormatError,
        r"'latentbridge' text chunk holds a list, expected an object",
    ),
    "png-record-bad-crc": Bad(
        lambda t: _file("bad.png", _png_bytes(_png_chunks(_png(t, latentbridge="{}").read_bytes()), bad_crc=b"tEXt"))(
            t
        ),
        read_png_metadata,
        FileFormatError,
        r"the tEXt chunk at byte \d+ fails its CRC",
    ),
    "bridge-hidden-a-string": Bad(
        lambda t: _bridge_with(t, lambda m: m["configs"]["conv"].update(hidden="8")),
        _bridge,
        FileFormatError,
        r"unreadable bridge metadata",
    ),
    "bridge-huge-architecture": Bad(
        lambda t: _bridge_with(t, lambda m: m["configs"]["conv"].update(hidden=2**40)),
        _bridge,
        FileFormatError,
        r"configs\.hidden is '1099511627776', expected an integer from 0 to 65536",
    ),
    "preview-fit-nested": Bad(_fit_deep, _load_fit, FileFormatError, r"not a preview fit \(nested 5001 levels deep"),
    "config-json-nested": Bad(
        lambda t: _diffusers_folder(t, DEEP), describe, FileFormatError, r"damaged config\.json \(nested 100000 levels"
    ),
    "onnx-unknown-element-type": Bad(
        _onnx_unknown_type, describe, FileFormatError, r"its graph names an unknown tensor element type"
    ),
    # shapes and values a reader must not pass on
    "zero-size-dimension": Bad(
        lambda t: _written(t, latent=_latent(shape=(1, 4, 0, 8))),
        read_latent,
        FileFormatError,
        r"array 'latent_tensor' has shape \[1, 4, 0, 8\]: a dimension of size 0 holds no values",
        ("identify", "{path}"),
    ),
    "preview-all-nan": Bad(
        lambda t: _written(t, latent=_latent().replace(tensor=torch.full((1, 4, 8, 8), float("nan")))),
        _preview,
        NonFiniteError,
        r"the latent holds 256 NaN/inf values out of 256",
        ("preview", "{path}", "-o", "{tmp}/p.png"),
    ),
    "preview-1e30": Bad(
        lambda t: _written(
            t, latent=_latent().replace(tensor=torch.full((1, 4, 8, 8), 1e30).mul(torch.randn(1, 4, 8, 8).sign()))
        ),
        _preview,
        LatentBridgeError,
        r"the latent's values reach ±1e\+30, beyond ±65504",
        ("preview", "{path}", "-o", "{tmp}/p.png"),
    ),
    # not regular files: refused at once, never opened
    "fifo": Bad(_fifo, read_latent, FileFormatError, r"a named pipe \(FIFO\): reading it would wait", INSPECT),
    "character-device": Bad(
        lambda t: Path("/dev/zero"), read_latent, FileFormatError, r"/dev/zero: a character device"
    ),
    "socket": Bad(_socket, read_latent, FileFormatError, r"s\.latent: a socket, not a file"),
    "symlink-loop": Bad(_loop, read_latent, FileFormatError, r"a\.latent: a symbolic link loop", INSPECT),
    "dangling-symlink": Bad(_dangling, read_latent, MissingFileError, r"a symbolic link to .*nothing-here\.latent"),
    "folder": Bad(lambda t: t, read_latent, FileFormatError, r": a folder, not a latent or weight file"),
    "missing": Bad(lambda t: t / "absent.latent", read_latent, MissingFileError, r"absent\.latent: no such latent"),
}


def _needs(case_id: str) -> None:
    if case_id == "character-device" and not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero on this system")
    if case_id == "onnx-unknown-element-type":
        pytest.importorskip("onnx")


@pytest.mark.parametrize("case_id", list(CATALOGUE))
def test_the_reader_refuses_it_naming_the_file_and_the_problem(case_id: str, tmp_path: Path) -> None:
    _needs(case_id)
    case = CATALOGUE[case_id]
    path = case.make(tmp_path)
    with _deadline(60), pytest.raises(case.error, match=case.match) as caught:
        case.read(path)
    if not case_id.startswith("preview-"):  # value refusals name the latent, not a file (the CLI adds it)
        assert str(path) in str(caught.value) or path.name in str(caught.value)
    assert not (tmp_path / "pwned").exists()  # nothing from a pickle ever ran


@pytest.mark.parametrize("case_id", [k for k, v in CATALOGUE.items() if v.cli])
def test_the_cli_says_it_in_one_red_line(case_id: str, tmp_path: Path) -> None:
    _needs(case_id)
    case = CATALOGUE[case_id]
    path = case.make(tmp_path)
    args = [a.format(path=path, tmp=tmp_path) for a in case.cli]
    with _deadline(120):
        result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # an error we raised, not a crash
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    assert path.name in errors[0] and re.search(case.match, errors[0]), errors[0]  # what the API says, said
    assert not (tmp_path / "p.png").exists()  # a refused preview writes nothing


def test_the_4gib_bomb_is_refused_by_the_cli_under_a_3gib_address_space(tmp_path: Path) -> None:
    """Not allocated: with 3 GiB of address space an attempt to allocate the member would die of MemoryError."""
    bomb = _zero_bomb_npz(tmp_path / "bomb.npz")
    limit = 3 * 2**30

    def cap() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2"}
    code = "from latentbridge.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "inspect", str(bomb)], capture_output=True, text=True, env=env,
        preexec_fn=cap, timeout=300,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "would take 4.0 GiB in memory, above the 1.0 GiB" in errors[0], done.stderr


def test_missing_files_are_also_file_not_found_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):  # callers that caught FileNotFoundError still do
        read_latent(tmp_path / "absent.latent")


def test_a_damaged_pickle_names_the_byte_that_is_damaged(tmp_path: Path) -> None:
    data = bytearray(_saved({"latent": torch.randn(1, 4, 2, 2)}, legacy=True))
    at = _opcode_pushing(bytes(data), "latent", _legacy_object_offset(bytes(data)))
    data[at] = 0xFF
    path = tmp_path / "bad.pt"
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match=rf"truncated or corrupt at byte {at} "):
        read_latent(path)


def test_every_valid_container_still_reads(tmp_path: Path) -> None:
    """The guards refuse damage only: what latentbridge, torch and NumPy write reads back bit for bit."""
    lat = _latent()
    for container in ("latent", "safetensors", "pt", "npy", "npz"):
        got = read_latent(write_latent(lat, tmp_path / f"x.{container}", container=container))
        assert torch.equal(got.tensor, lat.tensor) and got.provenance == lat.provenance
    for legacy in (False, True):
        path = tmp_path / f"plain-{legacy}.pt"
        path.write_bytes(_saved({"latent": lat.tensor, "meta": {"k": (1, 2.5, None, True)}}, legacy=legacy))
        assert torch.equal(read_latent(path).tensor, lat.tensor)
    assert open_latent(_zero_size_is_only_refused_when_chosen(tmp_path)).key == "latent"


def _zero_size_is_only_refused_when_chosen(tmp: Path) -> Path:
    """A file with an empty side array (an unused mask) still reads its latent."""
    path = tmp / "with-mask.safetensors"
    safetensors.torch.save_file({"latent": torch.randn(1, 4, 4, 4), "mask": torch.zeros(0)}, str(path))
    return path


# --- batch runs survive one bad file -------------------------------------------------------------------------


def test_transfer_dir_records_a_bad_file_goes_on_and_retries_only_it(tmp_path: Path) -> None:
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(2):
        _written(src, f"l{i}.latent", latent=_latent(seed=i, shape=(1, 4, 4, 4)))
    good = (src / "l1.latent").read_bytes()
    (src / "l1.latent").write_bytes(good[: len(good) // 2])  # cut short
    _written(src, "l2.latent", latent=_latent(seed=2, shape=(1, 4, 4, 4)).replace(format=None, space="unknown"))
    (src / "notes.txt").write_text("not a latent")
    args = ["transfer", str(src), "--from-vae", "zoo-a", "--to-vae", "zoo-b", "-o", str(out)]

    first = runner.invoke(app, args)
    assert first.exit_code == 1 and isinstance(first.exception, SystemExit), first.output
    summary = " ".join(first.stdout.split())  # the console wraps at 80 columns
    assert "1 transferred" in summary and "2 failed" in summary and "1 not latents" in summary
    errors = [line for line in first.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and "Traceback" not in first.output  # one per failed file, then the summary
    assert errors[0].startswith("error: l1.latent: ") and "truncated" in errors[0]
    assert errors[1].startswith("error: l2.latent: ") and "space is unknown" in errors[1]
    manifest = json.loads((out / "latentbridge-transfer.json").read_text())
    assert set(manifest["files"]) == {"l0.latent", "l1.latent", "l2.latent"}
    assert "truncated" in manifest["files"]["l1.latent"]["error"] and "sha256" in manifest["files"]["l0.latent"]
    assert sorted(p.name for p in out.glob("*.latent")) == ["l0.latent"]

    (src / "l1.latent").write_bytes(good)  # fixed; l2 still has no format
    second = runner.invoke(app, args)
    assert second.exit_code == 1, second.output
    summary = " ".join(second.stdout.split())
    assert "1 transferred, 1 already complete (skipped)" in summary and "1 failed" in summary
    assert sorted(p.name for p in out.glob("*.latent")) == ["l0.latent", "l1.latent"]
    third = runner.invoke(app, [*args, "--format", "zoo-a", "--space", "raw"])  # another transfer: refused, whole
    assert third.exit_code == 1 and "holds the outputs of another transfer" in third.stderr


def test_report_lists_an_unreadable_file_and_reports_the_rest(tmp_path: Path) -> None:
    good, bad = _written(tmp_path, "good.latent"), _cut(lambda t: _written(t, "bad.latent"), 0.5)(tmp_path)
    page = tmp_path / "r.html"
    result = runner.invoke(app, ["report", str(good), str(bad), "-o", str(page)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    html = page.read_text()
    assert "Files that could not be read (1)" in html and "bad.latent" in html and "good.latent" in html
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "bad.latent" in errors[0] and "Traceback" not in result.output


# --- data loss -----------------------------------------------------------------------------------------------


def test_preview_never_replaces_its_input(tmp_path: Path) -> None:
    src = _written(tmp_path, "in.latent")
    before = src.read_bytes()
    for args in (["-o", str(src)], ["-o", str(src), "--overwrite"]):
        result = runner.invoke(app, ["preview", str(src), *args])
        assert result.exit_code != 0 and src.read_bytes() == before, result.output
    png = tmp_path / "in.png"  # a latent under a .png name, previewed onto itself through a link
    png.write_bytes(before)
    (tmp_path / "link.png").symlink_to(png)
    result = runner.invoke(app, ["preview", str(png), "-o", str(tmp_path / "link.png"), "--overwrite"])
    assert result.exit_code == 1 and "would destroy the input" in result.stderr and png.read_bytes() == before


@pytest.mark.parametrize("command", ["preview", "report"])
def test_an_existing_output_is_kept_without_overwrite(command: str, tmp_path: Path) -> None:
    src = _written(tmp_path, "in.latent")
    out = tmp_path / ("p.png" if command == "preview" else "r.html")
    out.write_bytes(b"mine")
    result = runner.invoke(app, [command, str(src), "-o", str(out)])
    assert result.exit_code == 1 and "already exists; pass --overwrite" in result.stderr and out.read_bytes() == b"mine"
    result = runner.invoke(app, [command, str(src), "-o", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() != b"mine"


# --- devices -------------------------------------------------------------------------------------------------


def test_a_device_this_torch_cannot_use_is_one_clear_line(tmp_path: Path) -> None:
    from latentbridge.weights import load_vae

    with pytest.raises(DeviceError, match=r"device 'banana' \(--device\) is not a device name"):
        load_vae("zoo-a", device="banana")
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        with pytest.raises(DeviceError, match=rf"this machine has {count} CUDA device"):
            load_vae("zoo-a", device=f"cuda:{count}")
        return
    with pytest.raises(DeviceError, match=r"device 'cuda' \(--device\): this torch .* (without CUDA|sees no GPU)"):
        load_vae("zoo-a", device="cuda")
    src = _written(tmp_path)
    result = runner.invoke(
        app, ["decode", str(src), "--vae", "zoo-a", "-o", str(tmp_path / "o.png"), "--device", "cuda"]
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "device 'cuda'" in errors[0] and "Traceback" not in result.output


def test_the_pickle_walk_agrees_with_pickle_on_what_it_builds() -> None:
    """The stack machine that finds storages rebuilds plain values exactly (the legacy storage-key list)."""
    from latentbridge.files._pickles import walk

    for value in (["0", "12", "x"], [1, 2**70, -3], ("a", ("b",), None, True), []):
        for protocol in (2, 4):
            assert walk(pickle.dumps(value, protocol=protocol)).value == (
                list(value) if isinstance(value, list) else value
            )
