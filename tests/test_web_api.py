"""The web service (latentbridge.web) through FastAPI's TestClient: every endpoint against the face it mirrors,
files and their limits, jobs with progress and cancel, the VAE cache, errors as JSON, the security defaults."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn) is not installed: pip install '.[web]'")
from fastapi.testclient import TestClient

import latentbridge as lb
from latentbridge.photos import photo_tensor
from latentbridge.web import WebConfig, create_app
from latentbridge.web._jobs import JobPool
from latentbridge.web._vaes import VaeCache
from latentbridge.weights import describe, resolve_spec
from latentbridge.zoo import zoo_path

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A served folder: a zoo-a latent of a real photo, a copy of zoo-a's weights, a sub-folder, a link inside."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("root")
    vae = lb.load_vae("zoo-a")
    latent = lb.encode(vae, photo_tensor("astronaut", 128))
    lb.write_latent(latent, folder / "astronaut.latent")
    (folder / "models").mkdir()
    shutil.copy(zoo_path("zoo-a"), folder / "models" / "zoo-a-copy.safetensors")
    os.symlink(folder / "astronaut.latent", folder / "inside-link.latent")
    return folder


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    secret = tmp_path_factory.mktemp("outside") / "secret.latent"
    secret.write_bytes(b"not for clients")
    return secret


@pytest.fixture(scope="module")
def client(root, outside, tmp_path_factory):
    os.symlink(outside, root / "escape.latent")
    home = tmp_path_factory.mktemp("library")
    app = create_app(WebConfig(roots=(root,), library=home, workers=3))
    with TestClient(app) as c:
        yield c


def upload(client, path: Path, name: str | None = None) -> dict:
    with path.open("rb") as f:
        r = client.post("/api/files", files={"file": (name or path.name, f)})
    assert r.status_code == 201, r.text
    return r.json()


def wait(client, job: dict, timeout: float = 120.0) -> dict:
    """The job once it has ended (read from its event stream, whose last event carries it)."""
    events = []
    with client.stream("GET", job["events"]) as stream:
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    assert events and events[-1][0] in ("done", "error", "cancelled"), events
    final = events[-1][1]
    final["_events"] = events
    return final


def png_pixels(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def error_of(r) -> dict:
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"error"} and {"type", "message", "status"} <= set(body["error"]), body
    assert "Traceback" not in r.text and 'File "' not in r.text
    return body["error"]


# --- the registry, the catalogue ----------------------------------------------------------------------------------


def test_formats_and_findings_are_the_face_s(client):
    formats = client.get("/api/formats").json()
    assert [f["name"] for f in formats] == list(lb.list_formats())
    assert client.get("/api/formats/sdxl").json()["scale"] == lb.get_format("sdxl").scale
    err = error_of(client.get("/api/formats/sdxxl"))
    assert err["status"] == 400 and "sdxl" in err["message"]  # the registry's "Did you mean …?"
    assert client.get("/api/findings").json() == {code: kind.to_dict() for code, kind in lb.FINDINGS.items()}


# --- files ----------------------------------------------------------------------------------------------------


def test_upload_streams_to_disk_with_its_hash_and_kind(client, root):
    data = (root / "astronaut.latent").read_bytes()
    got = upload(client, root / "astronaut.latent", name="../../evil name?.latent")
    assert got["sha256"] == hashlib.sha256(data).hexdigest() and got["size"] == len(data)
    assert got["kind"] == "latent" and got["name"] == "evil name_.latent"  # the last part, harmless characters
    assert got["id"] in [u["id"] for u in client.get("/api/files").json()]
    weights = upload(client, zoo_path("zoo-b"))
    assert weights["kind"] == "weights"
    assert client.delete(f"/api/files/{weights['id']}").status_code == 204
    assert error_of(client.get(f"/api/files/{weights['id']}"))["status"] == 404


def test_an_upload_over_the_limit_is_413_and_leaves_nothing(tmp_path):
    app = create_app(WebConfig(work_dir=tmp_path / "work", max_upload_bytes=1000))
    with TestClient(app) as c:
        r = c.post("/api/files", files={"file": ("big.latent", b"x" * 5000)})
        err = error_of(r)
        assert r.status_code == 413 and "limit of 1,000 bytes" in err["message"] and "--root" in err["message"]

        def chunks():  # no Content-Length: the limit holds while streaming
            yield b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.latent"\r\n\r\n'
            for _ in range(10):
                yield b"y" * 500
            yield b"\r\n--B--\r\n"

        r = c.post("/api/files", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=B"})
        assert r.status_code == 413, r.text
        assert list((tmp_path / "work" / "uploads").iterdir()) == []
        r = c.post("/api/files", content=b"plain", headers={"Content-Type": "text/plain"})
        assert "multipart/form-data" in error_of(r)["message"] and r.status_code == 400


@pytest.mark.parametrize(
    ("path", "status", "words"),
    [
        ("../outside/secret.latent", 403, "climbs out with '..'"),
        ("models/../../x", 403, "climbs out"),
        ("/etc/passwd", 403, "absolute path"),
        ("C:\\Windows\\win.ini", 403, "absolute path"),
        ("~/secret", 403, "absolute path"),
        ("escape.latent", 403, "link that leads out"),
        ("nothing-here.latent", 404, "does not exist"),
    ],
)
def test_paths_outside_the_roots_are_refused(client, path, status, words):
    r = client.post("/api/inspect", json={"file": {"path": path}})
    err = error_of(r)
    assert r.status_code == status and words in err["message"], err
    assert "not for clients" not in r.text


def test_files_under_the_root_and_links_inside_it_are_served(client, root):
    a = client.post("/api/inspect", json={"file": {"path": "astronaut.latent"}}).json()
    b = client.post("/api/inspect", json={"file": {"path": "inside-link.latent"}}).json()
    assert a["latent"]["shape"] == b["latent"]["shape"] == [1, 4, 16, 16]
    names = {e["name"]: e for e in client.get("/api/browse").json()}
    assert "escape.latent" not in names and names["models"]["dir"] and "astronaut.latent" in names
    assert [e["path"] for e in client.get("/api/browse", params={"path": "models"}).json()] == [
        "models/zoo-a-copy.safetensors"
    ]
    assert client.get("/api/roots").json() == [{"index": 0, "name": root.name}]


# --- quick answers: the face's results, as they are ------------------------------------------------------------


def test_inspect_gives_the_file_s_facts(client, root):
    info = lb.open_latent(root / "astronaut.latent")
    got = client.post("/api/inspect", json={"file": {"path": "astronaut.latent"}}).json()
    assert got["kind"] == "latent" and got["latent"] == {**info.to_dict(), "file": "astronaut.latent"}
    assert got["stats"]["channels"] == lb.latent_stats(info.latent)["channels"]
    assert str(root) not in json.dumps(got)  # server paths never reach a client
    weights = client.post("/api/inspect", json={"file": {"path": "models/zoo-a-copy.safetensors"}}).json()
    expected = describe(root / "models" / "zoo-a-copy.safetensors").to_dict()
    assert weights["kind"] == "weights" and weights["weights"]["architecture"] == expected["architecture"]
    assert weights["weights"]["format"] == expected["format"] == "zoo-a"  # known by its content hash


def test_identify_and_check_answer_what_the_library_answers(client, root):
    lat = lb.read_latent(root / "astronaut.latent")
    ident = client.post("/api/identify", json={"latent": {"path": "astronaut.latent"}}).json()
    assert ident["summary"] == lb.identify(lat).summary and ident["recorded"] == "zoo-a raw"
    header_b = describe(resolve_spec("zoo-b")[0]).identity()
    want = lb.check(lat, header_b)
    got = client.post("/api/check", json={"latent": {"path": "astronaut.latent"}, "vae": {"zoo": "zoo-b"}}).json()
    assert got["verdict"] == want.verdict == "error"
    assert [f["code"] for f in got["findings"]] == list(want.codes())
    assert all(f["evidence_kind"] in lb.FINDINGS[f["code"]].evidence_kind for f in got["findings"])
    ok = client.post("/api/check", json={"latent": {"path": "astronaut.latent"}, "vae": {"zoo": "zoo-a"}}).json()
    assert ok["verdict"] == "ok" and ok["vae"]["name"] == "zoo-a"
    pre = client.post(
        "/api/check", json={"latent": {"path": "astronaut.latent"}, "vae": {"zoo": "zoo-a"}, "preflight": True}
    ).json()
    assert list(lb.check(lat, lb.load_vae("zoo-a"), preflight=True).codes()) == [f["code"] for f in pre["findings"]]


def test_preview_is_the_library_s_preview_as_a_png(client, root):
    lat = lb.read_latent(root / "astronaut.latent")
    r = client.post("/api/preview", json={"latent": {"path": "astronaut.latent"}, "upscale": 2})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert "published factors" in r.headers["x-preview"]
    want = lb.preview(lat)
    expected = np.asarray(Image.fromarray((want[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()))
    got = png_pixels(r.content)
    assert got.shape == (32, 32, 3) and np.array_equal(got[::2, ::2], expected)  # upscale 2: nearest neighbour


# --- jobs -----------------------------------------------------------------------------------------------------


def serial_png(lat, vae, run: lb.Run, tmp: Path) -> np.ndarray:
    images = lb.decode(vae, lat, run)
    return png_pixels(lb.save_images(images, tmp / "serial.png")[0].read_bytes())


def test_decode_reports_progress_and_gives_the_library_s_image(client, root, tmp_path):
    job = client.post("/api/jobs/decode", json={"latent": {"path": "astronaut.latent"}, "vae": {"zoo": "zoo-a"}})
    assert job.status_code == 202 and job.json()["state"] in ("queued", "running", "done")
    done = wait(client, job.json())
    assert done["state"] == "done", done["error"]
    progress = [d for kind, d in done["_events"] if kind == "progress"]
    assert progress and progress[-1]["done"] == progress[-1]["total"] >= 1 and progress[-1]["task"] == "decode zoo-a"
    assert done["result"]["check"]["verdict"] == "ok" and done["result"]["images"] == ["astronaut.png"]
    (file,) = done["files"]
    r = client.get(file["url"])
    assert r.headers["content-type"] == "image/png"
    lat = lb.read_latent(root / "astronaut.latent")
    assert np.array_equal(png_pixels(r.content), serial_png(lat, lb.load_vae("zoo-a"), lb.Run(), tmp_path))
    assert client.get(f"/api/jobs/{done['id']}").json()["state"] == "done"


def test_decode_refuses_an_error_verdict_unless_forced(client, root):
    """As `latentbridge decode`: the check's error refuses; force decodes a bare tensor the fingerprint doubts, and
    a latent recorded as another family still fails in the codec, with the codec's message."""
    body = {"latent": {"path": "astronaut.latent"}, "vae": {"zoo": "zoo-b"}}
    refused = wait(client, client.post("/api/jobs/decode", json=body).json())
    assert refused["state"] == "error" and refused["files"] == []
    assert refused["error"]["message"].startswith("refusing to decode, `latentbridge check` found family-mismatch")
    forced = wait(client, client.post("/api/jobs/decode", json={**body, "force": True}).json())
    assert (
        forced["state"] == "error" and "reads zoo-b latents; decode it with a zoo-a VAE" in forced["error"]["message"]
    )
    lat = lb.read_latent(root / "astronaut.latent")
    lb.write_latent(lb.Latent(lat.tensor, None, "raw"), root / "bare.npy", overwrite=True)
    bare = {"latent": {"path": "bare.npy"}, "vae": {"zoo": "zoo-b"}}
    refused = wait(client, client.post("/api/jobs/decode", json=bare).json())
    assert "fingerprint-mismatch" in refused["error"]["message"]
    forced = wait(client, client.post("/api/jobs/decode", json={**bare, "force": True}).json())
    assert forced["state"] == "done" and forced["result"]["check"]["verdict"] == "error" and forced["files"]


