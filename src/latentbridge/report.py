"""One self-contained HTML page about a latent — and the same numbers as TensorBoard event files.

:func:`build_report` gathers, for one latent: what it is (shape, dtype, layout, format, space, provenance,
per-channel statistics), the identify and check results, previews
(published and fitted factors), diagnostics (:mod:`latentbridge.diagnostics`) and a comparison of candidate
VAEs (:mod:`latentbridge.comparison`). :func:`render_html` turns reports into one page whose images are inline
``data:image/png;base64`` URIs and whose CSS is inline: no scripts, no fonts, no external requests, so the
file can be mailed, archived or opened offline.

TensorBoard: the ``tensorboard`` package is not a dependency (it pulls grpcio, werkzeug, markdown …) and
``torch.utils.tensorboard`` imports it, so :class:`EventWriter` writes the event-file format itself: TFRecord
framing (little-endian uint64 length, masked CRC-32C of the length, payload, masked CRC-32C of the payload)
around ``tensorflow.Event`` protobufs holding ``Summary`` values (``simple_value`` scalars, PNG images,
``HistogramProto`` histograms), hand-encoded with the protobuf wire format. :func:`read_events` reads them
back, checking every CRC. The field numbers are those of tensorflow/core/util/event.proto and
tensorflow/core/framework/summary.proto.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from latentbridge import __version__
from latentbridge import diagnostics as dg
from latentbridge._atomic import atomic_write
from latentbridge.checks import FINDINGS, Report, check
from latentbridge.comparison import Comparison, compare, comparison_grid, grid_png, short_name
from latentbridge.errors import FileFormatError, LatentBridgeError
from latentbridge.fingerprint import Identification, identify
from latentbridge.latent import Latent
from latentbridge.previews import (
    check_values,
    find_fit,
    fitted_previewer,
    frames_per_item,
    has_published_factors,
    png_bytes,
    preview_grid,
    rgb_preview,
    to_pil,
)
from latentbridge.run import Run
from latentbridge.style import page_css
from latentbridge.vae import VAE

__all__ = [
    "MAX_PREVIEW_FRAMES",
    "MAX_PREVIEW_ITEMS",
    "EventWriter",
    "LatentReport",
    "Preview",
    "build_report",
    "crc32c",
    "data_uri",
    "diagnostic_figures",
    "event",
    "finding_card",
    "histogram_value",
    "image_value",
    "masked_crc32c",
    "read_events",
    "render_html",
    "report_to_tensorboard",
    "scalar_value",
    "tfrecord",
    "write_html",
    "write_report",
]

MAX_PREVIEW_ITEMS = 8  # batch items shown in previews (a 64-latent training batch would be a wall)
MAX_PREVIEW_FRAMES = 25  # latent frames shown per item (Wan's 81 frames are 21 latent frames)


def _jsonable(obj: Any) -> Any:
    """A JSON-ready view of a result object (dataclass ``to_dict``, dict, list, scalar, else ``str``)."""
    if hasattr(obj, "to_dict"):
        return _jsonable(obj.to_dict())
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


# --- the report data ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Preview:
    """One preview picture: how it was made and the images [B·T, 3, H, W] in [0, 1]."""

    method: str
    description: str
    images: torch.Tensor
    frames: int  # latent frames per item (1 for images)


@dataclass(frozen=True, slots=True, eq=False)
class LatentReport:
    """Everything one report section shows about one latent.

    Attributes:
        name: what to call it (file name).
        latent: the latent.
        file_info: what the file said (``LatentFile.to_dict()``), or None for an in-memory latent.
        diagnosis: :func:`latentbridge.diagnostics.diagnose` of the latent in its own space.
        previews: previews made (published factors, a stored fit).
        comparison: the candidate VAEs' decodes, or None without VAEs.
        checks: (VAE name, :class:`~latentbridge.checks.Report`) per VAE.
        identify: the latent's :class:`~latentbridge.fingerprint.Identification`.
        figures: (name, PNG bytes, caption) of each diagnostic figure, rendered once for HTML and TensorBoard.
        notes: what could not be shown and why.
    """

    name: str
    latent: Latent
    file_info: dict | None
    diagnosis: dg.Diagnosis
    previews: tuple[Preview, ...]
    comparison: Comparison | None
    checks: tuple[tuple[str, Report], ...]
    identify: Identification | None
    figures: tuple[tuple[str, bytes, str], ...] = field(default=())
    notes: tuple[str, ...] = field(default=())


def _previews(latent: Latent, fits_dir: str | os.PathLike[str] | None, notes: list[str]) -> list[Preview]:
    out: list[Preview] = []
    fmt = latent.format
    if fmt is None or latent.space == "unknown":
        notes.append("previews need a known format and space: pass --format NAME and --space raw|model")
        return out
    try:
        check_values(latent)
    except LatentBridgeError as exc:  # the page still reports the latent; it shows no picture of such values
        notes.append(f"no preview: {exc}")
        return out
    n, t = latent.dim("N"), frames_per_item(latent)
    shown = latent
    if n > MAX_PREVIEW_ITEMS or t > MAX_PREVIEW_FRAMES:
        idx = [slice(None)] * latent.tensor.ndim
        idx[latent.layout.index("N")] = slice(0, MAX_PREVIEW_ITEMS)
        if "T" in latent.layout:
            idx[latent.layout.index("T")] = slice(0, MAX_PREVIEW_FRAMES)
        shown = latent.replace(tensor=latent.tensor[tuple(idx)])
        notes.append(
            f"previews show the first {min(n, MAX_PREVIEW_ITEMS)} of {n} items"
            + (f" and the first {min(t, MAX_PREVIEW_FRAMES)} of {t} frames" if t > 1 else "")
        )
    frames = frames_per_item(shown)
    if has_published_factors(fmt):
        try:
            out.append(Preview("rgb", f"published factors ({fmt.source('rgb')})", rgb_preview(shown), frames))
        except (LatentBridgeError, ValueError) as exc:
            notes.append(f"published-factor preview failed: {exc}")
    else:
        notes.append(f"{fmt.name} has no published latent→RGB factors ({fmt.source('rgb')})")
    if fits_dir is not None:
        found = find_fit(shown, fits_dir)
        if found is not None:
            out.append(Preview("fitted", f"fitted factors: {found[1]}", fitted_previewer(found[0])(shown), frames))
        else:
            notes.append(f"no fitted preview factors stored for this latent in {fits_dir}")
    return out


def build_report(
    latent: Latent,
    vaes: Sequence[VAE] = (),
    *,
    name: str = "latent",
    file_info: dict | None = None,
    reference: torch.Tensor | None = None,
    reference_name: str = "reference image",
    fits_dir: str | os.PathLike[str] | None = None,
    bins: int = 64,
    run: Run = Run(),
) -> LatentReport:
    """Gather everything the report shows about ``latent``.

    Args:
        latent: the latent (any space; diagnostics run in its own space).
        vaes: candidate VAEs to check and decode with (the comparison); may be empty.
        name: what to call the latent on the page.
        file_info: ``LatentFile.to_dict()`` when it came from a file.
        reference: optional [3, H, W] image in [0, 1] for the comparison's PSNR.
        reference_name: its name for captions.
        fits_dir: the folder of fitted preview factors to look in (None: skip fitted previews).
        bins: histogram bins.
        run: how the candidates' decodes execute (device, dtype, tiling, progress, cancel).

    Returns:
        :class:`LatentReport`.
    """
    notes: list[str] = []
    diagnosis = dg.diagnose(latent, bins)
    if diagnosis.reference is None:
        fmt = latent.format_name or "unknown"
        notes.append(f"no reference profile for format {fmt} in {latent.space} space: deviations not measured")
    previews = _previews(latent, fits_dir, notes)
    comparison = None
    checks: list[tuple[str, Report]] = []
    if vaes:
        if latent.format is not None and latent.space != "unknown":
            comparison = compare(latent, vaes, reference=reference, reference_name=reference_name, run=run)
        else:
            notes.append("the comparison needs a known format and space: pass --format NAME and --space raw|model")
        for vae in vaes:
            checks.append((vae.name, check(latent, vae)))
    identification = identify(latent)
    return LatentReport(
        name=name,
        latent=latent,
        file_info=file_info,
        diagnosis=diagnosis,
        previews=tuple(previews),
        comparison=comparison,
        checks=tuple(checks),
        identify=identification,
        figures=tuple(diagnostic_figures(latent, diagnosis)),
        notes=tuple(notes),
    )


# --- HTML -----------------------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,…`` URI for PNG bytes."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes, alt: str, caption: str = "", cls: str = "") -> str:
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    klass = f' class="{cls}"' if cls else ""
    return f'<figure><img{klass} alt="{_e(alt)}" src="{data_uri(png)}">{cap}</figure>'


def _kv_table(rows: Sequence[tuple[str, object]]) -> str:
    body = "".join(f'<tr><td class="k">{_e(k)}</td><td class="v">{_e(v)}</td></tr>' for k, v in rows)
    return f'<table class="facts">{body}</table>'


def _num(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.{digits}g}"


def _stats_html(d: dg.Diagnosis) -> str:
    s, dev = d.stats, d.deviation
    head = ["channel", "mean", "std", "min", "max"]
    if dev is not None:
        head += ["ref mean", "ref std", "z of mean", "typical std", "std / typical"]
    rows = []
    for c in range(s.channels):
        cells = [str(c), _num(s.mean[c]), _num(s.std[c]), _num(s.min[c]), _num(s.max[c])]
        if dev is not None:
            p = dev.reference
            z = dev.z_mean[c] if dev.z_mean is not None else None
            ref_mean = _num(p.mean[c]) if p.mean is not None else "—"
            cells += [ref_mean, _num(p.std[c]), _num(z, 3), _num(p.typical_std[c])]
            cells.append(_num(dev.std_ratio[c], 3))
        cls = ' class="flag"' if dev is not None and c in dev.flagged else ""
        rows.append(f"<tr{cls}>" + "".join(f'<td class="n">{_e(x)}</td>' for x in cells) + "</tr>")
    table = "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"
    extra = ""
    if dev is not None:
        cls = "ok" if not dev.flagged and 0.5 <= dev.overall_std_ratio <= 2 else "warn"
        extra = (
            f'<p><span class="badge {cls}">{"consistent" if cls == "ok" else "deviates"}</span> {_e(dev.verdict)} '
            f"(overall spread {dev.overall_std_ratio:.3f}× the reference)</p>"
            f'<p class="note">reference: {_e(dev.reference.source)}; z in units of the {_e(dev.z_unit)}, '
            f"flagged beyond ±{dev.z_limit:g}, or a std outside {1 / dg.STD_RATIO_LIMIT:g}–{dg.STD_RATIO_LIMIT:g}× "
            "the typical</p>"
        )
    return extra + table


def _inspect_html(r: LatentReport) -> str:
    lat = r.latent
    rows: list[tuple[str, object]] = []
    if r.file_info is not None:
        rows += [("file", r.file_info.get("file", "")), ("container", r.file_info.get("container", ""))]
        if r.file_info.get("writer"):
            rows.append(("writer", r.file_info["writer"]))
        if r.file_info.get("key"):
            rows.append(("key", r.file_info["key"]))
    rows += [
        ("shape", f"{list(lat.shape)} ({lat.layout})"),
        ("dtype", str(lat.tensor.dtype).removeprefix("torch.")),
        ("format", lat.format_name or "unknown"),
        ("space", lat.space),
        ("NaN / inf values", r.diagnosis.stats.nonfinite),
    ]
    if lat.format is not None:
        rows.append(("format title", lat.format.title))
    for k, v in lat.provenance.to_dict().items():
        rows.append((f"provenance.{k}", v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)))
    if r.file_info is not None:
        for note in r.file_info.get("notes", []):
            rows.append(("file note", note))
    return _kv_table(rows) + _stats_html(r.diagnosis)


def _pre(data: Any) -> str:
    return f"<pre>{_e(json.dumps(data, indent=1, ensure_ascii=False, default=str))}</pre>"


def _preview_png(p: Preview) -> bytes:
    w = p.images.shape[-1]
    upscale = max(1, 256 // max(w, 1))
    return png_bytes(preview_grid(p.images, p.frames, upscale=upscale))


def _stats_caption(d: dg.Diagnosis) -> str:
    """What the statistics figure shows, with the verdict its numbers give (the same line as the figure's title)."""
    if d.deviation is None:
        return "per-channel mean ± std (no reference profile for this format and space)"
    return f"per-channel mean ± std against the reference, and what flags a channel: {d.deviation.verdict}"


def diagnostic_figures(latent: Latent, d: dg.Diagnosis) -> list[tuple[str, bytes, str]]:
    """(name, PNG bytes, caption) of every diagnostic figure of ``latent``."""
    figs = [
        ("statistics", dg.stats_figure(d.stats, d.deviation), _stats_caption(d)),
        ("histograms", dg.histogram_figure(d.histograms, d.reference), "per-channel value histograms"),
        ("channels", dg.channels_figure(latent), "channel images of item 0"),
        ("correlation", dg.correlation_figure(d.correlation), "channel correlation matrix"),
    ]
    if d.spectrum is not None:
        figs.append(("spectrum", dg.spectrum_figure(d.spectrum), "radially averaged spatial power spectrum"))
    if d.sequence.items > 1 or d.sequence.frames > 1:
        figs.append(("sequence", dg.sequence_figure(d.sequence), "per-frame / per-item statistics"))
    return [(name, dg.figure_png(fig), caption) for name, fig, caption in figs]


def _comparison_html(c: Comparison) -> str:
    head = ["VAE", "format", "PSNR dB", "colourfulness", "dynamic range", "check", "note"]
    rows = []
    for cand in c.candidates:
        psnr = "—" if cand.psnr is None else ("∞" if math.isinf(cand.psnr) else f"{cand.psnr:.2f}")
        note = cand.error or ("the latent read as this VAE's format" if cand.relabelled else "")
        cells = [
            short_name(cand.name),
            cand.format or "?",
            psnr,
            _num(cand.colourfulness, 3),
            _num(cand.dynamic_range, 3),
            cand.verdict or "—",
            note,
        ]
        rows.append("<tr>" + "".join(f"<td>{_e(x)}</td>" for x in cells) + "</tr>")
    table = "<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"
    grid = grid_png(comparison_grid(c))
    return (
        f"<p>PSNR against: {_e(c.reference)}; item {c.item}, frame {c.frame}.</p>"
        + table
        + _img(grid, "comparison grid", "each candidate VAE's decode")
    )


def _details(data: Any) -> str:
    return f"<details><summary>all numbers (JSON)</summary>{_pre(_jsonable(data))}</details>"


def _identify_html(ident: Any) -> str:
    """``latentbridge.fingerprint.Identification``: summary, candidates as bars, shape-only ones."""
    out = f'<p><b>{_e(ident.summary)}</b></p><p class="sub">{_e(ident.geometry)}</p>'
    if ident.candidates:
        rows = []
        for c in ident.candidates[:8]:
            pct = max(0.0, min(100.0, 100 * c.probability))
            cls = "bar" if c.fits else "bar nofit"
            label = c.label + ("" if c.fits else " (no fit)")
            # the bar's width is an SVG rect: the page needs no style attribute (and no script)
            track = (
                f'<svg class="track" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" '
                f'aria-label="{_e(label)}: {pct:.1f} %"><rect width="{max(pct, 0.5):.2f}" height="10" '
                f'fill="#2957a4"/></svg>'
            )
            rows.append(f'<div class="{cls}"><span>{_e(label)}</span>{track}<span class="p">{pct:.1f} %</span></div>')
        out += '<div class="bars">' + "".join(rows) + "</div>"
    if ident.shape_only:
        out += f'<p class="sub">possible by shape, no profile: {_e(", ".join(c.label for c in ident.shape_only))}</p>'
    if ident.flags:
        out += f'<p class="badge error">flags: {_e(", ".join(ident.flags))}</p>'
    return out + _details(ident)


def _value(value: Any) -> str:
    """One evidence value for a card: numbers to 4 significant digits, short JSON for the rest."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
        return "[" + ", ".join(_num(float(v), 3) for v in value) + "]"
    text = value if isinstance(value, str) else json.dumps(_jsonable(value), ensure_ascii=False)
    return text if len(text) <= 300 else text[:299] + "…"


def finding_card(finding: Any) -> str:
    """A finding as a card: severity, the catalogue's title, code, evidence kind, message, fix, and its evidence
    key by key; drawn from ``to_dict()``, so fields a finding gains later are listed too."""
    data = finding.to_dict()
    kind = FINDINGS.get(data.get("code", ""))
    severity = str(data.get("severity", "info"))
    title = kind.title if kind is not None else data.get("code", "")
    head = (
        f'<h4><span class="badge {_e(severity)}">{_e(severity)}</span><span>{_e(title)}</span>'
        f'<code>{_e(data.get("code", ""))}</code><span class="badge kind">evidence: {_e(data.get("evidence_kind"))}'
        "</span></h4>"
    )
    body = f"<p>{_e(data.get('message', ''))}</p>"
    if data.get("fix"):
        body += f'<p class="fix"><b>fix: </b>{_e(data["fix"])}</p>'
    known = {"code", "severity", "evidence_kind", "message", "fix", "evidence"}
    pairs = [*dict(data.get("evidence") or {}).items(), *((k, v) for k, v in data.items() if k not in known)]
    if pairs:
        body += "<dl>" + "".join(f"<dt>{_e(k.replace('_', ' '))}</dt><dd>{_e(_value(v))}</dd>" for k, v in pairs)
        body += "</dl>"
    return f'<article class="card {_e(severity)}" data-code="{_e(data.get("code", ""))}">{head}{body}</article>'


def _check_html(vae_name: str, report: Any) -> str:
    """``latentbridge.checks.Report``: the verdict, then each finding as a card with its evidence."""
    verdict = str(report.verdict)
    out = f'<h4 class="row"><span class="verdict {_e(verdict)}">{_e(verdict)}</span> <span>{_e(vae_name)}</span></h4>'
    if report.findings:
        out += '<div class="cards">' + "".join(finding_card(f) for f in report.findings) + "</div>"
    else:
        out += '<p class="note">no findings</p>'
    return out + _details(report)


def _thumbnail(r: LatentReport) -> tuple[bytes, str, str] | None:
    """A decoded thumbnail for the summary: the first candidate VAE whose check passed (else the first that
    decoded), else the first preview."""
    if r.comparison is not None:
        decoded = [(c, c.image) for c in r.comparison.candidates if c.image is not None]
        good = [(c, im) for c, im in decoded if c.verdict != "error"] or decoded
        if good:
            cand, image = good[0]
            return png_bytes(to_pil(image)), f"decoded with {short_name(cand.name)}", ""
    if r.previews:
        p = r.previews[0]
        return png_bytes(to_pil(p.images[0])), f"{p.method} preview (no decoder)", "pixelated"
    return None


def _summary_html(reports: Sequence[LatentReport]) -> str:
    """The verdicts at the top: one card per latent with its thumbnail, the fingerprint and each VAE's verdict."""
    items = []
    for i, r in enumerate(reports):
        thumb = _thumbnail(r)
        pic = _img(thumb[0], f"{r.name}: {thumb[1]}", thumb[1], thumb[2]) if thumb else ""
        lines = []
        for vae_name, rep in r.checks:
            worst = [f.code for f in rep.findings if f.severity == rep.verdict] if rep.verdict != "ok" else []
            why = f": {', '.join(worst[:3])}" if worst else ""
            lines.append(
                f'<li><span class="badge {_e(rep.verdict)}">{_e(rep.verdict)}</span> '
                f"{_e(short_name(vae_name))}{_e(why)}</li>"
            )
        if not r.checks:
            lines.append('<li class="note">no VAE given: not checked</li>')
        ident = f'<p class="sub">{_e(r.identify.summary)}</p>' if r.identify is not None else ""
        dev = r.diagnosis.deviation
        stats = f'<p class="sub">{_e(dev.verdict)}</p>' if dev is not None else ""
        items.append(
            f'<div class="item"><h3><a href="#latent-{i}">{_e(r.name)}</a></h3>{pic}{ident}'
            f"<ul>{''.join(lines)}</ul>{stats}</div>"
        )
    return '<section class="summary" aria-label="summary">' + "".join(items) + "</section>"


def _section_html(r: LatentReport, index: int) -> str:
    parts = [f'<h2 id="latent-{index}">{_e(r.name)}</h2>', "<h3>Inspect</h3>", _inspect_html(r)]
    parts.append("<h3>Identify</h3>")
    parts.append(_identify_html(r.identify) if r.identify is not None else '<p class="note">not available</p>')
    parts.append("<h3>Check</h3>")
    if r.checks:
        parts.extend(_check_html(vae_name, result) for vae_name, result in r.checks)
    else:
        parts.append('<p class="note">no check run (no VAE given)</p>')
    parts.append("<h3>Previews</h3>")
    shown = [_img(_preview_png(p), f"{p.method} preview", f"{p.method}: {p.description}", "pixelated")
             for p in r.previews]  # fmt: skip
    parts.append('<div class="figures">' + "".join(shown) + "</div>" if shown else '<p class="note">no preview</p>')
    parts.append("<h3>Diagnostics</h3>")
    parts.append('<div class="figures">' + "".join(_img(png, name, cap) for name, png, cap in r.figures) + "</div>")
    parts.append("<h3>Comparison</h3>")
    if r.comparison is not None:
        parts.append(_comparison_html(r.comparison))
    else:
        parts.append('<p class="note">no candidate VAEs given (--vae FILE, repeatable)</p>')
    if r.notes:
        parts.append("<h3>Notes</h3><ul>" + "".join(f'<li class="note">{_e(n)}</li>' for n in r.notes) + "</ul>")
    return "\n".join(parts)


def render_html(
    reports: Sequence[LatentReport], title: str = "latentbridge report", failures: Sequence[tuple[str, str]] = ()
) -> str:
    """One self-contained HTML page for the given reports: the verdicts with a thumbnail per latent at the top,
    then a section per latent.

    Every image is an inline PNG data URI, the CSS is inline (latentbridge's shared stylesheet, the web page's
    look), the favicon is an empty data URI (so a browser makes no request at all), and there is no script.
    ``failures``: (file name, error) of files that could not be reported on, listed at the top.
    """
    if not reports:
        raise ValueError("render_html needs at least one report")
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    nav = ""
    if len(reports) > 1:
        nav = "<nav>" + "".join(f'<a href="#latent-{i}">{_e(r.name)}</a>' for i, r in enumerate(reports)) + "</nav>"
    body = "\n".join(_section_html(r, i) for i, r in enumerate(reports))
    if failures:
        items = "".join(f"<li><b>{_e(name)}</b>: {_e(error)}</li>" for name, error in failures)
        heading = f"<h2>Files that could not be read ({len(failures)})</h2>"
        body = f'<section id="failures">{heading}<ul>{items}</ul></section>\n{body}'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{_e(title)}</title><style>{page_css()}</style></head><body>"
        f'<h1>{_e(title)}</h1><p class="note">latentbridge {_e(__version__)}, {_e(stamp)}</p>{nav}\n'
        f"{_summary_html(reports)}\n{body}\n</body></html>\n"
    )


