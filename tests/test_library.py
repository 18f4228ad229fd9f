"""latentbridge.library and weights.hashes: the hashes users see against hand-computed values, scans of real folder
layouts holding real zoo VAEs, incremental rescans, concurrent readers, and provenance resolved to local files."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import struct
import threading
from pathlib import Path

import pytest
import safetensors.torch
import torch
from safetensors import safe_open

from latentbridge.errors import LibraryError
from latentbridge.library import Library, resolve_vae, which
from latentbridge.library import _library as library_module
from latentbridge.provenance import Evidence, ProvenanceReport
from latentbridge.weights import hashes
from latentbridge.weights.hashes import file_hashes
from latentbridge.zoo import zoo_path

EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of no bytes (FIPS 180-4)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- hash definitions -----------------------------------------------------------------------------------------


def test_hashes_against_hand_computed_values(tmp_path, monkeypatch):
    data = bytes((i * 7 + i // 251) % 256 for i in range(0x100000 + 0x10000 + 5000))  # past the AutoV1 window
    path = tmp_path / "big.ckpt"
    path.write_bytes(data)
    h = file_hashes(path)
    assert h.sha256 == _sha(data)
    assert h.autov2 == _sha(data)[:10]  # A1111 "Model hash"/"VAE hash", Civitai AutoV2
    assert h.autov1 == _sha(data[0x100000:0x110000])[:8]  # A1111 model_hash: 64 KiB at 1 MiB, 8 digits
    assert h.tensor_sha256 == ""  # not safetensors
    small = tmp_path / "small.pt"
    small.write_bytes(b"x" * 1000)
    assert file_hashes(small).autov1 == EMPTY_SHA256[:8]  # seek past the end reads nothing
    # chunk boundaries do not matter: the same values read 1000 bytes at a time
    monkeypatch.setattr(hashes, "_CHUNK", 1000)
    hashes.clear_cache()
    assert file_hashes(path) == h


def test_tensor_hash_excludes_the_header(tmp_path):
    t = {"a": torch.arange(300_000, dtype=torch.float32).reshape(3, -1), "b": torch.ones(7, dtype=torch.float16)}
    one, two = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    safetensors.torch.save_file(t, str(one), metadata={"modelspec.title": "first"})
    safetensors.torch.save_file(t, str(two), metadata={"modelspec.title": "second, longer title"})
    raw = one.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    h1, h2 = file_hashes(one), file_hashes(two)
    assert h1.tensor_sha256 == _sha(raw[8 + n :])  # SAI ModelSpec hash_sha256 / sd-scripts sshs_model_hash
    assert h1.sha256 != h2.sha256 and h1.tensor_sha256 == h2.tensor_sha256


# --- folder layouts ---------------------------------------------------------------------------------------------


def _copy(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(zoo_path(name), dest)
    return dest


def _checkpoint(dest: Path, with_vae: bool) -> Path:
    """A full checkpoint: UNet and text-encoder keys, plus zoo-a's VAE under first_stage_model. when ``with_vae``."""
    tensors = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
        "cond_stage_model.transformer.embeddings.weight": torch.zeros(10, 8),
    }
    meta = {}
    if with_vae:
        tensors.update(
            {f"first_stage_model.{k}": v for k, v in safetensors.torch.load_file(str(zoo_path("zoo-a"))).items()}
        )
        with safe_open(str(zoo_path("zoo-a")), "pt") as f:
            meta = dict(f.metadata())  # the zoo's format and config travel with its VAE
    dest.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(tensors, str(dest), metadata=meta)
    return dest