def test_concurrent_decodes_on_one_vae_equal_serial_ones(client, root, tmp_path):
    """Jobs with different runs (fp32, bf16, tiled with two GroupNorm passes) at once, on the one cached zoo-a."""
    upload_big = root / "big.latent"
    big = lb.encode(lb.load_vae("zoo-a"), photo_tensor("chelsea", 256))
    lb.write_latent(big, upload_big, overwrite=True)
    runs = [{}, {"dtype": "bf16"}, {"tile": 128, "overlap": 32}, {"tile": 128, "dtype": "bf16", "tile_passes": 1}]
    bodies = [{"latent": {"path": "big.latent"}, "vae": {"zoo": "zoo-a"}, "run": run} for run in runs]
    serial = []
    for body in bodies:
        done = wait(client, client.post("/api/jobs/decode", json=body).json())
        serial.append(png_pixels(client.get(done["files"][0]["url"]).content))
    jobs = [client.post("/api/jobs/decode", json=body).json() for body in bodies * 2]
    for i, job in enumerate(jobs):
        done = wait(client, job)
        assert done["state"] == "done", done["error"]
        got = png_pixels(client.get(done["files"][0]["url"]).content)
        assert np.array_equal(got, serial[i % len(runs)]), f"run {runs[i % len(runs)]} differs from its serial result"
    cache = client.get("/api/info").json()["vae_cache"]
    assert sum(e["name"] == "zoo-a" for e in cache["entries"]) == 1  # one VAE served every job


