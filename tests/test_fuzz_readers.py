"""The fuzz suite: 5,000 mutated files through every reader, each answered by one of the project's own errors.

The harness (targets, seeds, mutators, the isolated runner) is ``tests/fuzz_harness.py``; the benchmark
``benchmarks/fuzz_readers.py`` runs ≥ 10⁵ cases of it. Every test in this module carries the ``fuzz`` mark
(``pytest -m "not fuzz"`` leaves it out). Cases run in worker processes under a 4 GiB address-space limit with a
10 s per-case timeout, so a regression shows up as a counted finding (an exception type, a hang, a memory blow-up),
never as a stuck or killed test session.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import fuzz_harness as fh
import pytest

from latentbridge.errors import FileFormatError

pytestmark = pytest.mark.fuzz

CI_CASES = 5_000
CI_SEED = 1  # the benchmark runs seed 0; CI looks at other cases of the same distribution


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[fh.Seed]]:
    return fh.build_seeds(fh.default_targets(), tmp_path_factory.mktemp("seeds"))


def test_every_reader_accepts_its_unmutated_seeds(seeds: dict[str, list[fh.Seed]], tmp_path: Path) -> None:
    """Fuzzing from files the readers already refuse would test nothing: every seed must read."""
    for name, target_seeds in seeds.items():
        assert target_seeds, name
        for seed in target_seeds:
            case = fh.Case(0, name, seed.name, seed.main, "none", dict(seed.files), seed.main)
            assert fh.run_case(case, tmp_path / "case") == (fh.OK, ""), (name, seed.name)


def test_cases_are_deterministic(seeds: dict[str, list[fh.Seed]]) -> None:
    names = fh.default_targets()
    for i in (0, 7, 4_999, 123_456):
        a, b = fh.make_case(i, 0, names, seeds), fh.make_case(i, 0, names, seeds)
        assert (a.target, a.seed, a.mutator, a.files) == (b.target, b.seed, b.mutator, b.files)
    assert fh.make_case(3, 0, names, seeds).files != fh.make_case(3, 1, names, seeds).files


def test_structure_aware_mutators_keep_the_container_valid_around_the_damage(seeds: dict[str, list[fh.Seed]]) -> None:
    latent = next(s for s in seeds["read_latent"] if s.name == "latentbridge-latent")
    data = latent.files[latent.main]
    for i in range(50):
        out = fh.safetensors_json(random.Random(i), data)
        assert out is not None and out != data
        (n,) = struct.unpack("<Q", out[:8])
        text = out[8 : 8 + n].decode()
        if '"\\u0000deep' not in text:  # the header is still JSON (deep nesting included, spliced in as text)
            json.loads(text) if text.count("[") < 500 else None
    npy = next(s for s in seeds["read_latent"] if s.name == "plain-npy").files["plain.npy"]
    assert all(fh.npy_header(random.Random(i), npy)[:6] == b"\x93NUMPY" for i in range(20))
    npz = next(s for s in seeds["read_latent"] if s.name == "kohya-npz").files["cache_sd.npz"]
    assert all((m := fh.zip_member(random.Random(i), npz)) is None or m[:2] == b"PK" for i in range(20))
    png = seeds["png_metadata"][0].files["rgb.png"]
    assert all(fh.png_chunk(random.Random(i), png)[:8] == png[:8] for i in range(20))


def test_outcomes_are_classified_by_the_contract(tmp_path: Path) -> None:
    assert fh.classify_exception(FileFormatError(f"{tmp_path}/x: damaged"), tmp_path) == fh.REFUSED
    assert fh.classify_exception(FileFormatError("damaged"), tmp_path) == "unnamed:FileFormatError"
    assert fh.classify_exception(ValueError("x"), tmp_path) == "unhandled:ValueError"
    assert fh.classify_exception(MemoryError(), tmp_path) == "memory:MemoryError"
    assert fh.classify_exception(RuntimeError("DefaultCPUAllocator: can't allocate memory"), tmp_path).startswith(
        "memory"
    )
    assert all(fh.is_finding(k) for k in ("unhandled:KeyError", "hang", "crash:1", "memory:killed:-9", "unnamed:X"))
    assert not any(fh.is_finding(k) for k in (fh.OK, fh.REFUSED))
    with pytest.raises(ValueError, match="registered twice"):
        fh.register(fh.TARGETS["read_latent"])


def test_the_runner_counts_a_hang_and_a_crash_without_stopping() -> None:
    """A worker that stalls is killed and its case counted (after one retry); one that dies is counted; the run
    goes on with the next case."""
    report = fh.run(2, seed=0, targets=["_stall"], timeout=1.0)
    assert report.cases == 2 and report.kinds()["hang"] == 2
    report = fh.run(2, seed=0, targets=["_crash"])
    assert report.cases == 2 and report.outcomes["crash:3"] == 2


def test_5000_mutated_files_end_in_our_own_errors() -> None:
    report = fh.run(CI_CASES, seed=CI_SEED)
    assert report.cases == CI_CASES
    assert set(report.by_target) == set(fh.default_targets())  # every reader was fuzzed
    assert report.kinds()["refused"] > CI_CASES // 3  # the mutations do damage …
    assert report.kinds()["ok"] > CI_CASES // 10  # … and some leave a valid file (the readers are not refusing all)
    findings = {k: report.examples[e] for k in report.findings for e in report.examples if e.startswith(k + " ")}
    assert not report.findings, json.dumps(findings, indent=1)[:4000]