@pytest.fixture
def models(tmp_path) -> Path:
    """ComfyUI, A1111 and Hugging Face layouts holding real zoo VAEs."""
    root = tmp_path / "models"
    _copy("zoo-a", root / "vae" / "zoo-a.safetensors")
    _copy("zoo-b", root / "vae" / "SDXL" / "zoo-b.safetensors")
    _checkpoint(root / "checkpoints" / "baked.safetensors", with_vae=True)
    _checkpoint(root / "checkpoints" / "novae.safetensors", with_vae=False)
    (root / "unet").mkdir()
    (root / "unet" / "flux1-dev-Q4_K_S.gguf").write_bytes(b"GGUF" + b"\0" * 60)
    _copy("zoo-c", root / "loras" / "not-a-lora.safetensors")  # skipped folder
    # a Hugging Face cache: snapshot files are links into blobs/ named by their sha256
    repo = tmp_path / "hf" / "models--latentbridge--zoo-c"
    blob = repo / "blobs" / file_hashes(zoo_path("zoo-c")).sha256
    _copy("zoo-c", blob)
    snap = repo / "snapshots" / "0123abcd" / "vae"
    snap.mkdir(parents=True)
    (snap / "diffusion_pytorch_model.safetensors").symlink_to(blob)
    from latentbridge.zoo import zoo_info

    (snap / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **zoo_info()["zoo-c"]["config"]}))
    return root


def test_scan_layouts(models, tmp_path):
    lib = Library(tmp_path / "home")
    report = lib.scan(models, tmp_path / "hf")
    assert (report.found, report.added, report.hashed, report.errors) == (6, 6, 6, ())
    assert report.skipped == (str(models / "loras"),)
    by = {Path(e.path).relative_to(tmp_path).as_posix(): e for e in lib.entries()}
    a = by["models/vae/zoo-a.safetensors"]
    assert (a.kind, a.format, a.folder, a.rel, a.has_decoder) == ("vae", "zoo-a", "vae", "zoo-a.safetensors", True)
    assert a.sha256 == _sha(zoo_path("zoo-a").read_bytes()) and a.autov2 == a.sha256[:10]
    assert by["models/vae/SDXL/zoo-b.safetensors"].rel == "SDXL/zoo-b.safetensors"
    baked, novae = by["models/checkpoints/baked.safetensors"], by["models/checkpoints/novae.safetensors"]
    assert (baked.kind, baked.has_vae, novae.kind, novae.has_vae) == ("checkpoint", True, "checkpoint", False)
    gguf = by["models/unet/flux1-dev-Q4_K_S.gguf"]
    assert gguf.kind == "diffusion_model" and "GGUF" in gguf.note
    hf = by["hf/models--latentbridge--zoo-c/snapshots/0123abcd/vae"]
    assert (hf.kind, hf.hf_repo, hf.sha256) == ("vae", "latentbridge/zoo-c", file_hashes(zoo_path("zoo-c")).sha256)
    assert lib.counts() == {"vae": 3, "checkpoint": 2, "diffusion_model": 1}


def test_rescan_is_incremental(models, tmp_path, monkeypatch):
    lib = Library(tmp_path / "home")
    first = lib.scan(models)
    calls: list[Path] = []
    real = library_module.file_hashes
    monkeypatch.setattr(library_module, "file_hashes", lambda p: calls.append(Path(p)) or real(p))
    read: list[object] = []
    real_identify = library_module.identify_candidate
    monkeypatch.setattr(library_module, "identify_candidate", lambda c: read.append(c) or real_identify(c))
    again = lib.scan(models)
    assert (again.unchanged, again.hashed, again.added, again.updated) == (first.found, 0, 0, 0)
    assert calls == [] and read == []  # an unchanged tree: no header read, no byte hashed
    target = models / "vae" / "zoo-a.safetensors"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    (models / "checkpoints" / "novae.safetensors").unlink()
    _copy("zoo-b", models / "vae" / "new.safetensors")
    third = lib.scan(models)
    assert (third.updated, third.removed, third.added, third.hashed) == (1, 1, 1, 2)
    assert sorted(p.name for p in calls) == ["new.safetensors", "zoo-a.safetensors"]
    names = lib.scan(models, hash=False)  # names-only scan after hashing keeps the hashes, reads nothing
    assert names.hashed == 0 and all(e.sha256 for e in lib.entries() if e.kind == "vae")


def test_find_by_name_hash_family(models, tmp_path):
    lib = Library(tmp_path / "home")
    lib.scan(models)
    a = next(e for e in lib.entries("vae") if e.name == "zoo-a.safetensors")
    assert [e.path for e in lib.find(a.autov2)] == [a.path]
    assert [e.path for e in lib.find(a.autov1)] == [a.path]
    assert [e.path for e in lib.find("0x" + a.tensor_sha256[:12])] == [a.path]
    assert {e.name for e in lib.find("zoo-a")} == {"zoo-a.safetensors", "baked.safetensors"}  # the family
    assert [e.name for e in lib.find("SDXL/zoo")] == ["zoo-b.safetensors"]  # part of a path
    assert lib.find(a.sha256[:7]) == ()  # 7 hex digits are a name fragment, and no name holds them
    assert lib.find("") == ()