def write_html(text: str, path: str | os.PathLike[str]) -> Path:
    """Write the page atomically (temp file in the same folder, then ``os.replace``)."""
    return atomic_write(path, text.encode("utf-8"), parents=True)


# --- TensorBoard event files ----------------------------------------------------------------------------


def _crc32c_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``; ``crc32c(b"123456789") == 0xE3069283``."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The TFRecord checksum: CRC-32C rotated right by 15 bits plus 0xA282EAD8 (mod 2³²)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(payload: bytes) -> bytes:
    """One TFRecord: uint64 length, masked CRC of the length, payload, masked CRC of the payload."""
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked_crc32c(length)) + payload + struct.pack("<I", masked_crc32c(payload))


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 negatives: ten-byte two's complement, as protobuf does
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _pb_varint(number: int, value: int) -> bytes:
    return _key(number, 0) + _varint(value)


def _pb_double(number: int, value: float) -> bytes:
    return _key(number, 1) + struct.pack("<d", value)


def _pb_float(number: int, value: float) -> bytes:
    return _key(number, 5) + struct.pack("<f", value)


def _pb_bytes(number: int, value: bytes) -> bytes:
    return _key(number, 2) + _varint(len(value)) + value


def _pb_packed_doubles(number: int, values: Sequence[float]) -> bytes:
    return _pb_bytes(number, b"".join(struct.pack("<d", float(v)) for v in values))


