"""Reports: one self-contained HTML page (checked in headless Chromium), and TensorBoard event files."""

from __future__ import annotations

import base64
import html.parser
import io
import json
import math
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from latentbridge import report as R
from latentbridge.errors import FileFormatError
from latentbridge.formats import get_format
from latentbridge.latent import Latent
from latentbridge.photos import photo_tensor
from latentbridge.previews import PreviewFit, save_fit

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def reports(shared_weights, vaelight_files, tmp_path_factory):
    """A real SD1 latent (VAElight-encoded photo) with two candidate decoders and a stored fit, and a video latent."""
    from latentbridge import codec, weights

    torch.set_num_threads(1)
    light = weights.load_vae(vaelight_files)
    approx = [weights.load_vae(shared_weights / "vaeapprox" / f"vaeapprox-{k}.pt") for k in ("sd1", "sdxl")]
    latent = codec.encode(light, photo_tensor("chelsea", 128))
    fits = tmp_path_factory.mktemp("previews")
    rows = ((0.3, 0.2, 0.3), (0.3, 0.5, 0.2), (-0.3, 0.2, 0.3), (-0.2, -0.3, -0.7))
    fit = PreviewFit(light.sha256, light.name, "sd1", "model", rows, (0.0, 0.0, 0.0), ("x",), 64, 20.0, None, "now")
    save_fit(fit, fits)
    image = R.build_report(latent, [light, *approx], name="chelsea.latent", fits_dir=fits)
    video = Latent(
        torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(0)), get_format("wan21"), "model", "NCTHW"
    )
    return image, R.build_report(video, [], name="video.safetensors")


class _Collector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def _png_from_uri(uri: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert uri.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(uri[len(prefix) :], validate=True)))


def test_report_contents(reports):
    image, video = reports
    assert [p.method for p in image.previews] == ["rgb", "fitted"]
    assert image.comparison is not None and len(image.comparison.candidates) == 3
    assert image.diagnosis.deviation is not None and image.file_info is None
    assert {name for name, _, _ in image.figures} == {"statistics", "histograms", "channels", "correlation", "spectrum"}
    assert "sequence" in {name for name, _, _ in video.figures}  # three latent frames: a per-frame curve
    assert video.comparison is None and video.previews[0].frames == 3 and video.previews[0].images.shape[0] == 3
    if image.checks:  # latentbridge.checks is available: one verdict per candidate, the SDXL decoder refused
        assert [r.verdict for _, r in image.checks] == ["ok", "ok", "error"]


def test_html_is_self_contained_and_every_image_is_a_real_png(reports, tmp_path):
    page = R.render_html(list(reports), title="test <report>")
    path = R.write_html(page, tmp_path / "out" / "report.html")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # atomic: no temp file left
    assert "<title>test &lt;report&gt;</title>" in page
    parser = _Collector()
    parser.feed(path.read_text(encoding="utf-8"))
    for tag, attrs in parser.tags:
        assert tag != "script", "the report runs no script"
        for key in ("src", "href"):
            value = attrs.get(key, "")
            assert not value.lower().startswith(("http:", "https:", "//", "file:")), f"<{tag} {key}={value[:40]}>"
            if key == "href" and value:
                assert value.startswith(("#", "data:")), value
    lowered = page.lower()
    assert "@import" not in lowered and "url(" not in lowered
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    # per latent: a summary thumbnail + 2 previews + 5 diagnostic figures + 1 grid; video: a thumbnail (its
    # preview) + 1 preview + 6 figures
    assert len(images) == 9 + 8
    for attrs in images:
        with _png_from_uri(attrs["src"]) as png:
            png.load()
            assert png.format == "PNG" and png.width > 0 and png.height > 0
            lo, hi = zip(*png.convert("RGB").getextrema(), strict=True)
            assert max(hi) - min(lo) > 10, f"blank image {attrs.get('alt')}"
        assert attrs.get("alt")
    assert 'href="#latent-1"' in page  # two latents: a navigation bar


def test_render_html_needs_a_report():
    with pytest.raises(ValueError, match="render_html needs at least one report"):
        R.render_html([])


# --- TensorBoard ----------------------------------------------------------------------------------------


def test_crc32c_and_masked_crc_match_the_published_values():
    assert R.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720 / iSCSI)
    assert R.crc32c(b"") == 0
    assert R.masked_crc32c(b"") == 0xA282EAD8  # mask of CRC 0: rotate(0) + delta


