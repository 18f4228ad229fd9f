"""Benchmark: ≥ 10⁵ mutated files through every latentbridge reader, under a 4 GB address-space limit.

The cases come from ``tests/fuzz_harness.py`` (targets, seeds, mutators; deterministic in ``--seed``): each
one runs in a worker process whose address space is capped with ``resource.setrlimit(RLIMIT_AS)``, and a
case that stops answering for ``--timeout`` seconds is killed and counted as a hang. Outcomes:

* ``ok``: the reader accepted the file (some mutations leave a valid file);
* ``refused``: a LatentBridgeError naming the file — the contract;
* ``unnamed``: a LatentBridgeError that does not name the file;
* ``unhandled:<type>``: any other exception (a traceback for a user);
* ``memory``: MemoryError / an allocator failure / the worker killed at the limit;
* ``hang``, ``crash``: no answer within the timeout (twice), a dead worker.

Usage::

    nice -n 10 python benchmarks/fuzz_readers.py --cases 100000          # writes results/fuzz.md and fuzz.json
    python benchmarks/fuzz_readers.py --cases 2000 --label baseline --no-write   # a quick look, printed only

Torch runs on one thread in each worker (``OMP_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO / "tests"))

import fuzz_harness as fh  # noqa: E402 - the harness lives with the tests that also run it


def _table(report: fh.Report) -> list[str]:
    kinds = report.kinds()
    lines = ["| target | cases | ok | refused | unnamed | unhandled | memory | hang | crash |", "|---|" + "---:|" * 8]
    for name, counts in sorted(report.by_target.items()):
        k = {o.split(":", 1)[0]: 0 for o in counts}
        for o, v in counts.items():
            k[o.split(":", 1)[0]] = k.get(o.split(":", 1)[0], 0) + v
        row = [k.get(c, 0) for c in ("ok", "refused", "unnamed", "unhandled", "memory", "hang", "crash")]
        lines.append(f"| {name} | {sum(counts.values())} | " + " | ".join(map(str, row)) + " |")
    row = [kinds.get(c, 0) for c in ("ok", "refused", "unnamed", "unhandled", "memory", "hang", "crash")]
    lines.append(f"| **all** | {report.cases} | " + " | ".join(map(str, row)) + " |")
    return lines


def _findings(report: fh.Report) -> list[str]:
    out = []
    for outcome, n in report.findings.most_common():
        examples = [line for key, line in report.examples.items() if key.split(" ", 1)[0] == outcome]
        ex = examples[0] if examples else {}
        out.append(
            f"| `{outcome}` | {n} | {ex.get('target', '?')} / {ex.get('seed', '?')} / {ex.get('mutator', '?')} "
            f"(case {ex.get('i', '?')}) | {ex.get('detail', '')[:120].replace('|', '/')} |"
        )
    return out


def torch_load_errors(cases: int) -> Counter:
    """What ``torch.load(weights_only=True)`` itself raises once latentbridge's .pt checks have passed.

    Mutates the .pt seeds (zip and legacy; latents and state dicts), calls ``files._containers.load_pickle``
    (the checks, then torch.load) in this process under the address-space limit, and counts "refused by the
    checks" (a FileFormatError), "ok", and every other exception type: those are what
    ``files._pickles.LOAD_ERRORS`` must list.
    """
    import random
    import resource
    import tempfile
    import warnings

    from latentbridge.errors import FileFormatError
    from latentbridge.files import _containers

    resource.setrlimit(resource.RLIMIT_AS, (fh.MEMORY_LIMIT, fh.MEMORY_LIMIT))
    counts: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        seeds = [s for s in fh._latent_seeds(Path(tmp)) if s.main.endswith(".pt")]
        (Path(tmp) / "w").mkdir()
        seeds += [s for s in fh._weight_seeds(Path(tmp) / "w") if s.main.endswith((".pt", ".ckpt"))]
        for i in range(cases):
            rng = random.Random(f"pt:{i}")
            seed = rng.choice(seeds)
            name, data = fh.mutate(rng, seed.files[seed.main])
            path = fh.write_case(
                fh.Case(i, "pt", seed.name, seed.main, name, {seed.main: data}, seed.main), Path(tmp) / "c"
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    _containers.load_pickle(path, mmap=data[:2] == b"PK" and rng.random() < 0.5)
                    counts["ok"] += 1
                except FileFormatError:
                    counts["refused by the checks"] += 1
                except Exception as exc:
                    counts[type(exc).__name__] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=int, default=0, help="first case index (to replay a range)")
    ap.add_argument("--targets", nargs="*", default=None, help=f"default: all of {', '.join(fh.default_targets())}")
    ap.add_argument("--timeout", type=float, default=fh.CASE_TIMEOUT, help="seconds per case before a hang")
    ap.add_argument("--memory-gb", type=float, default=fh.MEMORY_LIMIT / 2**30, help="address-space limit")
    ap.add_argument("--label", default="", help="a name for this run in the output (e.g. baseline)")
    ap.add_argument("--no-write", action="store_true", help="print only; do not write benchmarks/results")
    ap.add_argument(
        "--torch-load-errors",
        type=int,
        default=0,
        metavar="N",
        help="instead: count what torch.load raises on N mutated .pt files that pass the checks",
    )
    args = ap.parse_args(argv)
    if args.torch_load_errors:
        counts = torch_load_errors(args.torch_load_errors)
        print(", ".join(f"{k} {v}" for k, v in counts.most_common()))
        return 0

    done = [0]
    t_last = [time.perf_counter()]

    def progress(line: dict) -> None:
        done[0] += 1
        if time.perf_counter() - t_last[0] > 30:
            t_last[0] = time.perf_counter()
            print(f"  {done[0]}/{args.cases} cases", file=sys.stderr, flush=True)

    report = fh.run(
        args.cases,
        seed=args.seed,
        targets=args.targets,
        start=args.start,
        memory_limit=int(args.memory_gb * 2**30),
        timeout=args.timeout,
        on_line=progress,
    )
    kinds = report.kinds()
    summary = {
        "label": args.label,
        "cases": report.cases,
        "seed": args.seed,
        "start": args.start,
        "targets": args.targets or fh.default_targets(),
        "memory_limit_gb": args.memory_gb,
        "timeout_s": args.timeout,
        "seconds": round(report.seconds, 1),
        "slowest_case_s": report.slowest,
        "kinds": dict(kinds),
        "outcomes": dict(report.outcomes.most_common()),
        "by_target": {k: dict(v) for k, v in report.by_target.items()},
        "examples": {k: v for k, v in report.examples.items() if fh.is_finding(k.split(" ", 1)[0])},
        "python": platform.python_version(),
        "nice": os.nice(0),
    }
    findings = sum(report.findings.values())
    md = [
        f"# Reader fuzzing{f' ({args.label})' if args.label else ''}",
        "",
        f"`python benchmarks/fuzz_readers.py --cases {args.cases} --seed {args.seed}` — {report.cases} cases in "
        f"{report.seconds:.0f} s ({report.seconds / max(report.cases, 1) * 1000:.1f} ms a case, workers at nice "
        f"{os.nice(0)}, one torch thread), address space limited to {args.memory_gb:g} GiB per worker, "
        f"{args.timeout:g} s per case (a stalled case is retried once with 3× the time before it counts as a "
        f"hang); slowest case {report.slowest:.2f} s.",
        "",
        *_table(report),
        "",
        f"**{kinds.get('unhandled', 0)} unhandled, {kinds.get('unnamed', 0)} unnamed, {kinds.get('hang', 0)} "
        f"hangs, {kinds.get('memory', 0)} memory blow-ups, {kinds.get('crash', 0)} crashes** "
        f"({findings / max(report.cases, 1):.2%} of cases break the contract).",
        "",
    ]
    if findings:
        md += ["| finding | count | example (target / seed / mutator) | message |", "|---|---:|---|---|"]
        md += _findings(report)
        md.append("")
    md.append("Outcome counts by exact type: " + ", ".join(f"`{k}` {v}" for k, v in report.outcomes.most_common()))
    text = "\n".join(md) + "\n"
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stem = "fuzz" + (f"_{args.label}" if args.label and args.label != "final" else "")
        for name, body in ((f"{stem}.md", text), (f"{stem}.json", json.dumps(summary, indent=1) + "\n")):
            tmp = RESULTS / f".{name}.tmp"
            tmp.write_text(body)
            os.replace(tmp, RESULTS / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