def scalar_value(tag: str, value: float) -> bytes:
    """A ``Summary.Value`` with ``simple_value`` (tag 1, simple_value 2)."""
    return _pb_bytes(1, tag.encode()) + _pb_float(2, float(value))


def image_value(tag: str, png: bytes, height: int, width: int) -> bytes:
    """A ``Summary.Value`` holding a ``Summary.Image`` (RGB PNG: colorspace 3)."""
    image = _pb_varint(1, height) + _pb_varint(2, width) + _pb_varint(3, 3) + _pb_bytes(4, png)
    return _pb_bytes(1, tag.encode()) + _pb_bytes(4, image)


def histogram_value(tag: str, values: torch.Tensor, edges: torch.Tensor, counts: torch.Tensor) -> bytes:
    """A ``Summary.Value`` holding a ``HistogramProto``: min, max, num, sum, sum of squares, buckets.

    ``bucket_limit[i]`` is the right edge of bucket ``i`` (TensorBoard's convention); the finite ``values``
    give min/max/sum, the precomputed ``edges`` [K + 1] and ``counts`` [K] give the buckets.
    """
    v = values[torch.isfinite(values)].double()
    lo = float(v.min()) if v.numel() else 0.0
    hi = float(v.max()) if v.numel() else 0.0
    histo = (
        _pb_double(1, lo)
        + _pb_double(2, hi)
        + _pb_double(3, float(counts.sum()))
        + _pb_double(4, float(v.sum()))
        + _pb_double(5, float((v * v).sum()))
        + _pb_packed_doubles(6, edges[1:].tolist())
        + _pb_packed_doubles(7, counts.double().tolist())
    )
    return _pb_bytes(1, tag.encode()) + _pb_bytes(5, histo)