def test_event_file_round_trip(reports, tmp_path):
    image, _ = reports
    _, tb = R.write_report(list(reports), None, tensorboard=tmp_path / "tb")
    assert tb is not None and tb.name.startswith("events.out.tfevents.") and list(tb.parent.iterdir()) == [tb]
    events = R.read_events(tb)
    assert events[0]["file_version"] == "brain.Event:2" and events[0]["step"] == 0
    values = {(e["step"], v["tag"]): v for e in events[1:] for v in e["values"]}
    for step, rep in enumerate(reports):
        s = rep.diagnosis.stats
        for c in range(s.channels):
            # simple_value is a float32
            assert values[(step, f"stats/mean/ch{c}")]["simple_value"] == pytest.approx(s.mean[c], rel=1e-6, abs=1e-7)
            histo = values[(step, f"histogram/ch{c}")]["histo"]
            finite = s.count  # no NaN/inf here: every value lands in a bucket
            assert histo["num"] == sum(histo["bucket"]) == finite
            assert (histo["min"], histo["max"]) == (s.min[c], s.max[c])
            assert histo["bucket_limit"][-1] == max(s.max) and len(histo["bucket"]) == 64
        for name, png, _ in rep.figures:
            img = values[(step, f"diagnostics/{name}")]["image"]
            assert img["png"] == png and img["colorspace"] == 3
            with Image.open(io.BytesIO(png)) as back:
                assert (img["width"], img["height"]) == back.size
    cand = image.comparison.candidates[1]
    assert values[(0, f"compare/{cand.name}/psnr_db")]["simple_value"] == pytest.approx(cand.psnr, rel=1e-6)
    assert (0, "compare/grid") in values and (1, "preview/rgb") in values


def test_damaged_event_files_are_refused(tmp_path):
    with R.EventWriter(tmp_path, clock=lambda: 1000.0) as tb:
        tb.scalar("a", 1.5, step=3)
    data = bytearray(tb.path.read_bytes())
    assert R.read_events(tb.path)[1] == {"wall_time": 1000.0, "step": 3, "values": [{"tag": "a", "simple_value": 1.5}]}
    bad = tmp_path / "bad"
    data[-6] ^= 0xFF  # a payload byte of the last record
    bad.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="bad payload checksum"):
        R.read_events(bad)
    bad.write_bytes(bytes(data[:-3]))
    with pytest.raises(FileFormatError, match="truncated record"):
        R.read_events(bad)
    with pytest.raises(ValueError, match="is already written"):
        tb.scalar("b", 1.0, step=0)


# tensorflow/core/util/event.proto and tensorflow/core/framework/summary.proto: (field, number, type);
# "*" marks a repeated field, a capitalised type another message
_TB_SCHEMA = {
    "HistogramProto": [("min", 1, "double"), ("max", 2, "double"), ("num", 3, "double"), ("sum", 4, "double"),
                       ("sum_squares", 5, "double"), ("bucket_limit", 6, "double*"), ("bucket", 7, "double*")],
    "Image": [("height", 1, "int32"), ("width", 2, "int32"), ("colorspace", 3, "int32"),
              ("encoded_image_string", 4, "bytes")],
    "Value": [("tag", 1, "string"), ("simple_value", 2, "float"), ("image", 4, "Image"),
              ("histo", 5, "HistogramProto")],
    "Summary": [("value", 1, "Value*")],
    "Event": [("wall_time", 1, "double"), ("step", 2, "int64"), ("file_version", 3, "string"),
              ("summary", 5, "Summary")],
}  # fmt: skip


def _protobuf_classes():
    """The Event message class built from _TB_SCHEMA with google.protobuf: an independent decoder."""
    pytest.importorskip("google.protobuf", reason="protobuf (installed with onnx) is needed to cross-check")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field = descriptor_pb2.FieldDescriptorProto
    scalar = {"double": field.TYPE_DOUBLE, "float": field.TYPE_FLOAT, "int32": field.TYPE_INT32,
              "int64": field.TYPE_INT64, "string": field.TYPE_STRING, "bytes": field.TYPE_BYTES}  # fmt: skip
    fdp = descriptor_pb2.FileDescriptorProto(name="lb_tb_check.proto", package="lbcheck", syntax="proto3")
    for name, fields in _TB_SCHEMA.items():
        message = fdp.message_type.add(name=name)
        for fname, number, kind in fields:
            base = kind.rstrip("*")
            label = field.LABEL_REPEATED if kind.endswith("*") else field.LABEL_OPTIONAL
            if base in scalar:
                message.field.add(name=fname, number=number, type=scalar[base], label=label)
            else:
                message.field.add(name=fname, number=number, type=field.TYPE_MESSAGE, label=label,
                                  type_name=f".lbcheck.{base}")  # fmt: skip
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("lbcheck.Event"))