# --- provenance to files ----------------------------------------------------------------------------------------


def _comfy_vae(name: str, relation: str = "decoded") -> ProvenanceReport:
    return ProvenanceReport(
        (Evidence("vae", relation, "ComfyUI prompt", name, via=("VAELoader #10",)),), (), ("ComfyUI prompt",)
    )


def test_resolve_by_name_hash_and_refusals(models, tmp_path):
    lib = Library(tmp_path / "home")
    lib.scan(models)
    a = next(e for e in lib.entries("vae") if e.name == "zoo-a.safetensors")
    got = resolve_vae(_comfy_vae("zoo-a.safetensors"), lib)
    assert got.path == a.path and got.spec == a.path
    assert got.reasons[0] == (
        f"the ComfyUI prompt decoded it with vae 'zoo-a.safetensors' (VAELoader #10); found at {a.path} "
        f"(matched by path), sha256 {a.sha256}"
    )
    assert resolve_vae(_comfy_vae("SDXL\\zoo-b.safetensors"), lib).path.endswith("SDXL/zoo-b.safetensors")  # Windows
    # A1111: the VAE's name is not here, its hash is
    b = next(e for e in lib.entries("vae") if e.name == "zoo-b.safetensors")
    by_hash = Evidence("vae", "decoded", "A1111 parameters", "renamed.safetensors", b.autov2, "sha256")
    got = resolve_vae(by_hash, lib)
    assert got.path == b.path and f"matched by sha256 {b.autov2}" in got.reasons[0]
    # a file of the recorded name with other content is another version: not used
    wrong = Evidence("vae", "decoded", "A1111 parameters", "zoo-a.safetensors", "0123456789", "sha256")
    with pytest.raises(LibraryError, match=r"none has the recorded sha256 0123456789.*other versions"):
        resolve_vae(wrong, lib)
    # A1111 writes "Model" without the extension, sub-folders joined by "_" (CheckpointInfo.model_name)
    a1111 = Evidence("checkpoint", "decoded", "A1111 parameters", "baked")
    assert resolve_vae(a1111, lib).path.endswith("checkpoints/baked.safetensors")
    assert "A1111 model name" in resolve_vae(a1111, lib).reasons[0]
    assert lib.by_name("SDXL_zoo-b").entries == (b,)
    # a checkpoint's baked-in VAE is used; a checkpoint without one is reported, never used
    baked = Evidence("checkpoint", "decoded", "ComfyUI prompt", "baked.safetensors")
    assert resolve_vae(baked, lib).path.endswith("checkpoints/baked.safetensors")
    novae = Evidence("checkpoint", "sampled", "ComfyUI prompt", "novae.safetensors")
    with pytest.raises(LibraryError, match=r"checkpoint 'novae.safetensors' has no baked-in VAE, so it cannot decode"):
        resolve_vae(novae, lib)
    with pytest.raises(
        LibraryError, match=r"looked for vae 'sdxl_vae.safetensors' \(ComfyUI prompt, decoded\).*holds 2 VAEs"
    ):
        resolve_vae(_comfy_vae("sdxl_vae.safetensors"), lib)
    with pytest.raises(
        LibraryError, match=r"names no VAE or checkpoint \(read: no provenance metadata\); pass --vae FILE"
    ):
        resolve_vae(ProvenanceReport(), lib)


def test_ambiguous_names_and_identical_copies(tmp_path):
    root = tmp_path / "models"
    _copy("zoo-a", root / "vae" / "x" / "vae.safetensors")
    _copy("zoo-b", root / "vae" / "y" / "vae.safetensors")
    _copy("zoo-c", root / "VAE" / "same.safetensors")  # A1111 layout
    _copy("zoo-c", root / "vae" / "same.safetensors")
    lib = Library(tmp_path / "home")
    lib.scan(root)
    with pytest.raises(LibraryError, match=r"2 different files match it by file name.*will not guess"):
        resolve_vae(_comfy_vae("vae.safetensors"), lib)
    assert resolve_vae(_comfy_vae("x/vae.safetensors"), lib).path.endswith("x/vae.safetensors")  # the path decides
    got = resolve_vae(_comfy_vae("same.safetensors"), lib)
    assert "2 identical copies are indexed" in got.reasons[1]