def test_a_running_job_is_cancelled_at_its_next_step_and_writes_nothing(client, root):
    huge = root / "huge.latent"
    lat = lb.read_latent(root / "astronaut.latent")
    lb.write_latent(lat.replace(tensor=lat.tensor.repeat(1, 1, 8, 8)), huge, overwrite=True)  # 1024 × 1024 px
    body = {"latent": {"path": "huge.latent"}, "vae": {"zoo": "zoo-a"}, "run": {"tile": 64, "overlap": 16}}
    job = client.post("/api/jobs/decode", json=body).json()
    with client.stream("GET", job["events"]) as stream:
        for line in stream.iter_lines():
            if line == "event: progress":
                break
    client.post(f"/api/jobs/{job['id']}/cancel")
    done = wait(client, job)
    assert done["state"] == "cancelled" and done["files"] == [] and "was cancelled" in done["error"]["message"]
    r = client.get(f"/api/jobs/{job['id']}/files/huge.png")
    assert error_of(r)["status"] == 404


def test_the_pool_is_bounded_and_a_queued_job_cancels_at_once(tmp_path):
    pool = JobPool(tmp_path, workers=1, max_jobs=2, keep_seconds=60, max_kept=10)
    gate, ran = threading.Event(), []
    first = pool.submit("block", lambda job: (gate.wait(30), {})[1], {})
    second = pool.submit("after", lambda job: ran.append(1) or {}, {})
    with pytest.raises(Exception, match="2 jobs are queued or running, this server's limit"):
        pool.submit("third", lambda job: {}, {})
    pool.cancel(second.id)
    assert second.state == "cancelled"
    gate.set()
    assert first.wait(30) and first.state == "done"
    pool.shutdown()
    assert ran == []  # the cancelled job never ran
    assert pool.expire(now=time.time() + 3600) == 2


