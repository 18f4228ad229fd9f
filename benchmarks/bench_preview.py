"""Benchmark: fast previews — published latent→RGB factors vs factors fitted by least squares vs tiny decoders.

For each VAE family available offline:

* fit latent→RGB factors with :func:`latentbridge.previews.fit_preview` on the TRAIN photos
  (``latentbridge.photos.TRAIN_PHOTOS``, centre squares at ``--fit-size`` px);
* on each HELDOUT photo (``HELDOUT_PHOTOS``, at ``--size`` px) encode it, take the family's decode as the
  truth, and measure the PSNR of each preview against that decode area-downsampled to the preview's size:
  the published factors (registry / ComfyUI, model space), the fitted factors, and a tiny decoder where one
  exists (VAEApprox for SD1 at 2× the latent size);
* time each preview method per latent: the median of ``--repeats`` runs, per photo, then the median over photos.

Families:

* ``sd1-vaelight``: VAElight's ONNX encoder/decoder (raw SD1 latents → model space × 0.18215 → the published
  SD1 factors), truth = the VAElight decode; tiny = VAEApprox-SD1.
* ``flux2-taef2``: TAEF2 (FLUX.2 model space, unpacked 32 ch for the factors), truth = the TAEF2 decode.
* ``zoo-a``, ``zoo-b``, ``zoo-c``: the zoo's own factors (zoo.json) vs a fresh fit, truth = the zoo decode
  (skipped with the reason while the zoo is not trained).

Usage::

    python benchmarks/bench_preview.py                    # every family available
    python benchmarks/bench_preview.py --families flux2-taef2 --size 256 --repeats 5

Writes benchmarks/results/preview.json and preview.md (atomically). Torch runs on ``--threads`` intra-op
threads (default 1: previews are millisecond-scale ops, which extra threads slow down on a shared 2-core box).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "weights"
RESULTS = REPO / "benchmarks" / "results"
FAMILIES = ("sd1-vaelight", "flux2-taef2", "zoo-a", "zoo-b", "zoo-c")


def _load(family: str):
    """(VAE with encoder+decoder, tiny decoder VAE or None, title) for a family, or LookupError saying why not."""
    from latentbridge.weights import load_vae

    if family == "sd1-vaelight":
        files = [SHARED / "vaelight-sd1" / "VAEencoder.onnx", SHARED / "vaelight-sd1" / "VAEpreview.onnx"]
        approx = SHARED / "vaeapprox" / "vaeapprox-sd1.pt"
        if not all(p.is_file() for p in [*files, approx]):
            raise LookupError(f"VAElight / VAEApprox weights not found under {SHARED}")
        return load_vae(files), load_vae(approx), "SD1 (VAElight encoder/decoder; tiny: VAEApprox-SD1)"
    if family == "flux2-taef2":
        files = [SHARED / "taef2" / "taef2_encoder.pth", SHARED / "taef2" / "taef2_decoder.pth"]
        if not all(p.is_file() for p in files):
            raise LookupError(f"TAEF2 weights not found under {SHARED}")
        return load_vae(files), None, "FLUX.2 (TAEF2 encoder/decoder)"
    from latentbridge import zoo

    if family not in zoo.zoo_info():
        raise LookupError("the zoo is not trained yet (src/latentbridge/zoo/zoo.json has no entry)")
    return load_vae(family), None, f"{family} (zoo; published = zoo.json factors)"


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-call allocations and lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.double() - b.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def bench_family(family: str, size: int, fit_size: int, repeats: int) -> dict:
    """Fit on TRAIN, measure on HELDOUT; return the family's JSON-ready record."""
    from latentbridge import codec
    from latentbridge import previews as P
    from latentbridge.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, photo_tensor

    vae, tiny, title = _load(family)
    start = time.perf_counter()
    fit = P.fit_preview(vae, [(photo_tensor(n, fit_size) + 1) / 2 for n in TRAIN_PHOTOS], TRAIN_PHOTOS)
    fit_seconds = time.perf_counter() - start
    methods: dict[str, Callable] = {"published": P.rgb_preview, "fitted": P.fitted_previewer(fit)}
    if tiny is not None:
        methods["tiny"] = P.tiny_previewer(tiny)
    rows = []
    for name in HELDOUT_PHOTOS:
        latent = codec.encode(vae, photo_tensor(name, size))
        truth = codec.decode(vae, latent)
        row: dict = {"photo": name, "latent_shape": list(latent.shape)}
        for method, fn in methods.items():
            out = fn(latent)
            target = F.interpolate(truth, size=tuple(out.shape[-2:]), mode="area")
            row[f"{method}_psnr_db"] = _psnr(out, target)
            row[f"{method}_seconds"] = _median_time(lambda fn=fn, latent=latent: fn(latent), repeats)
        row["decode_seconds"] = _median_time(lambda latent=latent: codec.decode(vae, latent), 1)
        rows.append(row)

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in rows)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    summary = {f"{m}_psnr_db": mean(f"{m}_psnr_db") for m in methods}
    summary.update({f"{m}_ms": 1000 * median(f"{m}_seconds") for m in methods})
    summary["decode_ms"] = 1000 * median("decode_seconds")
    return {
        "family": family,
        "title": title,
        "vae": vae.name,
        "format": vae.format.name if vae.format is not None else None,
        "fit": {
            "photos": len(TRAIN_PHOTOS),
            "size": fit_size,
            "cells": fit.cells,
            "seconds": fit_seconds,
            "fit_psnr_db_vs_photos": fit.fit_psnr,
            "published_psnr_db_vs_photos": fit.published_psnr,
        },
        "heldout": rows,
        "summary": summary,
    }