def _records(path: Path) -> list[bytes]:
    data, pos, out = path.read_bytes(), 0, []
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos : pos + 8])
        out.append(data[pos + 12 : pos + 12 + n])
        pos += 16 + n
    return out


def test_event_payloads_parse_with_protobuf(reports, tmp_path):
    """An independent decoder (google.protobuf with the event.proto/summary.proto field numbers) agrees."""
    event_class = _protobuf_classes()
    image, _ = reports
    with R.EventWriter(tmp_path) as tb:
        R.report_to_tensorboard(tb, image, step=7)
    ours = R.read_events(tb.path)
    for payload, mine in zip(_records(tb.path), ours, strict=True):
        ev = event_class()
        ev.ParseFromString(payload)
        assert ev.step == mine["step"] and ev.wall_time == mine["wall_time"]
        assert [v.tag for v in ev.summary.value] == [v["tag"] for v in mine.get("values", [])]
        for pv, v in zip(ev.summary.value, mine.get("values", []), strict=True):
            if "simple_value" in v:
                assert pv.simple_value == v["simple_value"]
            if "image" in v:
                assert pv.image.encoded_image_string == v["image"]["png"] and pv.image.width == v["image"]["width"]
            if "histo" in v:
                assert list(pv.histo.bucket) == v["histo"]["bucket"] and pv.histo.max == v["histo"]["max"]


def test_event_file_loads_in_tensorboard_when_installed(reports, tmp_path):
    loader = pytest.importorskip(
        "tensorboard.backend.event_processing.event_file_loader",
        reason="tensorboard is not a dependency; install it to cross-check the event files with its own reader",
    )
    _, tb = R.write_report(list(reports), None, tensorboard=tmp_path)
    events = list(loader.LegacyEventFileLoader(str(tb)).Load())
    assert events[0].file_version == "brain.Event:2"
    tags = {v.tag for e in events for v in e.summary.value}
    assert {"stats/mean/ch0", "histogram/ch0", "compare/grid", "preview/rgb"} <= tags


# --- the browser ----------------------------------------------------------------------------------------

_CHECK_SCRIPT = """
<script>
window.addEventListener('load', () => {
  const out = [];
  for (const img of document.images) {
    const r = {alt: img.alt, complete: img.complete, w: img.naturalWidth, h: img.naturalHeight, spread: -1};
    if (img.naturalWidth > 0) {
      const c = document.createElement('canvas');
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      const d = ctx.getImageData(0, 0, c.width, c.height).data;
      let lo = 255, hi = 0;
      for (let i = 0; i < d.length; i += 4) {
        for (let k = 0; k < 3; k++) { lo = Math.min(lo, d[i + k]); hi = Math.max(hi, d[i + k]); }
      }
      r.spread = hi - lo;
    }
    out.push(r);
  }
  const pre = document.createElement('pre');
  pre.id = 'lb-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_report_renders_in_headless_chromium(reports, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium found (apt-get install chromium; .ci/run installs it before the tests)")
    page = R.render_html(list(reports))
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</body>", _CHECK_SCRIPT + "</body>"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom"]  # fmt: skip
    cmd = [browser, *flags, checked.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    start = done.stdout.find('<pre id="lb-check">')
    assert start >= 0, "the check script did not run: " + done.stderr[-2000:]
    body = done.stdout[start + len('<pre id="lb-check">') : done.stdout.find("</pre>", start)]
    results = json.loads(html.unescape(body))
    assert len(results) == page.count("<img ")
    for r in results:
        assert r["complete"] and r["w"] > 0 and r["h"] > 0, r
        assert r["spread"] > 10, f"blank image in the browser: {r}"
    # console messages (errors included) are logged as "CONSOLE" lines; the page must produce none
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console


def test_write_report_needs_nothing_extra(reports, tmp_path):
    html_path, tb_path = R.write_report(list(reports)[1:], tmp_path / "r.html")
    assert tb_path is None and html_path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert math.isfinite(reports[1].diagnosis.deviation.overall_std_ratio)
