"""The :class:`Library`: scan folders into the SQLite index, list and find entries, and match provenance to files."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from latentbridge.errors import LibraryError
from latentbridge.formats import formats
from latentbridge.library._db import UPSERT, LibraryEntry, connect, entry_from_row, open_db, row_from_entry
from latentbridge.library._scan import Candidate, identify_candidate, walk
from latentbridge.provenance import Evidence
from latentbridge.weights.hashes import FileHashes, file_hashes

MIN_HASH_DIGITS = 8  # shorter hex strings match too many files to identify one
_HEX = re.compile(r"(?:0x)?([0-9a-fA-F]{8,64})")


class Cancel(Protocol):
    """Anything with ``is_set()`` (a ``threading.Event``): a scan stops between files once it is set."""

    def is_set(self) -> bool: ...


Progress = Callable[[int, int, str], None]  # (files done, files in all, the path being read)


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What one scan did.

    Attributes:
        roots: the folders scanned (absolute).
        found: candidates found (files and diffusers folders).
        added / updated / unchanged / removed: index rows written new, rewritten after a change, kept because
            size and mtime were unchanged (nothing read), and dropped because the file is gone.
        hashed: files whose bytes were read to hash them; hashed_bytes: how many bytes that was.
        errors: (path, why) for files that could not be read; they are indexed as "unreadable".
        skipped: folders skipped because they hold other kinds of weights (loras, embeddings …).
        seconds: wall time of the scan.
        cancelled: True when a cancel token stopped it early.
    """

    roots: tuple[str, ...]
    found: int
    added: int
    updated: int
    unchanged: int
    removed: int
    hashed: int
    hashed_bytes: int
    errors: tuple[tuple[str, str], ...]
    skipped: tuple[str, ...]
    seconds: float
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = {f: getattr(self, f) for f in self.__dataclass_fields__}
        out["roots"], out["skipped"] = list(self.roots), list(self.skipped)
        out["errors"] = [{"path": p, "error": e} for p, e in self.errors]
        return out

    def summary(self) -> str:
        """One line for humans."""
        parts = [
            f"{self.found} found",
            f"{self.added} added",
            f"{self.updated} updated",
            f"{self.unchanged} unchanged",
            f"{self.removed} removed",
            f"{self.hashed} hashed ({self.hashed_bytes / 1e6:.1f} MB)",
        ]
        if self.errors:
            parts.append(f"{len(self.errors)} unreadable")
        return f"scanned {', '.join(self.roots)} in {self.seconds:.2f} s: " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class NameMatch:
    """Entries a name or hash from the metadata matches, and how ("sha256 735e4c3a44", "file name", …)."""

    entries: tuple[LibraryEntry, ...]
    how: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"how": self.how, "entries": [e.to_dict() for e in self.entries]}


def _basename(name: str) -> str:
    return re.split(r"[\\/]", name.strip())[-1]


def _stem(name: str) -> str:
    base = _basename(name)
    return base.rsplit(".", 1)[0] if "." in base else base