def markdown(report: dict) -> str:
    """The results as a Markdown page."""
    env = report["environment"]
    lines = [
        "# Preview benchmark",
        "",
        f"{env['date']}; {env['machine']}; torch {env['torch']} on {env['threads']} thread(s); held-out photos at "
        f"{report['size']} px, factors fitted on the {len(report['train_photos'])} training photos at "
        f"{report['fit_size']} px. PSNR against the family's own decode, area-downsampled to the preview size "
        "(linear previews: latent resolution; VAEApprox: 2×); time: median per preview of one latent.",
        "",
        "| family | published dB | fitted dB | tiny dB | published ms | fitted ms | tiny ms | full decode ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fam in report["families"]:
        if "skipped" in fam:
            continue
        s = fam["summary"]

        def cell(key: str, fmt: str, s: dict = s) -> str:
            return format(s[key], fmt) if key in s else "—"

        lines.append(
            f"| {fam['title']} | {cell('published_psnr_db', '.2f')} | {cell('fitted_psnr_db', '.2f')} | "
            f"{cell('tiny_psnr_db', '.2f')} | {cell('published_ms', '.2f')} | {cell('fitted_ms', '.2f')} | "
            f"{cell('tiny_ms', '.1f')} | {cell('decode_ms', '.0f')} |"
        )
    lines += ["", "Per photo (PSNR dB against the decode):", ""]
    for fam in report["families"]:
        if "skipped" in fam:
            lines.append(f"- {fam['family']}: skipped — {fam['skipped']}")
            continue
        for row in fam["heldout"]:
            parts = [f"{k.removesuffix('_psnr_db')} {v:.2f}" for k, v in row.items() if k.endswith("_psnr_db")]
            lines.append(f"- {fam['family']} / {row['photo']} (latent {row['latent_shape']}): " + ", ".join(parts))
    lines += ["", "Fits (on the training photos, PSNR against the downsampled photos themselves):", ""]
    for fam in report["families"]:
        if "skipped" not in fam:
            f = fam["fit"]
            pub = f["published_psnr_db_vs_photos"]
            fitted = f"fitted {f['fit_psnr_db_vs_photos']:.2f} dB"
            lines.append(
                f"- {fam['family']}: {f['cells']} latent cells, {f['seconds']:.1f} s; {fitted}"
                + (f", published {pub:.2f} dB" if pub is not None else "")
            )
    return "\n".join(lines) + "\n"


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with latentbridge's one atomic writer (temp file, fsync, ``os.replace``)."""
    from latentbridge.files import atomic_write as write

    write(path, text.encode("utf-8"), parents=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--size", type=int, default=512, help="held-out photo side in pixels")
    parser.add_argument("--fit-size", type=int, default=256, help="training photo side in pixels for the fit")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per preview (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from latentbridge.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS

    families = []
    for family in args.families:
        print(f"[bench_preview] {family} …", file=sys.stderr, flush=True)
        try:
            families.append(bench_family(family, args.size, args.fit_size, args.repeats))
        except LookupError as exc:
            families.append({"family": family, "skipped": str(exc)})
    report = {
        "environment": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (shared)",
            "torch": torch.__version__,
            "threads": args.threads,
        },
        "size": args.size,
        "fit_size": args.fit_size,
        "train_photos": list(TRAIN_PHOTOS),
        "heldout_photos": list(HELDOUT_PHOTOS),
        "families": families,
    }
    atomic_write(args.out / "preview.json", json.dumps(report, indent=1) + "\n")
    atomic_write(args.out / "preview.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