def test_compare_transfer_and_report_jobs(client, root, tmp_path):
    base = {"latent": {"path": "astronaut.latent"}}
    cmp = wait(
        client, client.post("/api/jobs/compare", json={**base, "vaes": [{"zoo": "zoo-a"}, {"zoo": "zoo-b"}]}).json()
    )
    assert cmp["state"] == "done", cmp["error"]
    cands = cmp["result"]["comparison"]["candidates"]
    assert [c["name"] for c in cands] == ["zoo-a", "zoo-b"] and [c["verdict"] for c in cands] == ["ok", "error"]
    assert client.get(cmp["files"][0]["url"]).headers["content-type"] == "image/png"

    body = {**base, "from_vae": {"zoo": "zoo-a"}, "to_vae": {"zoo": "zoo-b"}, "report": True}
    moved = wait(client, client.post("/api/jobs/transfer", json=body).json())
    assert moved["state"] == "done", moved["error"]
    assert [r["method"] for r in moved["result"]["fidelity"]] == ["reencode"]
    assert moved["result"]["fidelity"][0]["psnr"] > 20  # zoo-a → zoo-b re-encode: ~31 dB (benchmarks/transfer.md)
    (file,) = moved["files"]
    (tmp_path / file["name"]).write_bytes(client.get(file["url"]).content)
    back = lb.read_latent(tmp_path / file["name"])
    assert back.format_name == "zoo-b" and back.shape == (1, 4, 16, 16)

    rep = wait(
        client, client.post("/api/jobs/report", json={"latents": [base["latent"]], "vaes": [{"zoo": "zoo-b"}]}).json()
    )
    assert rep["state"] == "done" and rep["result"]["latents"][0]["checks"] == [{"vae": "zoo-b", "verdict": "error"}]
    page = client.get(rep["files"][0]["url"])
    assert page.headers["content-type"].startswith("text/html") and "astronaut.latent" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_library_scan_and_a_vae_from_it(client):
    job = client.post("/api/jobs/scan", json={"dirs": [{"path": "models"}]}).json()
    done = wait(client, job)
    assert done["state"] == "done" and done["result"]["added"] == 1, done
    (entry,) = client.get("/api/library").json()
    assert entry["name"] == "zoo-a-copy.safetensors" and entry["format"] == "zoo-a"
    assert client.get("/api/library/find", params={"q": entry["sha256"][:10]}).json()[0]["path"] == entry["path"]
    body = {"latent": {"path": "astronaut.latent"}, "vae": {"library": entry["sha256"]}}
    assert client.post("/api/check", json=body).json()["verdict"] == "ok"
    vaes = client.get("/api/info").json()["vaes"]
    assert {"library": entry["sha256"]} in [v["ref"] for v in vaes]
    missing = client.post("/api/check", json={**body, "vae": {"library": "0" * 64}})
    assert error_of(missing)["status"] == 404