class Library:
    """A local index of VAEs and checkpoints under an explicit ``home`` folder (``home/library.sqlite``).

    Holds only the path: every call opens its own connection, so one home can be shared by threads, processes
    and servers (WAL journaling lets readers run while a scan writes). The environment variable
    ``LATENTBRIDGE_HOME`` is read by the CLI only, never here.
    """

    def __init__(self, home: str | os.PathLike[str]) -> None:
        self.home = Path(home).expanduser().resolve()
        self.path = open_db(self.home)

    def __repr__(self) -> str:
        return f"Library({str(self.home)!r})"

    # --- scanning -----------------------------------------------------------------------------------------
    def scan(
        self,
        *dirs: str | os.PathLike[str],
        hash: bool = True,
        progress: Progress | None = None,
        cancel: Cancel | None = None,
    ) -> ScanReport:
        """Index the VAEs and checkpoints below ``dirs`` (see ``_scan`` for the layouts recognised).

        Incremental: a file whose size and mtime are unchanged since the last scan is not read again (neither its
        header nor its bytes); files gone from a scanned folder are dropped from the index.

        Args:
            dirs: folders to scan (a ComfyUI/A1111 ``models`` folder, one model folder, a Hugging Face cache …).
            hash: compute sha256, AutoV1 and the tensor sha256 of each new or changed file (reads the whole file,
                about 1 s per 500 MB); False indexes names and headers only (provenance hashes then cannot match).
            progress: called as ``progress(done, total, path)`` before each file is read.
            cancel: a token whose ``is_set()`` stops the scan between files (what was written stays).

        Raises:
            LibraryError: a folder does not exist.
        """
        start = time.perf_counter()
        roots = []
        for d in dirs:
            root = Path(d).expanduser().resolve()
            if not root.is_dir():
                raise LibraryError(f"cannot scan {d}: not a folder; pass the folder your models live in")
            roots.append(root)
        if not roots:
            raise LibraryError("scan needs at least one folder (e.g. ComfyUI/models)")
        counts = dict.fromkeys(("found", "added", "updated", "unchanged", "removed", "hashed", "hashed_bytes"), 0)
        errors: list[tuple[str, str]] = []
        skipped: list[str] = []
        cancelled = False
        for root in roots:
            found, skip = walk(root)
            skipped += [str(root / s) for s in skip]
            counts["found"] += len(found)
            with connect(self.path) as con:
                known = {
                    r["path"]: (r["size"], r["mtime_ns"], bool(r["sha256"]) or r["kind"] == "unreadable")
                    for r in con.execute(
                        "SELECT path, size, mtime_ns, sha256, kind FROM files WHERE root = ?", (str(root),)
                    )
                }
                seen: set[str] = set()
                for i, cand in enumerate(found):
                    if cancel is not None and cancel.is_set():
                        cancelled = True
                        break
                    key = os.path.abspath(cand.path)
                    seen.add(key)
                    try:
                        st = cand.stat_of.stat()
                    except OSError as exc:
                        errors.append((key, f"cannot stat ({exc})"))
                        continue
                    old = known.get(key)
                    if old is not None and old[0] == st.st_size and old[1] == st.st_mtime_ns and (old[2] or not hash):
                        counts["unchanged"] += 1
                        continue
                    if progress is not None:
                        progress(i, len(found), key)
                    entry, hashed_bytes, error = _index(cand, key, st, hash)
                    if error:
                        errors.append((key, error))
                    counts["hashed"] += bool(hashed_bytes)
                    counts["hashed_bytes"] += hashed_bytes
                    counts["updated" if old is not None else "added"] += 1
                    con.execute("BEGIN IMMEDIATE")
                    con.execute(UPSERT, row_from_entry(entry))
                    con.execute("COMMIT")
                if not cancelled:
                    gone = [p for p in known if p not in seen]
                    if gone:
                        con.execute("BEGIN IMMEDIATE")
                        con.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in gone])
                        con.execute("COMMIT")
                    counts["removed"] += len(gone)
            if cancelled:
                break
        return ScanReport(
            roots=tuple(str(r) for r in roots),
            errors=tuple(errors),
            skipped=tuple(skipped),
            seconds=time.perf_counter() - start,
            cancelled=cancelled,
            **counts,
        )

    # --- reading ------------------------------------------------------------------------------------------
    def _select(self, where: str = "", args: tuple[Any, ...] = ()) -> tuple[LibraryEntry, ...]:
        with connect(self.path) as con:
            rows = con.execute(f"SELECT * FROM files {where} ORDER BY kind, name, path", args).fetchall()
        return tuple(entry_from_row(r) for r in rows)

    def entries(self, kind: str | None = None) -> tuple[LibraryEntry, ...]:
        """Every indexed entry (of ``kind`` when given: "vae", "checkpoint", "diffusion_model", "other")."""
        return self._select("WHERE kind = ?", (kind,)) if kind else self._select()

    def find(self, query: str) -> tuple[LibraryEntry, ...]:
        """Entries matching ``query``: a hash prefix (≥ 8 hex digits: sha256/AutoV2, AutoV1, tensor sha256,
        modelspec hash), a registered format name (the family: "sdxl"), or else part of a name, path or repository."""
        q = query.strip()
        if not q:
            return ()
        m = _HEX.fullmatch(q)
        if m is not None:
            hits = self.by_hash(m.group(1), "")
            if hits.entries:
                return hits.entries
        if q in formats():
            return self._select("WHERE format = ? OR (',' || formats || ',') LIKE ?", (q, f"%,{q},%"))
        like = f"%{q.lower()}%"
        return self._select(
            "WHERE lower(name) LIKE ? OR lower(rel) LIKE ? OR lower(hf_repo) LIKE ? OR lower(title) LIKE ?",
            (like, like, like, like),
        )

    def by_hash(self, digest: str, kind: str) -> NameMatch:
        """Entries whose hash of ``kind`` ("sha256" — a prefix such as AutoV2's 10 digits —, "autov1",
        "tensor_sha256"; "" tries them all) matches ``digest``."""
        h = digest.strip().lower().removeprefix("0x")
        if len(h) < MIN_HASH_DIGITS or not _HEX.fullmatch(h):
            return NameMatch((), "")
        tried = {
            "sha256": ("sha256 LIKE ?", f"{h}%"),
            "autov1": ("autov1 = ?", h),
            "tensor_sha256": ("(tensor_sha256 LIKE ? OR modelspec_hash LIKE ?)", f"{h}%"),
        }
        for name in (kind,) if kind else tuple(tried):
            clause, arg = tried[name]
            hits = self._select(f"WHERE {clause}", (arg, arg) if "OR" in clause else (arg,))
            if hits:
                label = {"sha256": "sha256", "autov1": "AutoV1 hash", "tensor_sha256": "tensor sha256"}[name]
                return NameMatch(hits, f"{label} {h}")
        return NameMatch((), "")

    def by_name(self, name: str) -> NameMatch:
        """Entries a recorded name matches, best way first: the relative path ComfyUI records
        ("SDXL/sdxl_vae.safetensors"), the file name, the file name in any case, or A1111's extension-less model
        name (folders joined with "_"); Hugging Face repositories match by "org/name" or "name"."""
        text = name.strip().replace("\\", "/")
        if not text:
            return NameMatch((), "")
        base, stem = _basename(text), _stem(text)
        every = self._select()
        tests: list[tuple[str, Callable[[LibraryEntry], bool]]] = [
            ("path", lambda e: e.rel == text or e.path == text),
            ("file name", lambda e: e.name == base),
            ("file name (ignoring case)", lambda e: e.name.lower() == base.lower()),
            (
                "A1111 model name",
                lambda e: (
                    e.stem == stem
                    or e.rel.rsplit(".", 1)[0].replace("/", "_") == text
                    or e.stem.lower() == stem.lower()
                ),
            ),
            ("Hugging Face repository", lambda e: bool(e.hf_repo) and text in (e.hf_repo, e.hf_repo.split("/")[-1])),
        ]
        for how, test in tests:
            hits = tuple(e for e in every if test(e))
            if hits:
                return NameMatch(hits, how)
        return NameMatch((), "")

    def match(self, evidence: Evidence) -> NameMatch:
        """Entries one piece of evidence names: by its hash when it has one, else by its name."""
        if evidence.hash:
            return self.by_hash(evidence.hash, evidence.hash_kind)
        return self.by_name(evidence.name) if evidence.name else NameMatch((), "")

    def counts(self) -> dict[str, int]:
        """Entries per kind."""
        with connect(self.path) as con:
            return {r[0]: r[1] for r in con.execute("SELECT kind, count(*) FROM files GROUP BY kind")}


