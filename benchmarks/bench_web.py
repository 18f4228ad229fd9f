"""Benchmark: the web service under load on loopback — check requests from concurrent clients, then concurrent
decode jobs of the zoo, against a real `latentbridge serve` process.

The server is started as its own process (``latentbridge serve --root TMP --workers W``, ``OMP_NUM_THREADS=1``) on
a free 127.0.0.1 port; the clients are threads of this process with one keep-alive HTTP connection each. Phases:

1. ``--checks`` POST /api/check requests (a zoo latent of a real photo against a zoo VAE: the header-only check)
   spread over ``--clients`` concurrent clients, after ``--warmup`` unmeasured ones;
2. ``--decodes`` decode jobs submitted at once (zoo-a/b/c latents of 256-px photos, each with its own VAE), each
   followed on its server-sent-event stream until it ends: the latency is submit → last event.

Reported: p50/p99 latency per phase, requests per second, errors (any non-2xx answer or a job that did not end
"done"), and the server's peak resident memory (VmHWM). Every loop is bounded in count and time; only loopback
is contacted.

Usage::

    nice -n 10 python benchmarks/bench_web.py                    # 200 checks × 8 clients, 20 decodes, 2 workers

Writes benchmarks/results/web.json and web.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

import latentbridge as lb
from latentbridge.files import atomic_write
from latentbridge.photos import photo_tensor
from latentbridge.zoo import ZOO_NAMES

RESULTS = Path(__file__).resolve().parent / "results"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
DEADLINE_S = 600.0  # the whole benchmark stops by then, whatever happens


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Client:
    """One keep-alive connection per thread."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def conn(self) -> http.client.HTTPConnection:
        c = getattr(self.local, "conn", None)
        if c is None:
            c = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        return c

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(2):  # a keep-alive connection the server closed is opened again once
            c = self.conn()
            try:
                c.request(method, path, body=data, headers=headers)
                r = c.getresponse()
                return r.status, r.read()
            except (ConnectionError, http.client.HTTPException):
                c.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def follow(self, events: str) -> dict:
        """Read a job's event stream to its end (a fresh connection: the stream holds it)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=300)
        try:
            c.request("GET", events)
            r = c.getresponse()
            kind, last = "", {}
            for raw in r:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: ") and kind in ("done", "error", "cancelled"):
                    last = json.loads(line.removeprefix("data: "))
            return last
        finally:
            c.close()


def make_root(folder: Path, size: int) -> list[tuple[str, str]]:
    """Latents of real photos, each encoded with one zoo VAE: [(file name, zoo name)]."""
    out = []
    for name in ZOO_NAMES:
        vae = lb.load_vae(name)
        for photo in PHOTOS:
            path = folder / f"{photo}.{name}.latent"
            lb.write_latent(lb.encode(vae, photo_tensor(photo, size)), path, overwrite=True)
            out.append((path.name, name))
    return out


def start_server(root: Path, port: int, workers: int, work: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = "from latentbridge.cli import main; main()"
    args = ["serve", "--port", str(port), "--root", str(root), "--workers", str(workers), "--work-dir", str(work)]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stderr=subprocess.PIPE, text=True)
    client = Client(port)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if client.request("GET", "/api/info")[0] == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not answer within 120 s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checks", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--decodes", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=256, help="photo side in pixels")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lb-bench-web-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        latents = make_root(root, args.size)
        port = free_port()
        t0 = time.perf_counter()
        server = start_server(root, port, args.workers, Path(tmp) / "work")
        startup_s = time.perf_counter() - t0
        client = Client(port)
        try:
            results = run_phases(client, latents, args, started)
            results["server"] = {"startup_s": round(startup_s, 2), "peak_rss_mb": round(peak_rss_mb(server.pid), 1)}
        finally:
            server.terminate()
            server.wait(30)
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    results["settings"] = vars(args)
    RESULTS.mkdir(exist_ok=True)
    atomic_write(RESULTS / "web.json", json.dumps(results, indent=1).encode())
    atomic_write(RESULTS / "web.md", render(results).encode())
    print(render(results))


def run_phases(client: Client, latents: list[tuple[str, str]], args: argparse.Namespace, started: float) -> dict:
    def check(i: int) -> tuple[float, int]:
        name, zoo = latents[i % len(latents)]
        other = ZOO_NAMES[(ZOO_NAMES.index(zoo) + i) % len(ZOO_NAMES)]  # right and wrong pairings
        t = time.perf_counter()
        status, _ = client.request("POST", "/api/check", {"latent": {"path": name}, "vae": {"zoo": other}})
        return time.perf_counter() - t, status

    first = [check(i) for i in range(args.warmup)]  # loads profiles, headers: not measured
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        done = list(pool.map(check, range(args.checks)))
    wall = time.perf_counter() - t0
    lat = [d for d, _ in done]
    checks = {
        "requests": args.checks,
        "clients": args.clients,
        "first_request_ms": round(first[0][0] * 1000, 1) if first else None,
        "p50_ms": round(percentile(lat, 50) * 1000, 1),
        "p99_ms": round(percentile(lat, 99) * 1000, 1),
        "max_ms": round(max(lat) * 1000, 1),
        "per_second": round(args.checks / wall, 1),
        "errors": sum(s != 200 for _, s in done) + sum(s != 200 for _, s in first),
    }
    if time.monotonic() - started > DEADLINE_S:
        raise RuntimeError("the benchmark ran past its deadline")

    def decode(i: int) -> tuple[float, bool]:
        name, zoo = latents[i % len(latents)]
        t = time.perf_counter()
        status, body = client.request("POST", "/api/jobs/decode", {"latent": {"path": name}, "vae": {"zoo": zoo}})
        if status != 202:
            return time.perf_counter() - t, False
        job = json.loads(body)
        final = client.follow(job["events"])
        return time.perf_counter() - t, final.get("state") == "done"

    warm = [decode(i) for i in range(len(ZOO_NAMES))]  # each VAE loaded once before the measured burst
    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.decodes) as pool:
        jobs = list(pool.map(decode, range(args.decodes)))
    wall = time.perf_counter() - t0
    lat = [d for d, _ in jobs]
    decodes = {
        "jobs": args.decodes,
        "submitted_at_once": args.decodes,
        "workers": args.workers,
        "size_px": args.size,
        "first_per_vae_s": [round(d, 2) for d, _ in warm],
        "p50_s": round(percentile(lat, 50), 2),
        "p99_s": round(percentile(lat, 99), 2),
        "wall_s": round(wall, 2),
        "per_second": round(args.decodes / wall, 2),
        "errors": sum(not ok for _, ok in jobs) + sum(not ok for _, ok in warm),
    }
    return {"checks": checks, "decodes": decodes}


def render(r: dict) -> str:
    c, d, s, m = r["checks"], r["decodes"], r["server"], r["machine"]
    return "\n".join(
        [
            "# Web service under load (benchmarks/bench_web.py)",
            "",
            f"`latentbridge serve` on 127.0.0.1 ({d['workers']} job workers, OMP_NUM_THREADS=1), clients in another "
            f"process; {m['cpus']} CPUs, load average {m['load_average']} at the end, torch {m['torch']}.",
            "",
            "| phase | count | concurrency | p50 | p99 | max | throughput | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            f"| POST /api/check (header-only VAE facts) | {c['requests']} | {c['clients']} clients | "
            f"{c['p50_ms']} ms | {c['p99_ms']} ms | {c['max_ms']} ms | {c['per_second']} /s | {c['errors']} |",
            f"| decode job, submit → last event ({d['size_px']} px zoo latents) | {d['jobs']} | all at once | "
            f"{d['p50_s']} s | {d['p99_s']} s | — | {d['per_second']} /s | {d['errors']} |",
            "",
            f"Server: started in {s['startup_s']} s; peak resident memory {s['peak_rss_mb']} MB (VmHWM). First check "
            f"request {c['first_request_ms']} ms (profiles and headers loaded); first decode per zoo VAE (its load): "
            f"{', '.join(f'{x} s' for x in d['first_per_vae_s'])}. With 20 jobs and {d['workers']} workers the "
            "decode latency is mostly queueing: p50 ≈ half the burst's wall time.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
