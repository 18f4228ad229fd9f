"""Benchmark: the model library's scan — first scan (headers + every hash), rescan of an unchanged tree (nothing
read), rescan after one file changed, names-only scan, and ``resolve_vae`` of a ComfyUI latent.

The tree is a ComfyUI-style ``models`` folder built in a temporary directory: ``--small`` copies of the zoo VAEs
(3 MB each) in ``models/vae`` and sub-folders, plus ``--large`` synthetic checkpoint-sized safetensors files of
``--large-mb`` MB in ``models/checkpoints`` (random bytes after a valid header: hashing cost is what matters, and
it depends on size only). Every timing is the median of ``--repeats`` runs, each with a fresh library home; the OS
page cache is warm after the first run (the numbers are for hashing, not for cold disks).

Usage::

    nice -n 10 python benchmarks/bench_library.py                      # 24 small + 2 × 320 MB, 3 repeats
    python benchmarks/bench_library.py --small 8 --large 1 --large-mb 64 --repeats 3

Writes benchmarks/results/library.json and library.md (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import torch

from latentbridge.files._containers import atomic_write
from latentbridge.library import Library, resolve_vae
from latentbridge.provenance import Evidence, ProvenanceReport
from latentbridge.weights import hashes
from latentbridge.zoo import ZOO_NAMES, zoo_path

RESULTS = Path(__file__).resolve().parent / "results"


def _large_file(path: Path, size_mb: int, seed: int) -> None:
    """A safetensors file of one uint8 tensor holding ``size_mb`` MB of random bytes (a checkpoint's size)."""
    n = size_mb * 2**20
    header = json.dumps({"model.diffusion_model.w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    header += b" " * (-len(header) % 8)
    g = torch.Generator().manual_seed(seed)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for _ in range(size_mb):
            f.write(torch.randint(0, 256, (2**20,), dtype=torch.uint8, generator=g).numpy().tobytes())


def build_tree(root: Path, small: int, large: int, large_mb: int) -> tuple[Path, int]:
    models = root / "models"
    for i in range(small):
        name = ZOO_NAMES[i % len(ZOO_NAMES)]
        dest = models / "vae" / f"set{i // 8}" / f"{name}-{i}.safetensors"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(zoo_path(name), dest)
    (models / "checkpoints").mkdir(parents=True, exist_ok=True)
    for i in range(large):
        _large_file(models / "checkpoints" / f"model-{i}.safetensors", large_mb, i)
    total = sum(p.stat().st_size for p in models.rglob("*") if p.is_file())
    return models, total


def run(models: Path, homes: Path, repeat: int) -> dict[str, float]:
    home = homes / f"home-{repeat}"
    lib = Library(home)
    t = {}
    hashes.clear_cache()  # the per-process cache would make every run after the first free
    start = time.perf_counter()
    first = lib.scan(models)
    t["first scan"] = time.perf_counter() - start
    start = time.perf_counter()
    again = lib.scan(models)
    t["rescan, unchanged"] = time.perf_counter() - start
    if again.hashed or again.unchanged != first.found:
        raise RuntimeError(f"rescan read files: {again.summary()}")
    one = next(models.rglob("*.safetensors"))
    st = one.stat()
    os.utime(one, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    start = time.perf_counter()
    changed = lib.scan(models)
    t["rescan, one small file changed"] = time.perf_counter() - start
    if changed.hashed != 1:
        raise RuntimeError(f"expected one file re-read: {changed.summary()}")
    names = Library(homes / f"names-{repeat}")
    start = time.perf_counter()
    names.scan(models, hash=False)
    t["first scan, --no-hash"] = time.perf_counter() - start
    evidence = Evidence("vae", "decoded", "ComfyUI prompt", f"set0/{ZOO_NAMES[0]}-0.safetensors")
    start = time.perf_counter()
    resolve_vae(ProvenanceReport((evidence,), (), ("ComfyUI prompt",)), lib)
    t["resolve_vae (name)"] = time.perf_counter() - start
    t["files"] = first.found
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=24)
    ap.add_argument("--large", type=int, default=2)
    ap.add_argument("--large-mb", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        models, total = build_tree(Path(tmp), args.small, args.large, args.large_mb)
        runs = [run(models, Path(tmp), r) for r in range(args.repeats)]
    keys = [k for k in runs[0] if k != "files"]
    medians = {k: statistics.median(r[k] for r in runs) for k in keys}
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "files": runs[0]["files"],
        "bytes": total,
        "repeats": args.repeats,
        "median_s": medians,
        "runs_s": runs,
        "hash_throughput_MB_s": total / 1e6 / medians["first scan"],
    }
    RESULTS.mkdir(exist_ok=True)
    atomic_write(RESULTS / "library.json", json.dumps(result, indent=1).encode(), overwrite=True)
    lines = [
        f"# library scan ({result['files']} files, {total / 1e6:.0f} MB; median of {args.repeats}; "
        f"{result['machine']})",
        "",
        "| step | seconds |",
        "|---|---:|",
        *(f"| {k} | {v:.3f} |" for k, v in medians.items()),
        "",
        f"hashing throughput on the first scan: {result['hash_throughput_MB_s']:.0f} MB/s",
        "",
    ]
    atomic_write(RESULTS / "library.md", "\n".join(lines).encode(), overwrite=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