def _index(cand: Candidate, key: str, st: os.stat_result, hash: bool) -> tuple[LibraryEntry, int, str]:
    """(entry, bytes hashed, error) for one candidate."""
    ident = identify_candidate(cand)
    hashes, hashed, error = FileHashes("", ""), 0, ""
    if ident.kind == "unreadable":
        error = ident.note
    if hash and ident.hash_file is not None:
        try:
            hashes = file_hashes(ident.hash_file)
            hashed = ident.hash_file.stat().st_size
        except OSError as exc:
            error = error or f"cannot read it to hash ({exc})"
    note = (
        ident.note
        if ident.hash_file is not None or not hash
        else (ident.note + "; sharded weights: not hashed").strip("; ")
    )
    entry = LibraryEntry(
        path=key,
        root=str(cand.root),
        name=cand.path.name,
        rel=cand.rel,
        folder=cand.folder,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        kind=ident.kind,
        has_vae=ident.has_vae,
        has_encoder=ident.has_encoder,
        has_decoder=ident.has_decoder,
        architecture=ident.architecture,
        format=ident.format,
        formats=ident.formats,
        format_source=ident.format_source,
        sha256=hashes.sha256,
        autov1=hashes.autov1,
        tensor_sha256=hashes.tensor_sha256,
        modelspec_hash=ident.modelspec_hash,
        modelspec_arch=ident.modelspec_arch,
        title=ident.title,
        hf_repo=cand.hf_repo,
        note=note,
        scanned_at=time.time(),
    )
    return entry, hashed, error


def distinct_files(entries: Iterable[LibraryEntry]) -> list[list[LibraryEntry]]:
    """Entries grouped by content: one group per sha256 (an unhashed entry is a group of its own)."""
    groups: dict[str, list[LibraryEntry]] = {}
    for e in entries:
        groups.setdefault(e.sha256 or f"path:{e.path}", []).append(e)
    return list(groups.values())
