"""Plain text for ComfyUI: reports, identifications, provenance, and the one-paragraph error that stops a graph.

Everything is rendered from the values' ``to_dict()`` (what the check's JSON output holds), so fields a report
gains later show up without changes here, and unknown keys are never an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from latentbridge import Report


def _vae_line(vae: Mapping[str, Any]) -> str:
    fmt = vae.get("format") or "format unknown"
    cands = vae.get("candidates") or []
    if not vae.get("format") and cands:
        fmt += f" (could be {', '.join(cands)})"
    return (
        f"VAE {vae.get('name', '?')}: {fmt}, {vae.get('channels', '?')} ch / {vae.get('spatial_ratio', '?')}×, "
        f"{vae.get('native_space', '?')} space, {vae.get('architecture', 'unknown')}"
    )


def _latent_line(lat: Mapping[str, Any]) -> str:
    shape = lat.get("shape", [])
    return (
        f"latent {list(shape)} {lat.get('layout', '')}: format {lat.get('format') or 'unknown'} "
        f"({lat.get('format_source', 'unknown')}), space {lat.get('space', 'unknown')} "
        f"({lat.get('space_source', 'unknown')})"
    )


def report_text(report: Report, notes: Iterable[str] = ()) -> str:
    """The check's report for the node's findings output: verdict, the latent, the VAE, each finding and its fix,
    the fingerprint, then the pack's own notes (how formats were decided)."""
    data = report.to_dict()
    lines = [f"{str(data.get('verdict', '?')).upper()}  {_latent_line(data.get('latent', {}))}"]
    lines.append(f"  × {_vae_line(data.get('vae', {}))}")
    for f in data.get("findings", []):
        kind = f.get("evidence_kind")
        tail = f" [{kind}]" if kind else ""
        lines.append(f"{f.get('severity', '?'):5s} {f.get('code', '?')}: {f.get('message', '')}{tail}")
        if f.get("fix"):
            lines.append(f"      fix: {f['fix']}")
    ident = data.get("identification")
    if isinstance(ident, Mapping) and ident.get("summary"):
        lines.append(f"fingerprint: {ident['summary']}")
    for p in data.get("preflight", []) or []:
        if isinstance(p, Mapping):
            lines.append(f"preflight {p.get('label', '?')}: penalty {p.get('penalty', '?')}")
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


def stop_message(report: Report) -> str:
    """One paragraph for ComfyUI's error dialog when a check stops the graph: each error, its fix, the mode hint
    (the node's findings output has the rest)."""
    data = report.to_dict()
    lat, vae = data.get("latent", {}), data.get("vae", {})
    errors = [f for f in data.get("findings", []) if f.get("severity") == "error"]
    head = (
        f"latentbridge stopped the graph before decoding this latent ({list(lat.get('shape', []))}, "
        f"{lat.get('format') or 'format unknown'}) with VAE {vae.get('name', '?')} "
        f"({vae.get('format') or 'format unknown'}, {vae.get('channels', '?')} ch / {vae.get('spatial_ratio', '?')}×):"
    )
    parts = [head]
    for f in errors:
        text = f"{f.get('message', '')}"
        if f.get("fix"):
            text += f"; fix: {f['fix']}"
        parts.append(text[:1].upper() + text[1:] + ("" if text.endswith(".") else "."))
    rest = [f.get("code", "?") for f in data.get("findings", []) if f.get("severity") != "error"]
    if rest:
        parts.append(f"Also noticed: {', '.join(rest)}.")
    parts.append("Set the node's mode to 'warn' to decode anyway.")
    return " ".join(parts)


def identification_text(ident: Mapping[str, Any], top: int = 5) -> str:
    """A fingerprint (``Identification.to_dict()``) as lines: the summary, then the most probable candidates."""
    lines = [str(ident.get("summary", ""))]
    for c in list(ident.get("candidates", []))[:top]:
        lines.append(f"  {c.get('probability', 0):6.1%}  {c.get('label', c.get('format', '?'))}")
    shape_only = [c.get("label", c.get("format", "?")) for c in ident.get("shape_only", [])]
    if shape_only:
        lines.append(f"  possible by shape, no profile: {', '.join(shape_only)}")
    for hint in ident.get("layout_hints", []):
        lines.append(f"  {hint}")
    return "\n".join(lines)


def provenance_lines(report: Any) -> list[str]:
    """A :class:`~latentbridge.provenance.ProvenanceReport` as lines (its own ``lines()``), or a note when empty."""
    lines = list(report.lines()) if hasattr(report, "lines") else []
    return lines or ["nothing recorded"]