def event(wall_time: float, step: int, values: Sequence[bytes] = (), file_version: str = "") -> bytes:
    """An ``Event`` (wall_time 1, step 2, file_version 3, summary 5) holding ``values`` as one Summary."""
    out = _pb_double(1, wall_time) + _pb_varint(2, step)
    if file_version:
        out += _pb_bytes(3, file_version.encode())
    if values:
        out += _pb_bytes(5, b"".join(_pb_bytes(1, v) for v in values))
    return out


class EventWriter:
    """Collects TensorBoard events in memory and writes them as one event file, atomically, on :meth:`close`.

    Usage::

        with EventWriter(folder) as tb:
            tb.scalar("stats/std/ch0", 0.98, step=0)
    """

    def __init__(self, folder: str | os.PathLike[str], clock: Callable[[], float] = time.time) -> None:
        self.folder = Path(folder)
        self._clock = clock
        start = clock()
        self.path = self.folder / f"events.out.tfevents.{int(start)}.{socket.gethostname()}.{os.getpid()}.latentbridge"
        self._records = [tfrecord(event(start, 0, file_version="brain.Event:2"))]
        self._closed = False

    def add(self, step: int, values: Sequence[bytes]) -> None:
        """Append one event with these ``Summary.Value`` messages at ``step``."""
        if self._closed:
            raise ValueError(f"the event file {self.path} is already written; open a new EventWriter")
        self._records.append(tfrecord(event(self._clock(), step, values)))

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One scalar."""
        self.add(step, [scalar_value(tag, value)])

    def image(self, tag: str, png: bytes, height: int, width: int, step: int) -> None:
        """One PNG image."""
        self.add(step, [image_value(tag, png, height, width)])

    def histogram(self, tag: str, values: torch.Tensor, edges: torch.Tensor, counts: torch.Tensor, step: int) -> None:
        """One histogram."""
        self.add(step, [histogram_value(tag, values, edges, counts)])

    def close(self) -> Path:
        """Write the event file (temp file + ``os.replace``); returns its path."""
        if not self._closed:
            atomic_write(self.path, b"".join(self._records), parents=True)
            self._closed = True
        return self.path

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise FileFormatError("truncated protobuf varint in an event record")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message: ints, floats as raw bytes, or bytes."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == 2:
            size, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise FileFormatError(f"unsupported protobuf wire type {wire} in an event record")
        out.append((number, wire, value))
    return out


def _decode_value(buf: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, _, value in _fields(buf):
        if number == 1:
            out["tag"] = value.decode()
        elif number == 2:
            out["simple_value"] = struct.unpack("<f", value)[0]
        elif number == 4:
            img = {n: v for n, _, v in _fields(value)}
            out["image"] = {"height": img.get(1, 0), "width": img.get(2, 0), "colorspace": img.get(3, 0)}
            out["image"]["png"] = img.get(4, b"")
        elif number == 5:
            h: dict[str, Any] = {"bucket_limit": [], "bucket": []}
            names = {1: "min", 2: "max", 3: "num", 4: "sum", 5: "sum_squares"}
            for n, _, v in _fields(value):
                if n in names:
                    h[names[n]] = struct.unpack("<d", v)[0]
                elif n in (6, 7):  # repeated double: packed (wire 2) or one per field (wire 1)
                    h["bucket_limit" if n == 6 else "bucket"].extend(struct.unpack(f"<{len(v) // 8}d", v))
            out["histo"] = h
    return out


def read_events(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read an event file written by :class:`EventWriter`, checking both CRCs of every record.

    Returns:
        One dict per event: ``wall_time``, ``step``, and ``file_version`` or ``values`` (decoded
        ``Summary.Value`` dicts with ``tag`` and one of ``simple_value``, ``image``, ``histo``).
    """
    data = Path(path).read_bytes()
    events, pos = [], 0
    while pos < len(data):
        if pos + 12 > len(data):
            raise FileFormatError(f"{path}: truncated record header at byte {pos}")
        length_bytes = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        if crc != masked_crc32c(length_bytes):
            raise FileFormatError(f"{path}: bad length checksum at byte {pos}; the file is damaged")
        payload = data[pos + 12 : pos + 12 + length]
        if len(payload) != length or pos + 16 + length > len(data):
            raise FileFormatError(f"{path}: truncated record at byte {pos}")
        (crc,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        if crc != masked_crc32c(payload):
            raise FileFormatError(f"{path}: bad payload checksum at byte {pos}; the file is damaged")
        pos += 16 + length
        ev: dict[str, Any] = {}
        for number, _, value in _fields(payload):
            if number == 1:
                ev["wall_time"] = struct.unpack("<d", value)[0]
            elif number == 2:
                ev["step"] = value
            elif number == 3:
                ev["file_version"] = value.decode()
            elif number == 5:
                ev["values"] = [_decode_value(v) for n, _, v in _fields(value) if n == 1]
        events.append(ev)
    return events


def report_to_tensorboard(tb: EventWriter, report: LatentReport, step: int) -> None:
    """Write a report's scalars, images and histograms at ``step``.

    Tags: ``stats/{mean,std,min,max}/chN``, ``stats/nonfinite``, ``deviation/z_mean/chN``,
    ``deviation/std_ratio/chN``, ``deviation/overall_std_ratio``, ``compare/<vae>/{psnr_db,colourfulness,
    dynamic_range}``, images ``preview/<method>``, ``diagnostics/<figure>``, ``compare/grid``, and one
    histogram per channel ``histogram/chN`` (the page's bin count over the latent's full finite range, so every
    finite value is counted).
    """
    d = report.diagnosis
    values: list[bytes] = []
    for c in range(d.stats.channels):
        for key in ("mean", "std", "min", "max"):
            v = getattr(d.stats, key)[c]
            if math.isfinite(v):
                values.append(scalar_value(f"stats/{key}/ch{c}", v))
    values.append(scalar_value("stats/nonfinite", d.stats.nonfinite))
    if d.deviation is not None:
        dev = d.deviation
        if dev.z_mean is not None:
            values += [scalar_value(f"deviation/z_mean/ch{c}", z) for c, z in enumerate(dev.z_mean)]
        values += [scalar_value(f"deviation/std_ratio/ch{c}", r) for c, r in enumerate(dev.std_ratio)]
        values.append(scalar_value("deviation/overall_std_ratio", dev.overall_std_ratio))
    if report.comparison is not None:
        for cand in report.comparison.candidates:
            if cand.psnr is not None and math.isfinite(cand.psnr):
                values.append(scalar_value(f"compare/{cand.name}/psnr_db", cand.psnr))
            if cand.colourfulness is not None and cand.dynamic_range is not None:
                values.append(scalar_value(f"compare/{cand.name}/colourfulness", cand.colourfulness))
                values.append(scalar_value(f"compare/{cand.name}/dynamic_range", cand.dynamic_range))
    tb.add(step, values)
    for p in report.previews:
        png = _preview_png(p)
        h, w = _png_size(png)
        tb.image(f"preview/{p.method}", png, h, w, step)
    for name, png, _ in report.figures:
        h, w = _png_size(png)
        tb.image(f"diagnostics/{name}", png, h, w, step)
    if report.comparison is not None:
        png = grid_png(comparison_grid(report.comparison))
        h, w = _png_size(png)
        tb.image("compare/grid", png, h, w, step)
    channel_values = dg.channel_values(report.latent)
    finite = channel_values[torch.isfinite(channel_values)]
    hist = d.histograms  # the page's bins (0.1–99.9 % quantiles); TensorBoard gets every value:
    if finite.numel():
        bins = hist.counts.shape[1]
        hist = dg.histograms(report.latent, bins, value_range=(float(finite.min()), float(finite.max())))
    for c in range(d.stats.channels):
        tb.histogram(f"histogram/ch{c}", channel_values[c], hist.edges, hist.counts[c], step)


def _png_size(png: bytes) -> tuple[int, int]:
    """(height, width) from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", png[16:24])
    return height, width


def write_report(
    reports: Sequence[LatentReport],
    path: str | os.PathLike[str] | None = None,
    *,
    tensorboard: str | os.PathLike[str] | None = None,
    title: str = "latentbridge report",
    failures: Sequence[tuple[str, str]] = (),
) -> tuple[Path | None, Path | None]:
    """Write the HTML page and/or TensorBoard event file (one step per report, in order).

    ``failures``: (file name, error) of input files that could not be reported on; the page lists them.

    Returns:
        (html path or None, event file path or None).
    """
    html_path = write_html(render_html(reports, title, failures), path) if path is not None else None
    tb_path = None
    if tensorboard is not None:
        with EventWriter(tensorboard) as tb:
            for step, report in enumerate(reports):
                report_to_tensorboard(tb, report, step)
        tb_path = tb.path
    return html_path, tb_path