def test_strongest_evidence_first_and_builtin_zoo(models, tmp_path):
    lib = Library(tmp_path / "home")
    lib.scan(models)
    report = ProvenanceReport(
        (
            Evidence("checkpoint", "sampled", "ComfyUI prompt", "baked.safetensors"),
            Evidence("vae", "listed", "ComfyUI workflow", "SDXL/zoo-b.safetensors"),
            Evidence("vae", "encoded", "ComfyUI prompt", "zoo-a.safetensors"),
        ),
        (),
        ("ComfyUI prompt",),
    )
    got = resolve_vae(report, lib)
    assert got.entry.name == "zoo-a.safetensors" and got.evidence.relation == "encoded"
    assert [c.evidence.relation for c in which(report, lib).candidates] == ["encoded", "sampled", "listed"]
    # two different files named equally strongly: refused, never a guess
    two = ProvenanceReport(
        (
            Evidence("vae", "decoded", "ComfyUI prompt", "zoo-a.safetensors", via=("VAELoader #1",)),
            Evidence("vae", "decoded", "ComfyUI prompt", "SDXL/zoo-b.safetensors", via=("VAELoader #2",)),
        ),
        (),
        ("ComfyUI prompt",),
    )
    with pytest.raises(LibraryError, match=r"names 2 different files equally strongly .*will not guess"):
        resolve_vae(two, lib)
    listed = ProvenanceReport((Evidence("vae", "listed", "ComfyUI workflow", "zoo-a.safetensors"),), (), ("x",))
    assert "lists vae 'zoo-a.safetensors'" in resolve_vae(listed, lib).reasons[0]
    # a latentbridge record of a zoo VAE that no scanned folder holds: the built-in zoo answers, by hash
    zoo_c = file_hashes(zoo_path("zoo-c")).sha256
    rec = Evidence("vae", "encoded", "latentbridge record", "zoo-c", zoo_c, "sha256")
    assert resolve_vae(rec, Library(tmp_path / "empty")).spec == "zoo-c"


# --- the database ---------------------------------------------------------------------------------------------


def test_schema_versioned_wal_and_concurrent_readers(models, tmp_path):
    lib = Library(tmp_path / "home")
    with sqlite3.connect(lib.path) as con:
        assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("1",)
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    lib.scan(models)
    before = len(lib.entries())
    writer = sqlite3.connect(lib.path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM files")  # an uncommitted write, as during a scan
    assert len(lib.entries()) == before  # readers run and see the last committed state
    writer.execute("ROLLBACK")
    writer.close()
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                lib.entries()
            except BaseException as exc:  # collected, re-raised by the assert below
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(3):
            (models / "vae" / "zoo-a.safetensors").touch()
            lib.scan(models)
    finally:
        done.set()
        reader.join()
    assert errors == []


def test_bad_homes(tmp_path):
    home = tmp_path / "newer"
    Library(home)
    with sqlite3.connect(home / "library.sqlite") as con:
        con.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    with pytest.raises(LibraryError, match=r"written by a newer latentbridge \(library schema 2; this one reads 1\)"):
        Library(home)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "library.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(LibraryError, match="is not a usable latentbridge library"):
        Library(junk)
    with pytest.raises(LibraryError, match="not a folder"):
        Library(tmp_path / "h").scan(tmp_path / "missing")


def test_cancel_stops_between_files(models, tmp_path):
    lib = Library(tmp_path / "home")
    stop = threading.Event()
    seen: list[str] = []

    def progress(done: int, total: int, path: str) -> None:
        seen.append(path)
        stop.set()

    report = lib.scan(models, progress=progress, cancel=stop)
    assert report.cancelled and len(seen) == 1 and len(lib.entries()) == 1 and report.removed == 0
