"""Files a request may name: uploads (multipart, streamed to disk, size-limited) and files under the ``--root``
folders (relative paths only; ``..``, absolute paths and symlinks that leave a root are refused with 403)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from latentbridge import LatentBridgeError
from latentbridge.files import classify
from latentbridge.images import image_kind
from latentbridge.web._errors import ApiError

MAX_NAME = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._()+,=@ -]")
HEADER_SLACK = 64 * 1024  # multipart boundaries and part headers around the file's bytes


def safe_name(filename: str) -> str:
    """The last part of an uploaded file's name, reduced to harmless characters ("upload" when nothing is left).

    The name is kept because some readers use it (kohya caches' ``*_WxH_sd.npz``, musubi-tuner suffixes).
    """
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .")
    return (base or "upload")[-MAX_NAME:]


def file_kind(path: Path) -> tuple[str, str]:
    """("latent" | "weights" | "image" | "unknown", why it is unknown) from the file's content."""
    if image_kind(path):
        return "image", ""
    try:
        return classify(path), ""
    except (LatentBridgeError, ValueError, OSError) as exc:
        return "unknown", str(exc)


@dataclass(frozen=True, slots=True)
class Upload:
    """One uploaded file, kept under the server's work folder until it expires."""

    id: str
    name: str
    path: Path
    size: int
    sha256: str
    kind: str
    note: str
    created: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the server-side path is not shown)."""
        return {
            "id": self.id,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "kind": self.kind,
            "note": self.note,
            "created": self.created,
        }


class _TooLarge(Exception):
    pass


class Uploads:
    """The uploads of one server: stored as ``folder/<id>/<name>``, looked up by id, removed when expired."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._items: dict[str, Upload] = {}
        self._lock = threading.Lock()
        folder.mkdir(parents=True, exist_ok=True)

    def too_large(self, got: str) -> ApiError:
        limit = self.max_bytes
        return ApiError(
            413,
            f"the upload is {got}, over this server's limit of {limit:,} bytes ({limit / 2**20:.0f} MB): put the file "
            "under a --root folder and name it by path, or restart the server with a larger --max-upload-mb",
        )

    async def receive(self, request: Request) -> Upload:
        """Stream a ``multipart/form-data`` body with one ``file`` part to disk, hashing as it goes.

        Raises:
            ApiError: 413 past the size limit (from Content-Length before reading, or while streaming),
                400 for a body that is not multipart or has no ``file`` part.
        """
        mime, params = parse_options_header(request.headers.get("content-type", ""))
        boundary = params.get(b"boundary")
        if mime != b"multipart/form-data" or not boundary:
            raise ApiError(
                400,
                f"an upload is a multipart/form-data body with one 'file' part, got {mime.decode() or 'no body type'}: "
                "send it as a form (curl -F file=@latent.safetensors …)",
            )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes + HEADER_SLACK:
            raise self.too_large(f"{int(declared):,} bytes")
        upload_id = uuid.uuid4().hex
        folder = self.folder / upload_id
        folder.mkdir(parents=True)
        state: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "file": None, "name": "", "seen": False}
        digest = hashlib.sha256()
        size = 0

        def on_part_begin() -> None:
            state["headers"], state["field"], state["value"] = {}, b"", b""

        def on_header_field(data: bytes, start: int, end: int) -> None:
            state["field"] += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            state["value"] += data[start:end]

        def on_header_end() -> None:
            state["headers"][state["field"].lower()] = state["value"]
            state["field"], state["value"] = b"", b""

        def on_headers_finished() -> None:
            _, disp = parse_options_header(state["headers"].get(b"content-disposition", b""))
            if disp.get(b"name") == b"file" and b"filename" in disp and not state["seen"]:
                state["seen"] = True
                state["name"] = safe_name(disp[b"filename"].decode("utf-8", "replace"))
                state["file"] = open(folder / ".partial", "wb")  # noqa: SIM115 (closed in on_part_end / finally)

        def on_part_data(data: bytes, start: int, end: int) -> None:
            nonlocal size
            handle = state["file"]
            if handle is None:
                return
            chunk = data[start:end]
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            handle.write(chunk)
            digest.update(chunk)

        def on_part_end() -> None:
            if state["file"] is not None:
                state["file"].close()
                state["file"] = None

        callbacks: Any = {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        }
        parser = MultipartParser(boundary, callbacks)
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except _TooLarge:
            raise self.too_large(f"more than {self.max_bytes:,} bytes") from None
        except ValueError as exc:  # python-multipart's MultipartParseError is a ValueError
            raise ApiError(
                400, f"the multipart body cannot be parsed ({exc}): send it as a form with a 'file' part"
            ) from exc
        finally:
            if state["file"] is not None:
                state["file"].close()
            if not state["seen"] or size > self.max_bytes or not (folder / ".partial").exists():
                shutil.rmtree(folder, ignore_errors=True)
        if not state["seen"]:
            raise ApiError(400, "the form has no 'file' part with a file name: send the file as -F file=@NAME")
        path = folder / state["name"]
        os.replace(folder / ".partial", path)
        kind, note = file_kind(path)
        upload = Upload(upload_id, state["name"], path, size, digest.hexdigest(), kind, note, time.time())
        with self._lock:
            self._items[upload_id] = upload
        return upload

    def get(self, upload_id: str) -> Upload:
        """The upload with this id (404 when unknown or expired)."""
        with self._lock:
            found = self._items.get(upload_id)
        if found is None:
            raise ApiError(
                404, f"no upload {upload_id!r} (uploads expire; list them at GET /api/files): upload it again"
            )
        return found

    def all(self) -> list[Upload]:
        """Every upload kept, oldest first."""
        with self._lock:
            return sorted(self._items.values(), key=lambda u: u.created)

    def delete(self, upload_id: str) -> None:
        """Remove an upload and its file."""
        found = self.get(upload_id)
        with self._lock:
            self._items.pop(upload_id, None)
        shutil.rmtree(found.path.parent, ignore_errors=True)

    def expire(self, older_than: float) -> int:
        """Remove uploads created before ``older_than`` (seconds since the epoch); returns how many."""
        with self._lock:
            old = [u for u in self._items.values() if u.created < older_than]
            for u in old:
                del self._items[u.id]
        for u in old:
            shutil.rmtree(u.path.parent, ignore_errors=True)
        return len(old)


