"""Benchmark: moving latents between VAE families — decode→re-encode, linear map, learned bridge.

For each pair (A -> B): fit a bridge on ``builtin:train`` (timed, capped), then on each held-out photo encode
it with A and measure, in the same run, every method with :func:`latentbridge.transfers.fidelity_report`:

* PSNR / SSIM of B's decode of the transferred latent against A's decode of the original latent;
* the same against the original photo;
* the "best achievable": the photo encoded by B and decoded, against the photo;
* time per latent, the median of ``--repeats`` (≥ 3) runs, per photo, then the median over photos.

Targets (checked and reported): decode→re-encode within 1 dB of the best achievable; the conv bridge ≥ 20×
faster than decode→re-encode and within 2 dB of its PSNR (bridge fits are capped by --fit-seconds).

Usage::

    python benchmarks/bench_transfer.py                       # every pair whose VAEs are available
    python benchmarks/bench_transfer.py --pairs zoo-a:zoo-b   # one pair
    python benchmarks/bench_transfer.py --size 256 --repeats 3 --threads 2 --fit-seconds 120

Writes benchmarks/results/transfer.json and transfer.md (atomically). Needs ../shared/weights for TAEF2 and
VAElight, and the trained zoo (src/latentbridge/zoo) for the zoo pairs; a pair whose VAEs are missing is
listed as skipped with the reason.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "weights"
RESULTS = REPO / "benchmarks" / "results"

DEFAULT_PAIRS = ("zoo-a:zoo-b", "zoo-a:zoo-c", "zoo-a:taef2", "taef2:zoo-a", "vaelight:taef2")
SPECS = {
    "taef2": [SHARED / "taef2" / "taef2_encoder.pth", SHARED / "taef2" / "taef2_decoder.pth"],
    "vaelight": [SHARED / "vaelight-sd1" / "VAEencoder.onnx", SHARED / "vaelight-sd1" / "VAEpreview.onnx"],
}
EXTRA: dict[str, list[str]] = {}  # --vae NAME=FILE[,FILE]: VAEs given on the command line
TITLES = {
    "taef2": "TAEF2 (FLUX.2 space)",
    "vaelight": "VAElight (SD1 space)",
    "zoo-a": "zoo-a",
    "zoo-b": "zoo-b",
    "zoo-c": "zoo-c",
}


def load(name: str):
    """Load a benchmark VAE by short name, or raise LookupError saying why it is unavailable."""
    from latentbridge import zoo
    from latentbridge.weights import load_vae

    if name in EXTRA:
        vae = load_vae(EXTRA[name] if len(EXTRA[name]) > 1 else EXTRA[name][0])
    elif name in SPECS:
        missing = [str(p) for p in SPECS[name] if not p.exists()]
        if missing:
            raise LookupError(f"{name}: missing {', '.join(missing)}")
        vae = load_vae([str(p) for p in SPECS[name]])
    else:
        if not zoo.zoo_path(name).exists():
            raise LookupError(f"{name}: the zoo is not trained yet ({zoo.zoo_path(name)} missing)")
        vae = load_vae(name)
    return vae


def mean(values: Sequence[float]) -> float:
    return float(statistics.fmean(values))


def run_pair(src_name: str, dst_name: str, args: argparse.Namespace, log) -> dict:
    """Fit the bridge for one pair and measure every method on the held-out photos."""
    from latentbridge import codec
    from latentbridge.bridge import fit_bridge, load_bridge, save_bridge
    from latentbridge.photos import HELDOUT_PHOTOS, photo_tensor
    from latentbridge.transfers import Refine, fidelity_report

    a, b = load(src_name), load(dst_name)
    log(f"{src_name} -> {dst_name}: fitting (cap {args.fit_seconds:.0f} s, encoding included)")
    t0 = time.perf_counter()
    fitted = fit_bridge(
        a,
        b,
        "builtin:train",
        view_size=args.view_size,
        views_per_image=args.views_per_image,
        crop=args.crop,
        windows_per_view=args.windows_per_view,
        epochs=args.epochs,
        patience=args.patience,
        hidden=args.hidden,
        blocks=args.blocks,
        target=args.target,
        max_seconds=args.fit_seconds,
        tune_seconds=args.tune_seconds,
        seed=0,
    )
    fit_seconds = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:  # measure the bridges as users get them: loaded from the file
        path = save_bridge(fitted, Path(tmp) / "bridge.safetensors")
        bridges = [load_bridge(path, kind="linear"), load_bridge(path, kind="conv")]
        bridge_bytes = path.stat().st_size
    log(f"  fitted in {fit_seconds:.0f} s ({len(fitted.curve)} epochs), val {fitted.scores}")

    per_photo = []
    for name in HELDOUT_PHOTOS:
        image = photo_tensor(name, args.size)
        latent = codec.encode(a, image)
        methods = ["reencode", *([Refine(args.refine)] if args.refine and b.module is not None else []), *bridges]
        rows = fidelity_report(latent, a, b, methods, image=image, repeats=args.repeats)
        per_photo.append({"photo": name, "rows": [r.to_dict() for r in rows]})
        log("  " + name + ": " + ", ".join(f"{r.method} {r.psnr:.2f} dB" for r in rows if not math.isnan(r.psnr)))

    methods = [r["method"] for r in per_photo[0]["rows"]]
    summary = {}
    for m in methods:
        rows = [next(r for r in p["rows"] if r["method"] == m) for p in per_photo]

        def agg(key: str, rows=rows) -> float | None:
            values = [r[key] for r in rows if isinstance(r[key], (int, float))]
            return mean(values) if values else None

        times = [r["seconds_per_latent"] for r in rows if r["seconds_per_latent"] is not None]
        summary[m] = {
            "psnr_db": agg("psnr"),
            "ssim": agg("ssim"),
            "image_psnr_db": agg("image_psnr"),
            "image_ssim": agg("image_ssim"),
            "seconds_per_latent": statistics.median(times) if times else None,
        }
    targets = judge(summary, fit_seconds)
    return {
        "src": src_name,
        "dst": dst_name,
        "src_vae": {"name": a.name, "sha256": a.sha256, "format": a.format.name if a.format else ""},
        "dst_vae": {"name": b.name, "sha256": b.sha256, "format": b.format.name if b.format else ""},
        "fit": {
            "seconds": fit_seconds,
            "epochs": len(fitted.curve),
            "stopped_early": fitted.stopped_early,
            "scores": {k: (None if math.isnan(v) else v) for k, v in fitted.scores.items()},
            "data": fitted.conv.meta["data"],
            "config": fitted.conv.config.to_dict(),
            "bridge_file_bytes": bridge_bytes,
            "tune": fitted.conv.meta.get("tune"),
        },
        "summary": summary,
        "targets": targets,
        "per_photo": per_photo,
    }


def judge(summary: dict, fit_seconds: float) -> dict:
    """The issue's targets, from one pair's summary.

    "Best achievable" is the photo encoded and decoded by B, against the photo, so re-encode is judged on the same
    reference: its decode against the photo. That gap also holds what A itself lost (a transfer starts from A's
    latent, not from the photo), so the ceiling min(A's, B's own round trip) is reported beside it.
    """
    re, conv, best = summary["reencode"], summary["conv bridge"], summary["best achievable"]
    source = summary.get("source reconstruction", {}).get("image_psnr_db")
    ceiling = min(best["image_psnr_db"], source) if source is not None else best["image_psnr_db"]
    gap = re["image_psnr_db"] - best["image_psnr_db"]
    refined = next((v for k, v in summary.items() if k.startswith("reencode+refine")), None)
    best_image = best["image_psnr_db"]
    speedup = re["seconds_per_latent"] / conv["seconds_per_latent"]
    return {
        "reencode_image_minus_best_image_db": gap,
        "reencode_within_1db_of_best": gap >= -1.0,
        "refine_image_minus_best_image_db": None if refined is None else refined["image_psnr_db"] - best_image,
        "ceiling_image_psnr_db": ceiling,
        "reencode_image_minus_ceiling_db": re["image_psnr_db"] - ceiling,
        "b_loss_on_a_decode_minus_on_photo_db": re["psnr_db"] - best["psnr_db"],
        "bridge_speedup": speedup,
        "bridge_20x_faster": speedup >= 20,
        "bridge_minus_reencode_db": conv["psnr_db"] - re["psnr_db"],
        "bridge_within_2db": conv["psnr_db"] >= re["psnr_db"] - 2.0,
        "fit_seconds": fit_seconds,
    }


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def markdown(report: dict) -> str:
    """The README table and the per-pair notes."""
    lines = [
        "# Transfer benchmark",
        "",
        f"{report['machine']}; images {report['settings']['size']}² (held-out photos: "
        f"{', '.join(report['photos'])}); times are the median of {report['settings']['repeats']} runs per photo, "
        "then the median over photos, per latent (batch 1).",
        "",
        "PSNR/SSIM: B's decode of the transferred latent vs A's decode of the original latent. "
        "*vs image*: against the original photo. *best achievable*: the photo encoded and decoded by B, vs the "
        "photo. " + report["lpips"] + ".",
        "",
        "| pair A → B | method | PSNR dB | SSIM | PSNR vs image | SSIM vs image | ms / latent | speed-up |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for pair in report["pairs"]:
        if "skipped" in pair:
            continue
        s = pair["summary"]
        re_time = s["reencode"]["seconds_per_latent"]
        for m in [k for k in s if k != "source reconstruction"]:
            row = s[m]
            t = row["seconds_per_latent"]
            speed = "—" if not t else (f"{re_time / t:.0f}×" if re_time / t >= 1.5 else f"{re_time / t:.2g}×")
            lines.append(
                f"| {TITLES.get(pair['src'], pair['src'])} → {TITLES.get(pair['dst'], pair['dst'])} | {m} | "
                f"{fmt(row['psnr_db'], '.2f')} | "
                f"{fmt(row['ssim'], '.4f')} | {fmt(row['image_psnr_db'], '.2f')} | {fmt(row['image_ssim'], '.4f')} | "
                f"{fmt(t * 1000 if t else None, '.1f')} | {speed} |"
            )
    lines += [
        "",
        "## Targets",
        "",
        "*re-encode − best*: re-encode's decode vs the photo, minus B's own round trip of the photo (the issue's "
        "target, ≥ −1 dB). *− ceiling*: the same against min(A's, B's own round trip), since a transfer starts "
        "from A's latent and cannot restore what A lost. *bridge − re-encode*: PSNR against A's decode (≥ −2 dB), "
        "speed-up per latent (≥ 20×).",
        "",
        "| pair | re-encode − best dB | re-encode − ceiling dB | re-encode+refine − best dB | bridge speed-up "
        "| bridge − re-encode dB | fit s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for pair in report["pairs"]:
        if "skipped" in pair:
            lines.append(f"| {pair['src']} → {pair['dst']} | skipped: {pair['skipped']} | | | | | |")
            continue
        t = judge(pair["summary"], pair["fit"]["seconds"])
        lines.append(
            f"| {pair['src']} → {pair['dst']} | {t['reencode_image_minus_best_image_db']:+.2f} "
            f"({'ok' if t['reencode_within_1db_of_best'] else 'MISSED'}) | "
            f"{t['reencode_image_minus_ceiling_db']:+.2f} | "
            + (
                "— | "
                if t["refine_image_minus_best_image_db"] is None
                else f"{t['refine_image_minus_best_image_db']:+.2f} "
                f"({'ok' if t['refine_image_minus_best_image_db'] >= -1 else 'MISSED'}) | "
            )
            + f"{t['bridge_speedup']:.0f}× ({'ok' if t['bridge_20x_faster'] else 'MISSED'}) | "
            f"{t['bridge_minus_reencode_db']:+.2f} ({'ok' if t['bridge_within_2db'] else 'MISSED'}) | "
            f"{t['fit_seconds']:.0f} |"
        )
    lines += ["", "## Bridge fits", ""]
    lines += [
        "| pair | epochs | val NMSE linear | val NMSE conv | val PSNR linear | val PSNR conv | decoder tuning | views |"
    ]
    lines += ["|---|---:|---:|---:|---:|---:|---|---:|"]
    for pair in report["pairs"]:
        if "skipped" in pair:
            continue
        f, sc = pair["fit"], pair["fit"]["scores"]
        lines.append(
            f"| {pair['src']} → {pair['dst']} | {f['epochs']} | {fmt(sc['nmse_linear'], '.4f')} | "
            f"{fmt(sc['nmse_conv'], '.4f')} | {fmt(sc.get('psnr_linear'), '.2f')} | "
            f"{fmt(sc.get('psnr_conv'), '.2f')} | "
            + (
                f"{f['tune']['psnr_before']:.2f} → {f['tune']['psnr_after']:.2f} dB in {f['tune']['steps']} steps | "
                if f.get("tune")
                else "— | "
            )
            + f"{f['data']['train_views']}+{f['data']['val_views']} views |"
        )
    return "\n".join(lines) + "\n"


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with latentbridge's one atomic writer (temp file, fsync, ``os.replace``)."""
    from latentbridge.files import atomic_write as write

    write(path, text.encode("utf-8"), parents=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", nargs="*", default=list(DEFAULT_PAIRS), help="SRC:DST names")
    parser.add_argument("--size", type=int, default=256, help="held-out photo size in pixels")
    parser.add_argument("--repeats", type=int, default=3, help="timings per method and photo (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fit-seconds", type=float, default=150.0, help="cap on each bridge's whole fit")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=15)
    parser.add_argument("--view-size", type=int, default=192)
    parser.add_argument("--views-per-image", type=int, default=2)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--windows-per-view", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--target", default="reencode", choices=("reencode", "image"))
    parser.add_argument("--tune-seconds", type=float, default=120.0, help="decoder-loss tuning after the fit")
    parser.add_argument("--refine", type=int, default=20, help="steps of the reencode+refine row (0: no row)")
    parser.add_argument("--vae", action="append", default=[], help="NAME=FILE[,FILE]: use these weights for NAME")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (the median of ≥ 3 timings)")
    sys.path.insert(0, str(REPO / "src"))
    from latentbridge.metrics import LPIPS_NOTE
    from latentbridge.photos import HELDOUT_PHOTOS

    for item in args.vae:
        name, _, files = item.partition("=")
        EXTRA[name] = files.split(",")
        TITLES.setdefault(name, name)
    torch.set_num_threads(args.threads)  # a script, not the library: setting the process's threads is its job

    def log(message: str) -> None:
        print(message, flush=True)

    pairs = []
    for spec in args.pairs:
        src, dst = spec.split(":")
        try:
            pairs.append(run_pair(src, dst, args, log))
        except LookupError as exc:
            log(f"{spec}: skipped ({exc})")
            pairs.append({"src": src, "dst": dst, "skipped": str(exc)})
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} torch threads, torch "
        f"{torch.__version__}, CPU fp32",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "photos": list(HELDOUT_PHOTOS),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "lpips": LPIPS_NOTE,
        "pairs": pairs,
    }
    atomic_write(args.out / "transfer.json", json.dumps(report, indent=1) + "\n")
    atomic_write(args.out / "transfer.md", markdown(report))
    log((args.out / "transfer.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
