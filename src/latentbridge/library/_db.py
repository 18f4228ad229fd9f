"""The library's SQLite file: schema (versioned), connections (WAL, one per call), rows <-> :class:`LibraryEntry`.

One connection per operation: a :class:`~latentbridge.library.Library` holds only its path, so threads, processes
and a web server can share one home. WAL journaling lets readers run while a scan writes; each scanned file is
written in its own short transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from latentbridge.errors import LibraryError
from latentbridge.weights.hashes import autov2

DB_NAME = "library.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # a writer waits this long for another writer's transaction (a scan commits per file)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    name TEXT NOT NULL,
    rel TEXT NOT NULL,
    folder TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    has_vae INTEGER NOT NULL,
    has_encoder INTEGER NOT NULL,
    has_decoder INTEGER NOT NULL,
    architecture TEXT NOT NULL,
    format TEXT NOT NULL,
    formats TEXT NOT NULL,
    format_source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    autov1 TEXT NOT NULL,
    tensor_sha256 TEXT NOT NULL,
    modelspec_hash TEXT NOT NULL,
    modelspec_arch TEXT NOT NULL,
    title TEXT NOT NULL,
    hf_repo TEXT NOT NULL,
    note TEXT NOT NULL,
    scanned_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_sha256 ON files (sha256);
CREATE INDEX IF NOT EXISTS files_name ON files (name COLLATE NOCASE);
CREATE INDEX IF NOT EXISTS files_root ON files (root);
"""

KINDS: dict[str, str] = {
    "vae": "a VAE (encoder and/or decoder)",
    "checkpoint": "a full checkpoint (with or without a baked-in VAE)",
    "diffusion_model": "a diffusion model without a VAE (UNet/DiT file, GGUF)",
    "other": "a weight file that is none of these (text encoder, LoRA, preview decoder …)",
    "unreadable": "a file that could not be read (the note says why)",
}


@dataclass(frozen=True, slots=True)
class LibraryEntry:
    """One indexed weight file (or diffusers folder).

    Attributes:
        path: where it is (absolute; a Hugging Face snapshot link is kept as the link users see).
        root: the folder the scan that found it was given.
        name: its file (or folder) name: what ComfyUI's loaders and A1111's "VAE" record.
        rel: its path inside the model folder it sits in ("SDXL/sdxl_vae.safetensors", as ComfyUI lists it), or
            inside ``root``.
        folder: the kind of model folder it sits in ("vae", "checkpoints", "Stable-diffusion", "unet", …) or "".
        size: bytes; mtime_ns: modification time. A rescan re-reads a file only when either changed.
        kind: a key of :data:`KINDS`.
        has_vae / has_encoder / has_decoder: from the header (weights.describe).
        architecture, format, formats, format_source: what weights.describe found ("" when nothing).
        sha256, autov1, tensor_sha256: the file's hashes ("" when not computed; see weights.hashes).
        modelspec_hash, modelspec_arch, title: ``modelspec.hash_sha256`` / ``architecture`` / ``title`` metadata.
        hf_repo: "org/name" for a file inside a Hugging Face cache.
        note: what describe or the scan said worth knowing (why a file is unreadable, a sharded folder …).
        scanned_at: when it was last read (seconds since the epoch).
    """

    path: str
    root: str
    name: str
    rel: str
    folder: str
    size: int
    mtime_ns: int
    kind: str
    has_vae: bool
    has_encoder: bool
    has_decoder: bool
    architecture: str
    format: str
    formats: tuple[str, ...]
    format_source: str
    sha256: str
    autov1: str
    tensor_sha256: str
    modelspec_hash: str
    modelspec_arch: str
    title: str
    hf_repo: str
    note: str
    scanned_at: float

    @property
    def autov2(self) -> str:
        """A1111 "Model hash"/"VAE hash" and Civitai AutoV2: the sha256's first 10 hex digits ("" without one)."""
        return autov2(self.sha256)

    @property
    def stem(self) -> str:
        """The name without its extension (A1111's "Model" is written this way)."""
        return self.name.rsplit(".", 1)[0] if "." in self.name else self.name

    def describe(self) -> str:
        """One line: kind, format, path, short hash."""
        vae = ""
        if self.kind == "checkpoint":
            vae = ", baked-in VAE" if self.has_vae else ", no VAE"
        fmt = self.format or ("/".join(self.formats) if self.formats else "format unknown")
        sha = f", sha256 {self.sha256[:12]}…" if self.sha256 else ", not hashed"
        return f"{self.kind}{vae} ({fmt}): {self.path}{sha}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (with the derived AutoV2)."""
        out = asdict(self)
        out["formats"] = list(self.formats)
        out["autov2"] = self.autov2
        return out


_COLUMNS = tuple(f.name for f in fields(LibraryEntry))
_BOOLS = ("has_vae", "has_encoder", "has_decoder")


def entry_from_row(row: sqlite3.Row) -> LibraryEntry:
    values = {k: row[k] for k in _COLUMNS}
    for k in _BOOLS:
        values[k] = bool(values[k])
    values["formats"] = tuple(x for x in values["formats"].split(",") if x)
    return LibraryEntry(**values)


def row_from_entry(entry: LibraryEntry) -> tuple[Any, ...]:
    values = asdict(entry)
    values["formats"] = ",".join(entry.formats)
    for k in _BOOLS:
        values[k] = int(values[k])
    return tuple(values[k] for k in _COLUMNS)


UPSERT = f"INSERT OR REPLACE INTO files ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


def open_db(home: Path) -> Path:
    """Create (or check) the library in ``home``; returns the database path.

    Raises:
        LibraryError: ``home`` cannot be created, the file is not a latentbridge library, or a newer
            latentbridge wrote it.
    """
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LibraryError(f"cannot create the library home {home} ({exc}): choose another --home") from exc
    path = home / DB_NAME
    with connect(path, create=True) as con:
        con.execute("PRAGMA journal_mode=WAL")
        found = con.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        version = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() if found else None
        if version is not None and int(version[0]) > SCHEMA_VERSION:
            raise LibraryError(
                f"{path} was written by a newer latentbridge (library schema {version[0]}; this one reads "
                f"{SCHEMA_VERSION}): upgrade latentbridge, or use another --home"
            )
        if version is None:
            con.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):  # executescript would commit first: one transaction instead
                if statement.strip():
                    con.execute(statement)
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            con.execute("COMMIT")
    return path


@contextmanager
def connect(path: Path, *, create: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode (transactions are explicit), rows by column name; closed after use.

    Raises:
        LibraryError: the file is not an SQLite database, or is missing (``create=False``).
    """
    if not create and not path.is_file():
        raise LibraryError(f"no library at {path.parent}: run `latentbridge library scan DIR --home {path.parent}`")
    try:
        con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise LibraryError(f"cannot open the library {path} ({exc})") from exc
    con.row_factory = sqlite3.Row
    try:
        yield con
    except sqlite3.DatabaseError as exc:
        raise LibraryError(
            f"{path} is not a usable latentbridge library ({exc}): move it away, or use another --home"
        ) from exc
    finally:
        con.close()