def resolve_under_root(roots: tuple[Path, ...], root: int, rel: str) -> Path:
    """The file (or folder) ``rel`` names inside ``roots[root]``, resolved.

    Raises:
        ApiError: 403 for an absolute path, ``..``, or a link leading out of the root (or when no root is
            served); 404 when the root index or the file does not exist.
    """
    if not roots:
        raise ApiError(403, "this server serves no folders: start it with --root DIR to name files by path")
    if not 0 <= root < len(roots):
        raise ApiError(404, f"no root {root}: this server serves roots 0..{len(roots) - 1} (GET /api/roots)")
    if not rel or "\x00" in rel:
        raise ApiError(400, "an empty path (or one with a NUL byte) names no file: give a path relative to the root")
    posix = PurePosixPath(rel.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(rel).is_absolute() or PureWindowsPath(rel).drive or rel.startswith("~"):
        raise ApiError(403, f"{rel[:200]!r} is an absolute path: name files relative to a root folder (GET /api/roots)")
    if ".." in posix.parts:
        raise ApiError(403, f"{rel[:200]!r} climbs out with '..': name files inside a root folder (GET /api/roots)")
    base = roots[root].resolve()
    shown = repr(rel) if len(rel) <= 200 else repr(rel[:200]) + "…"
    try:
        target = (base / posix).resolve()
        inside = target == base or target.is_relative_to(base)
        exists = target.exists()
    except OSError as exc:  # a name too long, a loop of links …
        raise ApiError(
            400, f"{shown} cannot be looked up in root {root} ({exc.strerror}): name an existing file"
        ) from exc
    if not inside:
        raise ApiError(403, f"{shown} is a link that leads out of root {root}: only files inside the roots are served")
    if not exists:
        raise ApiError(404, f"{shown} does not exist in root {root} (GET /api/browse lists the files)")
    return target


def listing(roots: tuple[Path, ...], root: int, rel: str = "") -> list[dict[str, Any]]:
    """The entries of a folder under a root (links that leave the root and hidden names left out)."""
    folder = resolve_under_root(roots, root, rel or ".")
    if not folder.is_dir():
        raise ApiError(400, f"{rel!r} is a file, not a folder: pass it as a path to inspect, check or decode")
    base = roots[root].resolve()
    out = []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if entry.name.startswith("."):
            continue
        real = entry.resolve()
        if real != base and not real.is_relative_to(base):
            continue
        is_dir = real.is_dir()
        out.append(
            {
                "name": entry.name,
                "path": str(PurePosixPath(*entry.relative_to(base).parts))
                if entry.is_relative_to(base)
                else entry.name,
                "dir": is_dir,
                "size": 0 if is_dir else real.stat().st_size,
            }
        )
    return out
