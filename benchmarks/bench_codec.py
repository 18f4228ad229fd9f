"""Benchmark: the codec's decode/encode against diffusers' own AutoencoderKL, in one run.

What is measured, per case (model × op × size × variant):

* **time**: the median of ``--repeats`` runs (≥ 3) in one fresh worker process, after a 64-px warm-up of the
  same path (kernel selection), with ``--threads`` intra-op threads;
* **peak memory**: in that fresh worker, with the model built, the input loaded and the warm-up done, the
  kernel's peak-RSS mark is reset (``echo 5 > /proc/self/clear_refs``) and the resident set read
  (``/proc/self/statm``); after the runs, the peak (``VmHWM`` in ``/proc/self/status``) minus that resident
  set is what the operation itself adds (tracemalloc cannot see torch's allocations). Where clear_refs is not
  writable, ``resource.getrusage(...).ru_maxrss`` is used instead (recorded per row). The worker's total
  peak RSS (Python, torch, diffusers, weights included) is reported too;
* **quality**, from the saved outputs: max abs difference of our exact path against diffusers (decoded images
  in [0, 1]; encoded raw latents), PSNR of the fast path and of tiled runs against the untiled fp32 result;
* **FLOP/s**: FLOPs counted with ``torch.utils.flop_counter.FlopCounterMode`` on meta-device copies of the
  networks (no compute), divided by the median time; against the machine's GEMM peak measured in the same run
  (median of 5 square matmuls, fp32 and bf16).

Models:

* ``sd``: SD-class KL f8 with random weights (seed 0) and the real SD VAE config: block_out_channels
  (128, 256, 512, 512), layers_per_block 2, mid-block attention, 4 latent channels. Baseline: diffusers
  ``AutoencoderKL.decode``/``encode`` on the same module; ``enable_tiling()`` with the same tile size for the
  tiled baseline (tile = half the image, diffusers' fixed 25 % overlap; ours gets the same overlap).
* ``taef2``: TAEF2 from ../shared/weights (diffusers cannot hold it: baseline = our fp32 path), on a real photo.
* ``zoo-a`` … ``zoo-c``: the built-in zoo VAEs (diffusers AutoencoderKL, real trained weights) when present.

Variants: ``diffusers`` (fp32), ``exact`` (ours, fp32), ``fast`` (ours, bf16 + channels-last, NaN guard on),
``diffusers-tiled``, ``tiled`` (ours, fp32, default 2 statistics passes), ``tiled-1pass`` (per-tile
GroupNorm statistics, as diffusers), ``auto-768MiB`` (ours, fp32, ``max_memory`` = 768 MiB picks the tile).

Usage::

    python benchmarks/bench_codec.py --quick          # 256 and 512 px (about 15 min on 2 idle cores)
    python benchmarks/bench_codec.py --ab --sizes 512 # exact/fast vs diffusers interleaved in one process
    nohup python benchmarks/bench_codec.py &          # 256, 512 and 1024 px (over an hour)

Writes benchmarks/results/codec.json and codec.md atomically. Timings on a shared machine drift 20–35 %;
the load average at start and end is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "weights"
RESULTS = REPO / "benchmarks" / "results"

SD_CONFIG: dict[str, Any] = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "latent_channels": 4,
    "sample_size": 512,
}
TAEF2_FILES = (SHARED / "taef2" / "taef2_encoder.pth", SHARED / "taef2" / "taef2_decoder.pth")
KL_VARIANTS = ("diffusers", "exact", "fast", "diffusers-tiled", "tiled", "tiled-1pass")
OWN_VARIANTS = ("exact", "fast", "tiled", "tiled-1pass")
BUDGET = 768 * 2**20  # auto-768MiB: with the ~0.7 GB the worker holds before (torch, diffusers, fp32 weights)
# the process stays under 1.5 GB


# --- the worker: one case, one fresh process ----------------------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> str:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; returns the measuring method."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return "VmHWM"
    except OSError:
        return "ru_maxrss"


def _peak(method: str) -> int:
    if method == "VmHWM":
        with open("/proc/self/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        return kb * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def zoo_file(model: str, zoo_dir: str | None) -> Path:
    """The weight file of a zoo VAE: the package's, or ``--zoo-dir``'s when the package has none."""
    from latentbridge import zoo

    packaged = zoo.zoo_path(model)
    if packaged.is_file() or zoo_dir is None:
        return packaged
    return Path(zoo_dir) / f"{model}.safetensors"


def _build(model: str, zoo_dir: str | None = None) -> tuple[Any, Any]:
    """(latentbridge VAE, diffusers module or None)."""
    from latentbridge.formats import get_format
    from latentbridge.vae import from_autoencoder_kl
    from latentbridge.weights import load_vae

    if model == "sd":
        from diffusers import AutoencoderKL

        torch.manual_seed(0)
        module = AutoencoderKL(**SD_CONFIG).eval()
        return from_autoencoder_kl(module, name="sd-random", fmt=get_format("sd1")), module
    if model == "taef2":
        return load_vae(list(TAEF2_FILES)), None
    vae = load_vae(zoo_file(model, zoo_dir))
    return vae, vae.module


def _runner(case: dict[str, Any], vae: Any, module: Any) -> Any:
    """A zero-argument function doing the case's operation once, returning its output tensor."""
    from latentbridge import codec
    from latentbridge.latent import Latent

    op, variant, tile = case["op"], case["variant"], case["tile"]
    if variant.startswith("diffusers"):
        if variant == "diffusers-tiled":
            module.tile_sample_min_size = tile
            module.tile_latent_min_size = tile // 8
            module.enable_tiling()

        def run_diffusers(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                if op == "decode":
                    return (module.decode(x).sample.clamp(-1, 1) + 1) / 2
                return module.encode(x).latent_dist.mean

        return run_diffusers
    from latentbridge import Run, Tiling

    run = Run()
    if variant == "fast":
        run = Run(dtype="bf16", channels_last=True)
    elif variant == "exact-cl":  # fp32 in channels-last memory format (oneDNN's preferred layout on CPU)
        run = Run(channels_last=True)
    elif variant in ("tiled", "tiled-1pass"):
        run = Run(tiling=Tiling(tile=tile, overlap=tile // 4, passes=1 if variant == "tiled-1pass" else 2))
    elif variant == "auto-768MiB":
        run = Run(max_memory=BUDGET)

    def run_ours(x: torch.Tensor) -> torch.Tensor:
        if op == "decode":
            space = vae.native_space
            return codec.decode(vae, Latent(x, format=vae.format, space=space), run)
        return codec.encode(vae, x, run).tensor

    return run_ours


def worker(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case and return its timings and memory; saves the first output to case["save"]."""
    import warnings

    torch.set_num_threads(case["threads"])
    vae, module = _build(case["model"], case["zoo_dir"])
    x = torch.load(case["input"], weights_only=True)
    run = _runner(case, vae, module)
    estimate = None
    if not case["variant"].startswith("diffusers"):
        from latentbridge import Run, Tiling, codec

        tile = case["tile"] if "tiled" in case["variant"] else None
        fast = case["variant"] == "fast"
        run = Run(dtype="bf16" if fast else "fp32", tiling=Tiling(tile=tile), channels_last=fast)
        estimate = codec.estimate_memory(vae, x.shape, op=case["op"], run=run)
    cells = 64 // (vae.spatial_ratio if case["op"] == "decode" else 1)  # a 64-px warm-up input
    warm = x[..., :cells, :cells]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(warm)
        method = _reset_peak()
        rss0 = _rss()
        times, out = [], None
        for _ in range(case["repeats"]):
            t = time.perf_counter()
            y = run(x)
            times.append(time.perf_counter() - t)
            if out is None:
                out = y
    peak = _peak(method)
    torch.save(out.float().cpu(), case["save"])
    return {
        "times": times,
        "median_s": statistics.median(times),
        "rss_before_mb": rss0 / 2**20,
        "peak_rss_mb": peak / 2**20,
        "peak_delta_mb": (peak - rss0) / 2**20,
        "peak_method": method,
        "estimate_mb": None if estimate is None else estimate / 2**20,
        "warnings": sorted({str(w.message) for w in caught if "latentbridge" in type(w.message).__module__}),
    }


# --- the parent: inputs, cases, metrics, report ---------------------------------------------------------------


def gemm_peak(threads: int) -> dict[str, float]:
    """GFLOP/s of large square matmuls (median of 5), fp32 and bf16."""
    torch.set_num_threads(threads)
    out = {}
    for name, dtype, n in (("fp32", torch.float32, 4096), ("bf16", torch.bfloat16, 4096)):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        times = []
        for _ in range(5):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
        out[name] = 2 * n**3 / statistics.median(times) / 1e9
    return out


def count_flops(model: str, op: str, size: int, config: dict[str, Any] | None = None) -> float:
    """FLOPs of one decode/encode at ``size`` px, counted on meta-device copies (no compute)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        if model == "taef2":
            from latentbridge.models.taesd import TAESD, TAESDConfig

            net = TAESD(TAESDConfig(32, "pool"))
            fn = net.decode if op == "decode" else net.encode
            x = torch.empty(1, 32, size // 8, size // 8) if op == "decode" else torch.empty(1, 3, size, size)
        else:
            from diffusers import AutoencoderKL

            net = AutoencoderKL(**SD_CONFIG) if config is None else AutoencoderKL.from_config(config)
            c = net.config.latent_channels
            fn = net.decode if op == "decode" else net.encode
            x = torch.empty(1, c, size // 8, size // 8) if op == "decode" else torch.empty(1, 3, size, size)
        with FlopCounterMode(display=False) as counter:
            fn(x)
    return float(counter.get_total_flops())


def make_input(model: str, op: str, size: int, path: Path, zoo_dir: str | None) -> None:
    """The input tensor of a case: a real photo for encode (and TAEF2/zoo decode, via our fp32 encode)."""
    from latentbridge import codec
    from latentbridge.photos import photo_tensor

    if model == "sd" and op == "decode":
        x = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(1))
    else:
        x = photo_tensor("astronaut", size)
        if op == "decode":
            vae, _ = _build(model, zoo_dir)
            x = codec.encode(vae, x).tensor
    torch.save(x, path)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    from latentbridge.metrics import psnr as _psnr

    return float(_psnr(a.clamp(0, 1), b.clamp(0, 1)).mean())


def models_available(wanted: list[str], zoo_dir: str | None) -> tuple[list[str], dict[str, str]]:
    have, skipped = [], {}
    for m in wanted:
        if m == "taef2" and not all(p.is_file() for p in TAEF2_FILES):
            skipped[m] = f"TAEF2 weights not found under {SHARED}"
        elif m.startswith("zoo") and not zoo_file(m, zoo_dir).is_file():
            skipped[m] = f"{zoo_file(m, zoo_dir)} missing (zoo not trained in this checkout)"
        else:
            have.append(m)
    return have, skipped


def variants_for(model: str, op: str, size: int) -> list[str]:
    out = list(KL_VARIANTS if model != "taef2" else OWN_VARIANTS)
    if op == "encode":
        out = [v for v in out if v != "tiled-1pass"]
    if model == "sd" and op == "decode" and size >= 1024:
        out = [v for v in out if v != "tiled-1pass"] + ["auto-768MiB"]  # 1-pass shown at 256/512: saves 6 min
    return out


def _variants(args: argparse.Namespace, model: str, op: str, size: int) -> list[str]:
    return [v for v in variants_for(model, op, size) if not args.variants or v in args.variants]


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(case)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def analyse(rows: list[dict[str, Any]], outputs: dict[tuple, Path]) -> None:
    """Add speed-ups and quality numbers to the rows, in place."""
    by = {(r["model"], r["op"], r["size"], r["variant"]): r for r in rows if "median_s" in r}
    for r in rows:
        if "median_s" not in r:
            continue
        key = (r["model"], r["op"], r["size"])
        base = by.get((*key, "diffusers")) or by.get((*key, "exact"))
        r["baseline"] = base["variant"] if base else ""
        r["speedup"] = base["median_s"] / r["median_s"] if base else float("nan")
        r["gflops"] = r["flops"] / r["median_s"] / 1e9
        if (*key, r["variant"]) not in outputs:  # kept from an earlier run (--merge): its quality is stored
            continue
        out = torch.load(outputs[(*key, r["variant"])], weights_only=True)
        ref_variant = "diffusers" if r["variant"].startswith("diffusers") else "exact"
        ref_key = (*key, ref_variant)
        if ref_key in outputs and ref_variant != r["variant"]:
            ref = torch.load(outputs[ref_key], weights_only=True)
            r["vs"] = ref_variant
            r["max_abs_diff"] = float((out - ref).abs().max())
            if r["op"] == "decode":
                r["psnr_db"] = psnr(out, ref)
            else:
                r["rel_rms"] = float((out - ref).pow(2).mean().sqrt() / ref.pow(2).mean().sqrt())
        if r["variant"] == "exact" and (*key, "diffusers") in outputs:
            ref = torch.load(outputs[(*key, "diffusers")], weights_only=True)
            r["vs"] = "diffusers"
            r["max_abs_diff"] = float((out - ref).abs().max())


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        "# Codec benchmark",
        "",
        f"Machine: {m['cpu']}, {m['threads']} torch threads, torch {m['torch']}, diffusers {m['diffusers']}; "
        f"load average {m['load_start']} at start, {m['load_end']} at end (shared machine: timings drift 20–35 %)."
        + ("" if result["complete"] else " **Run in progress: partial results.**")
        + (f" Zoo weights from {result['zoo_dir']}." if result.get("zoo_dir") else ""),
        f"GEMM peak (4096² matmul, median of 5): fp32 {result['gemm_gflops']['fp32']:.0f} GFLOP/s, "
        f"bf16 {result['gemm_gflops']['bf16']:.0f} GFLOP/s. Time: median of {result['repeats']} runs in a fresh "
        "process; memory: peak RSS (VmHWM, reset before the runs) minus RSS before the first run (model and input "
        "loaded, warm-up done), and the process's total peak RSS.",
        "",
        "| model | op | px | variant | tile | median s | × baseline | GFLOP/s | peak Δ MB | estimate MB | peak RSS MB "
        "| quality vs reference | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if "median_s" not in r:
            lines.append(
                f"| {r['model']} | {r['op']} | {r['size']} | {r['variant']} | | error: {r.get('error')} |||||||"
            )
            continue
        quality = ""
        if "max_abs_diff" in r and r["variant"] == "exact":
            quality = f"max abs diff {r['max_abs_diff']:.1e} vs diffusers"
        elif "psnr_db" in r:
            quality = f"{r['psnr_db']:.1f} dB vs {r['vs']} fp32"
        elif "rel_rms" in r:
            quality = f"rel. RMS {r['rel_rms']:.1e} vs {r['vs']} fp32"
        notes = "; ".join(w.split(" (estimated")[0].split(": ", 1)[-1] for w in r.get("warnings", []))[:90]
        lines.append(
            f"| {r['model']} | {r['op']} | {r['size']} | {r['variant']} | {r['tile'] or ''} | {r['median_s']:.2f} | "
            f"{r['speedup']:.2f} ({r['baseline']}) | {r['gflops']:.0f} | {r['peak_delta_mb']:.0f} | "
            f"{'' if r.get('estimate_mb') is None else format(r['estimate_mb'], '.0f')} | "
            f"{r['peak_rss_mb']:.0f} | {quality} | {notes} |"
        )
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in result["rows"]:
        if "earlier_run" in r:
            runs.setdefault(json.dumps(r["earlier_run"], sort_keys=True), []).append(r)
    for key, rows in runs.items():
        m0 = json.loads(key)
        lines += [
            "",
            f"{len(rows)} rows (px {', '.join(sorted({str(r['size']) for r in rows}, key=int))}) come from an earlier "
            f"run ({m0['threads']} threads, load average {m0['load_start']} at start, {m0['load_end']} at end); "
            "speed-ups are always against the baseline of the same run.",
        ]
    if result["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in result["skipped"].items())]
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with latentbridge's one atomic writer (temp file, fsync, ``os.replace``)."""
    from latentbridge.files import atomic_write as write

    write(path, text.encode("utf-8"), parents=True)


def ab_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Interleaved timing in one process: variants run in turn (A B C A B C …) so load drift hits all alike."""
    torch.set_num_threads(spec["threads"])
    vae, module = _build(spec["model"], spec.get("zoo_dir"))
    x = torch.load(spec["input"], weights_only=True)
    runs = {v: _runner({**spec, "variant": v, "tile": None}, vae, module) for v in spec["variants"]}
    for run in runs.values():  # warm-up
        run(x[..., :8, :8] if spec["op"] == "decode" else x[..., :64, :64])
    times: dict[str, list[float]] = {v: [] for v in runs}
    outs: dict[str, torch.Tensor] = {}
    for _ in range(spec["repeats"]):
        for v, run in runs.items():
            t = time.perf_counter()
            outs[v] = run(x)
            times[v].append(time.perf_counter() - t)
    ref = outs[next(iter(outs))].float()
    return {
        v: {"times": t, "median_s": statistics.median(t), "max_abs_diff": float((outs[v].float() - ref).abs().max())}
        for v, t in times.items()
    }


def run_ab(args: argparse.Namespace) -> None:
    """``--ab``: exact and fast against diffusers, interleaved in one process; writes codec_ab.json / .md."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_codec_ab.") as tmp:
        for size in args.sizes or [512]:
            for op in args.ops:
                inp = Path(tmp) / f"sd-{op}-{size}.pt"
                make_input("sd", op, size, inp, None)
                spec = {
                    "model": "sd",
                    "op": op,
                    "size": size,
                    "threads": args.threads,
                    "repeats": max(args.repeats, 5),
                    "input": str(inp),
                    "variants": args.ab_variants,
                }
                proc = subprocess.run(
                    [sys.executable, __file__, "--ab-worker", json.dumps(spec)], capture_output=True, text=True
                )
                if proc.returncode != 0:
                    raise SystemExit(proc.stderr)
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                base = res["diffusers"]["median_s"]
                for v, r in res.items():
                    rows.append({"op": op, "size": size, "variant": v, **r, "speedup": base / r["median_s"]})
                    print(f"sd {op} {size} {v}: {r['median_s']:.2f} s, ×{base / r['median_s']:.2f}", flush=True)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        "# Codec A/B timing (interleaved in one process)",
        "",
        f"SD-class KL f8 (random weights), {args.threads} torch thread(s), load average {load} at the end. Each "
        "variant runs in turn (diffusers, exact, fast, diffusers, …) so machine-load drift hits all alike; "
        "median of the runs.",
        "",
        "| op | px | variant | median s | × diffusers | max abs diff vs diffusers | runs (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        runs = ", ".join(f"{t:.2f}" for t in r["times"])
        lines.append(
            f"| {r['op']} | {r['size']} | {r['variant']} | {r['median_s']:.2f} | {r['speedup']:.2f} | "
            f"{r.get('max_abs_diff', float('nan')):.1e} | {runs} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    _atomic_write(args.out / "codec_ab.json", json.dumps({"threads": args.threads, "rows": rows}, indent=1) + "\n")
    _atomic_write(args.out / "codec_ab.md", "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--ab-worker", help=argparse.SUPPRESS)
    parser.add_argument("--ab", action="store_true", help="interleaved exact/fast vs diffusers timing only")
    parser.add_argument(
        "--ab-variants", nargs="*", default=["diffusers", "exact", "fast"], help="variants of --ab, diffusers first"
    )
    parser.add_argument("--quick", action="store_true", help="256 and 512 px only")
    parser.add_argument("--sizes", type=int, nargs="*", help="pixel sizes (default 256 512 1024)")
    parser.add_argument("--models", nargs="*", default=["sd", "taef2", "zoo-a", "zoo-b", "zoo-c"])
    parser.add_argument("--ops", nargs="*", default=["decode", "encode"])
    parser.add_argument("--variants", nargs="*", help="only these variants (default: all that apply)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of an earlier codec.json in --out that this run does not measure again",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--zoo-dir", help="folder with zoo-*.safetensors, used when the package has none")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.ab_worker:
        print(json.dumps(ab_worker(json.loads(args.ab_worker))))
        return
    if args.ab:
        run_ab(args)
        return
    if args.repeats < 3:
        parser.error("--repeats must be at least 3 (medians of fewer runs are noise on a shared machine)")
    sizes = args.sizes or ([256, 512] if args.quick else [256, 512, 1024])
    models, skipped = models_available(args.models, args.zoo_dir)
    load_start = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gemm = gemm_peak(args.threads)
    rows: list[dict[str, Any]] = []
    outputs: dict[tuple, Path] = {}
    if args.merge and (args.out / "codec.json").exists():
        earlier = json.loads((args.out / "codec.json").read_text())
        planned = {(m, o, s, v) for s in sizes for m in models for o in args.ops for v in _variants(args, m, o, s)}
        rows = [r for r in earlier["rows"] if (r["model"], r["op"], r["size"], r["variant"]) not in planned]
        for r in rows:
            r.setdefault("earlier_run", earlier["machine"])
        print(f"kept {len(rows)} rows of the earlier run", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench_codec.") as tmp:
        for size in sizes:  # smallest first: a long run has every model at 256 and 512 px early
            for model in models:
                for op in args.ops:
                    inp = Path(tmp) / f"{model}-{op}-{size}.pt"
                    make_input(model, op, size, inp, args.zoo_dir)
                    config = None
                    if model.startswith("zoo"):
                        config = dict(_build(model, args.zoo_dir)[1].config)
                    flops = count_flops(model, op, size, config)
                    for variant in _variants(args, model, op, size):
                        save = Path(tmp) / f"{model}-{op}-{size}-{variant}.out.pt"
                        case = {
                            "model": model,
                            "op": op,
                            "size": size,
                            "variant": variant,
                            "tile": size // 2 if "tiled" in variant else None,
                            "threads": args.threads,
                            "repeats": args.repeats,
                            "input": str(inp),
                            "save": str(save),
                            "zoo_dir": args.zoo_dir,
                        }
                        t0 = time.time()
                        res = run_case(case)
                        row = {k: case[k] for k in ("model", "op", "size", "variant", "tile")}
                        row.update(res, flops=flops)
                        rows.append(row)
                        if "median_s" in res:
                            outputs[(model, op, size, variant)] = save
                        write_results(args, rows, outputs, gemm, skipped, load_start, cpu, final=False)
                        print(
                            f"{model} {op} {size} {variant}: "
                            + (
                                f"{res['median_s']:.2f} s, Δ {res['peak_delta_mb']:.0f} MB"
                                if "median_s" in res
                                else res["error"]
                            )
                            + f" ({time.time() - t0:.0f} s wall)",
                            flush=True,
                        )
        write_results(args, rows, outputs, gemm, skipped, load_start, cpu, final=True)


def write_results(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    outputs: dict[tuple, Path],
    gemm: dict[str, float],
    skipped: dict[str, str],
    load_start: str,
    cpu: str,
    final: bool,
) -> None:
    """Write codec.json / codec.md (after every case, so a long run leaves results as it goes)."""
    import diffusers

    analyse(rows, outputs)
    order = {m: i for i, m in enumerate(["sd", "taef2", "zoo-a", "zoo-b", "zoo-c"])}
    rows.sort(key=lambda r: (r["size"], order.get(r["model"], 9), r["op"] != "decode"))
    result = {
        "machine": {
            "cpu": cpu,
            "threads": args.threads,
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "load_start": load_start,
            "load_end": ", ".join(f"{v:.1f}" for v in os.getloadavg()),
        },
        "complete": final,
        "repeats": args.repeats,
        "gemm_gflops": gemm,
        "rows": rows,
        "skipped": skipped,
        "zoo_dir": args.zoo_dir,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    _atomic_write(args.out / "codec.json", json.dumps(result, indent=1) + "\n")
    _atomic_write(args.out / "codec.md", markdown(result))
    if final:
        print(markdown(result))


if __name__ == "__main__":
    main()