def test_the_vae_cache_keys_by_content_and_holds_its_bound(client, root):
    before = client.get("/api/info").json()["vae_cache"]
    a1 = upload(client, zoo_path("zoo-a"), name="first.safetensors")
    a2 = upload(client, zoo_path("zoo-a"), name="second.safetensors")
    for up in (a1, a2):
        job = {"latent": {"path": "astronaut.latent"}, "vae": {"upload": up["id"]}}
        assert wait(client, client.post("/api/jobs/decode", json=job).json())["state"] == "done"
    after = client.get("/api/info").json()["vae_cache"]
    assert after["misses"] == before["misses"]  # the same bytes as the zoo's zoo-a: loaded once, by content
    small = VaeCache(max_bytes=1)
    sha_a, sha_b = (small.content_hash(zoo_path(n)) for n in ("zoo-a", "zoo-b"))
    small.get("zoo-a", sha_a)
    small.get("zoo-b", sha_b)
    assert [e["name"] for e in small.to_dict()["entries"]] == ["zoo-b"] and small.evicted == 1


# --- errors ----------------------------------------------------------------------------------------------------


def test_errors_are_json_with_the_cli_s_text(client, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    up = upload(client, bad)
    r = client.post("/api/identify", json={"latent": {"upload": up["id"]}})
    with pytest.raises(lb.LatentBridgeError) as raised:
        lb.open_latent(bad)
    err = error_of(r)
    assert r.status_code == 400 and err["type"] == type(raised.value).__name__
    assert err["message"] == str(raised.value).replace(str(bad), "broken.safetensors")  # the CLI's line, no path
    assert error_of(client.get("/api/nothing"))["status"] == 404
    invalid = client.post("/api/check", json={"latent": {"path": "a", "upload": "b"}, "vae": {}})
    assert invalid.status_code == 422 and "exactly one of" in error_of(invalid)["message"]
    assert error_of(client.get("/api/jobs/nope"))["status"] == 404
    assert error_of(client.post("/api/files/x"))["status"] == 405


# --- security --------------------------------------------------------------------------------------------------


def test_security_defaults(tmp_path):
    with pytest.raises(lb.LatentBridgeError, match="pass --token SECRET"):
        WebConfig(host="0.0.0.0")
    app = create_app(WebConfig(host="0.0.0.0", token="s3cret", work_dir=tmp_path / "a"))
    with TestClient(app) as c:
        r = c.get("/api/info")
        assert r.status_code == 401 and "needs its token" in error_of(r)["message"]
        assert c.get("/api/info", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/info", headers={"Authorization": "Bearer wrong"}).status_code == 401
        page = c.get("/", params={"token": "s3cret"})
        assert page.status_code == 200 and "lb_token=s3cret" in page.headers["set-cookie"]
        assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
        assert c.get("/api/info").status_code == 200  # the cookie the page set
    app = create_app(WebConfig(work_dir=tmp_path / "b", allowed_hosts=("127.0.0.1", "localhost")))
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        r = c.get("/api/info", headers={"Origin": "http://evil.example"})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers  # no CORS by default
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        r = c.post("/api/files", files={"file": ("a.latent", b"x")}, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "may not change anything here" in error_of(r)["message"]
        r = c.post("/api/files", files={"file": ("a.latent", b"x")}, headers={"Origin": "http://127.0.0.1:8765"})
        assert r.status_code == 201
        r = c.get("/api/info", headers={"Host": "rebound.example:8765"})
        assert r.status_code == 403 and "is not served here" in error_of(r)["message"]
    app = create_app(WebConfig(work_dir=tmp_path / "c", cors_origins=("http://tool.example",)))
    with TestClient(app) as c:
        pre = c.options(
            "/api/check",
            headers={"Origin": "http://tool.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"},
        )  # fmt: skip
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://tool.example"


def test_serve_refuses_a_public_address_without_a_token():
    from typer.testing import CliRunner

    from latentbridge.cli import app

    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"], env={"LATENTBRIDGE_TOKEN": ""})
    assert result.exit_code == 1 and "pass --token SECRET" in result.output


def test_library_warnings_reach_the_job_that_caused_them(client, root):
    """A memory budget far below the decode's peak turns tiling on, announced with a LatentBridgeWarning: with
    capture_warnings (what `latentbridge serve` calls) it lands on that job's events and status."""
    import warnings

    from latentbridge.web import capture_warnings

    with warnings.catch_warnings():  # restores the filters and showwarning afterwards
        capture_warnings()
        # the whole 128-px decode is estimated at ~10 MB: 8 MB calls for tiles (below ~6 MB even tiles do not fit)
        body = {"latent": {"path": "astronaut.latent"}, "vae": {"zoo": "zoo-a"}, "run": {"max_memory": 8 << 20}}
        done = wait(client, client.post("/api/jobs/decode", json=body).json())
    assert done["state"] == "done", done["error"]
    assert done["warnings"] and "exceeds max_memory" in done["warnings"][0]
    assert any(kind == "warning" for kind, _ in done["_events"])


class _Payload:
    """A pickle that would write a file when unpickled without weights_only."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def test_an_uploaded_pickle_with_code_is_refused_and_runs_nothing(client, tmp_path):
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"latent": torch.zeros(1, 4, 8, 8), "x": _Payload(marker)}, evil)
    up = upload(client, evil)
    assert up["kind"] == "unknown" and "weights_only" in up["note"]  # refused while telling what it holds
    r = client.post("/api/inspect", json={"file": {"upload": up["id"]}})
    assert r.status_code == 400 and "weights_only" in error_of(r)["message"]
    r = client.post("/api/check", json={"latent": {"path": "astronaut.latent"}, "vae": {"upload": up["id"]}})
    assert r.status_code == 400
    assert not marker.exists()
