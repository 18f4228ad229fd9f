"""Loaded VAEs, cached by the content hash of their files with a memory bound (least recently used go first).

One loaded VAE serves every job that names the same bytes, at once: the codec runs other dtypes on cast copies
kept on the VAE value and tiled GroupNorm statistics per thread, so concurrent jobs get what serial ones get.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentbridge import VAE, load_vae
from latentbridge.weights import sha256_file

CacheKey = tuple[str, str]  # (content hash, format asked for or "")


def module_bytes(vae: VAE, fallback: int = 0) -> int:
    """Bytes of a VAE's parameters and buffers (``fallback``, e.g. the file size, for ONNX and plain functions)."""
    module = vae.module
    if module is None:
        return fallback
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(frozen=True, slots=True)
class _Entry:
    vae: VAE
    nbytes: int
    source: str


class VaeCache:
    """VAEs loaded once per content hash (and format), kept while their bytes fit in ``max_bytes``."""

    def __init__(self, max_bytes: int, device: str = "cpu") -> None:
        self.max_bytes = max_bytes
        self.device = device
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[CacheKey, threading.Lock] = {}
        self._hashes: dict[tuple[str, int, int], str] = {}
        self.hits = 0
        self.misses = 0
        self.evicted = 0

    def content_hash(self, path: Path) -> str:
        """sha256 of a file (remembered by path, size and mtime), or of a folder's file list with sizes and times."""
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        with self._lock:
            known = self._hashes.get(key)
        if known is not None:
            return known
        if path.is_dir():
            h = hashlib.sha256()
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                s = f.stat()
                h.update(f"{f.relative_to(path)}\0{s.st_size}\0{s.st_mtime_ns}\n".encode())
            digest = "dir:" + h.hexdigest()
        else:
            digest = sha256_file(path)
        with self._lock:
            self._hashes[key] = digest
        return digest

    def get(self, spec: str, sha: str, format: str | None = None, size_hint: int = 0, display: str = "") -> VAE:
        """The VAE ``spec`` (a path or zoo name whose bytes hash to ``sha``) names, loaded once.

        ``display``: the name the VAE goes by in results and messages (the first load's; default ``spec``).
        Concurrent requests for the same key wait for one load; other keys load in parallel.
        """
        key = (sha, format or "")
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found.vae
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                found = self._entries.get(key)
                if found is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return found.vae
            vae = load_vae(spec, format=format, device=self.device, part="available")
            if display and display != vae.name:
                vae = dataclasses.replace(vae, name=display)
            entry = _Entry(vae, module_bytes(vae, size_hint), spec)
            with self._lock:
                self.misses += 1
                self._entries[key] = entry
                self._loading.pop(key, None)
                self._evict(keep=key)
        return vae

    def _evict(self, keep: CacheKey) -> None:
        total = sum(e.nbytes for e in self._entries.values())
        for key in list(self._entries):
            if total <= self.max_bytes:
                break
            if key == keep:
                continue
            total -= self._entries.pop(key).nbytes
            self.evicted += 1

    def to_dict(self) -> dict[str, Any]:
        """What is cached: each VAE's name, hash and bytes, the bound, hits and misses."""
        with self._lock:
            entries = [
                {"name": e.vae.name, "sha256": k[0], "format": k[1] or None, "bytes": e.nbytes}
                for k, e in self._entries.items()
            ]
        return {
            "entries": entries,
            "bytes": sum(e["bytes"] for e in entries),
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "misses": self.misses,
            "evicted": self.evicted,
        }
