"""Measure identification and mismatch detection on held-out latents; write benchmarks/results/identify.{json,md}.

Latents: the held-out photos (``latentbridge.photos.HELDOUT_PHOTOS``; the shipped profiles were built on the
training photos only) cut into random crops at 128, 256 and 384 px, encoded by every encoder that runs here
(zoo-a/b/c, VAElight SD1, TAEF2), in raw and model space, as single latents, batches of 4 and non-square
latents (the top half of 256-px latents). Random-weight diffusers architectures stand in for families with no
runnable encoder (their statistics mean nothing: only shape-level answers are scored for them).

Measured:

* identification — top-1 (format and space) accuracy, how often the answer is confident, and calibration (mean
  confidence against accuracy per confidence bin);
* mismatch detection — every (latent, VAE) pair over the registry, with three amounts of metadata (none;
  space only; format and space): recall of shape-level mismatches, of same-shape family mismatches among
  families with profiles, and the false-alarm rate on matching pairs (any warning or error);
* published-only families (a proxy for SDXL / Playground v2.5, known here only from published statistics, with no
  SDXL latents to measure false alarms on) — each measured 4-channel family in turn is replaced by a profile built
  the way SDXL's is (its pooled per-channel mean/std with transferred spreads, the transfer fitted without it)
  and SDXL's own profile is left out; its held-out latents checked against its VAE give the false-alarm rate the
  check would have on real SDXL latents, the other families' latents the recall;
* preflight — how often the rgb-preview scores flag a same-shape family mismatch, and falsely flag a match; and,
  with the VAEs that run here (zoo-a, zoo-b, VAElight SD1 encoder+decoder), how often the VAE-decode scores and
  the decode→encode cycle test do.

Usage::

    python benchmarks/bench_identify.py --threads 1  # about 4 min with cached encodes on a shared 2-core machine
    python benchmarks/bench_identify.py --quick      # fewer crops, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "scripts"))

import build_profiles as B  # noqa: E402

from latentbridge.checks import check, cycle_reference, run_preflight  # noqa: E402
from latentbridge.fingerprint import identify  # noqa: E402
from latentbridge.formats import LatentFormat, formats, get_format, pack  # noqa: E402
from latentbridge.latent import Latent  # noqa: E402
from latentbridge.photos import HELDOUT_PHOTOS  # noqa: E402
from latentbridge.profiles import builtin_profiles, profile_from_published, profile_set, raw_owner  # noqa: E402
from latentbridge.vae import VaeIdentity  # noqa: E402

SIZES = (128, 256, 384)
EVAL_SEED = 777
OUT = REPO / "benchmarks" / "results"


@dataclass(frozen=True)
class Sample:
    """One evaluation latent."""

    encoder: str
    format: str
    space: str
    tensor: torch.Tensor  # canonical, [N, C, (T,) H, W]
    kind: str  # "single", "batch4", "nonsquare", "random-weights"
    size: int
    profiled: bool  # statistics are meaningful (a trained encoder)


def vae_facts_for(fmt: LatentFormat) -> VaeIdentity:
    """What a full VAE file of ``fmt`` tells the check (raw native space, the file's format known)."""
    c, r = fmt.space_shape("raw")
    return VaeIdentity(f"{fmt.name}.safetensors", "", "autoencoder_kl", fmt, "raw", c, r, fmt.dims)


# --------------------------------------------------------------------------------------------- samples


def trained_samples(encs: list, crops: int, log, cache: Path | None = None) -> list[Sample]:
    out = []
    for enc in encs:
        started = time.perf_counter()
        latents = B.encode_photos(enc, HELDOUT_PHOTOS, SIZES, crops, EVAL_SEED, cache)
        fmt = get_format(enc.format)
        for per_size in latents.values():
            for size, z in zip(SIZES, per_size, strict=True):
                spaces = {enc.space: z}
                model = B.to_model(enc, z)
                if model is not None:
                    spaces["model"] = model
                for space, t in spaces.items():
                    out.extend(
                        Sample(enc.name, fmt.name, space, t[i : i + 1], "single", size, True) for i in range(len(t))
                    )
                    if len(t) >= 4:
                        out.append(Sample(enc.name, fmt.name, space, t[:4], "batch4", size, True))
                    if size == 256:
                        h = t.shape[-2] // 2
                        out.append(Sample(enc.name, fmt.name, space, t[:1, ..., :h, :], "nonsquare", size, True))
        count = sum(1 for s in out if s.encoder == enc.name)
        log(f"{enc.name}: {count} samples in {time.perf_counter() - started:.0f}s")
    return out


@torch.no_grad()
def random_weight_samples(log) -> list[Sample]:
    """Latents from random-weight diffusers architectures of families with no runnable encoder (shapes only)."""
    from diffusers import AutoencoderDC, AutoencoderKL, AutoencoderKLFlux2, AutoencoderKLWan

    torch.manual_seed(0)
    image = B.photo_image("astronaut")[None, :, :256, :256]
    out = []

    def add(name: str, fmt: str, space: str, z: torch.Tensor) -> None:
        out.append(Sample(name, fmt, space, z.float(), "random-weights", 256, False))

    kl16 = AutoencoderKL(
        latent_channels=16,
        block_out_channels=(8, 8, 8, 8),
        norm_num_groups=4,
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    ).eval()
    add("random AutoencoderKL 16 ch", "flux1", "raw", kl16.encode(image).latent_dist.mean)
    flux2 = AutoencoderKLFlux2(block_out_channels=(8, 8, 8, 8), norm_num_groups=4, layers_per_block=1).eval()
    z = flux2.encode(image).latent_dist.mean
    add("random AutoencoderKLFlux2", "flux2", "raw", z)
    add("random AutoencoderKLFlux2 (packed)", "flux2", "model", pack(z, 2))
    dc = AutoencoderDC(
        latent_channels=32,
        attention_head_dim=8,
        encoder_block_types="ResBlock",
        decoder_block_types="ResBlock",
        encoder_block_out_channels=(8, 8, 8, 8, 8, 32),
        decoder_block_out_channels=(32, 8, 8, 8, 8, 8),
        encoder_layers_per_block=(1, 1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1, 1),
        encoder_qkv_multiscales=((),) * 6,
        decoder_qkv_multiscales=((),) * 6,
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        upsample_block_type="interpolate",
        downsample_block_type="Conv",
    ).eval()
    add("random AutoencoderDC f32c32", "sana", "raw", dc.encode(image).latent)
    wan = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1).eval()
    video = image[:, :, None].repeat(1, 1, 5, 1, 1)[..., :64, :64]
    add("random AutoencoderKLWan", "wan21", "raw", wan.encode(video).latent_dist.mean)
    log(f"random-weight samples: {[(s.encoder, tuple(s.tensor.shape)) for s in out]}")
    return out


# ------------------------------------------------------------------------------------------ identification


def identification(samples: list[Sample], log) -> dict:
    rows = []
    for s in samples:
        ident = identify(s.tensor)
        best = ident.best
        by_shape = [c for c in (*ident.candidates, *ident.shape_only) if c.covers(s.format) and c.space == s.space]
        rows.append(
            {
                "encoder": s.encoder,
                "format": s.format,
                "space": s.space,
                "kind": s.kind,
                "size": s.size,
                "profiled": s.profiled,
                "in_shape_candidates": bool(by_shape),
                "shape_candidates": len(ident.candidates) + len(ident.shape_only),
                "top1": best is not None and best.covers(s.format) and best.space == s.space,
                "top1_family": best is not None and raw_owner(best.format) == raw_owner(s.format),
                "confidence": best.probability if best else 0.0,
                "confident": ident.confident,
                "fits": ident.fits_any,
                "summary": ident.summary,
            }
        )
    trained = [r for r in rows if r["profiled"]]
    groups = defaultdict(list)
    for r in trained:
        groups[(r["encoder"], r["space"], r["kind"])].append(r)
    table = []
    for (enc, space, kind), rs in sorted(groups.items()):
        table.append(
            {
                "encoder": enc,
                "space": space,
                "kind": kind,
                "n": len(rs),
                "top1_accuracy": _mean(r["top1"] for r in rs),
                "family_accuracy": _mean(r["top1_family"] for r in rs),
                "confident_rate": _mean(r["confident"] for r in rs),
                "confident_accuracy": _mean(r["top1"] for r in rs if r["confident"]),
                "mean_confidence": _mean(r["confidence"] for r in rs),
                "fits_rate": _mean(r["fits"] for r in rs),
            }
        )
    by_size = {size: _mean(r["top1"] for r in trained if r["size"] == size and r["kind"] == "single") for size in SIZES}
    singles = [r for r in trained if r["kind"] == "single"]
    bins = []
    for lo, hi in ((0.0, 0.6), (0.6, 0.8), (0.8, 0.9), (0.9, 0.99), (0.99, 1.01)):
        rs = [r for r in singles if lo <= r["confidence"] < hi and r["shape_candidates"] > 1]
        if rs:
            bins.append(
                {
                    "range": [lo, min(hi, 1.0)],
                    "n": len(rs),
                    "mean_confidence": _mean(r["confidence"] for r in rs),
                    "accuracy": _mean(r["top1"] for r in rs),
                }
            )
    random_rows = [r for r in rows if not r["profiled"]]
    log(f"identification: {len(trained)} trained-encoder samples, top-1 {_mean(r['top1'] for r in trained):.3f}")
    return {
        "overall": {
            "samples": len(trained),
            "top1_accuracy": _mean(r["top1"] for r in trained),
            "family_accuracy": _mean(r["top1_family"] for r in trained),
            "confident_rate": _mean(r["confident"] for r in trained),
            "confident_accuracy": _mean(r["top1"] for r in trained if r["confident"]),
            "mean_confidence_single": _mean(r["confidence"] for r in singles if r["shape_candidates"] > 1),
            "accuracy_single": _mean(r["top1"] for r in singles if r["shape_candidates"] > 1),
        },
        "by_group": table,
        "by_size_single": by_size,
        "reliability_single": bins,
        "random_weights": [
            {k: r[k] for k in ("encoder", "format", "space", "in_shape_candidates", "shape_candidates", "summary")}
            for r in random_rows
        ],
        "examples": [r["summary"] for r in trained[:: max(1, len(trained) // 12)]],
    }


# ----------------------------------------------------------------------------------------------- checks


def pair_kind(s: Sample, vfmt: LatentFormat) -> str:
    """How a latent of sample ``s`` relates to a VAE of ``vfmt``."""
    fmt = get_format(s.format)
    if vfmt.name == fmt.name:
        return "match"
    if raw_owner(vfmt.name) == raw_owner(fmt.name):
        return "shared-raw"
    c = s.tensor.shape[1]
    accepted = {vfmt.channels, vfmt.model_channels}
    if c not in accepted or vfmt.dims != fmt.dims:
        return "shape"
    if (vfmt.spatial_ratio, vfmt.temporal_ratio) != (fmt.spatial_ratio, fmt.temporal_ratio):
        return "ratio"  # same channels, different ratio: invisible in the tensor's shape
    return "family"


def mismatch(samples: list[Sample], log) -> dict:
    profiles = profile_set()
    profiled_formats = {raw_owner(name) for name, _ in profiles}
    registry = list(formats().values())
    counts: dict[tuple[str, str, str], Counter] = defaultdict(Counter)
    false_alarm_codes: dict[str, Counter] = defaultdict(Counter)
    missed: list[str] = []
    started = time.perf_counter()
    n_checks = 0
    per_pair: dict[tuple[str, str, str, str], Counter] = defaultdict(Counter)
    for s in samples:
        if s.kind not in ("single", "batch4", "random-weights"):
            continue
        fmt = get_format(s.format)
        fingerprint = identify(s.tensor, profiles=profiles)  # the same for every VAE: computed once
        for vfmt in registry:
            kind = pair_kind(s, vfmt)
            if kind == "shared-raw":
                continue
            if kind == "family" and not (
                raw_owner(fmt.name) in profiled_formats and raw_owner(vfmt.name) in profiled_formats
            ):
                kind = "family-unprofiled"
            if not s.profiled and kind not in ("shape",):
                continue  # random weights: only shape-level answers mean anything
            if s.kind == "batch4":
                if kind not in ("match", "family"):
                    continue
                kind += " (batch of 4)"
            for meta in ("none", "space", "full"):
                lat = Latent(
                    s.tensor,
                    fmt if meta == "full" else None,
                    s.space if meta in ("space", "full") else "unknown",
                    "NCTHW" if s.tensor.ndim == 5 else "NCHW",
                )
                report = check(lat, vae_facts_for(vfmt), profiles=profiles, fingerprint=fingerprint)
                n_checks += 1
                counts[(kind, meta, "all")][report.verdict] += 1
                if kind == "family" and meta == "none":
                    per_pair[(s.format, s.space, vfmt.name, s.encoder)][report.verdict] += 1
                if kind == "match" and report.verdict != "ok":
                    false_alarm_codes[meta].update(f.code for f in report.findings if f.severity != "info")
                if kind in ("shape", "family") and report.verdict != "error" and len(missed) < 40:
                    missed.append(
                        f"{kind}/{meta}: {s.encoder} {s.space} {s.size}px vs {vfmt.name}: {report.verdict} "
                        f"{[f.code for f in report.findings]}"
                    )
    log(f"mismatch: {n_checks} checks in {time.perf_counter() - started:.0f}s")
    summary = {}
    for (kind, meta, _), c in sorted(counts.items()):
        total = sum(c.values())
        summary.setdefault(kind, {})[meta] = {
            "pairs": total,
            "error": c["error"] / total,
            "warn_or_error": (c["error"] + c["warn"]) / total,
            "ok": c["ok"] / total,
        }
    pairs = [
        {
            "latent": f"{fmt} {space} ({enc})",
            "vae": vae,
            "pairs": sum(c.values()),
            "error": c["error"] / sum(c.values()),
            "warn_or_error": (c["error"] + c["warn"]) / sum(c.values()),
        }
        for (fmt, space, vae, enc), c in sorted(per_pair.items())
    ]
    return {
        "by_kind": summary,
        "family_pairs_no_metadata": pairs,
        "false_alarm_codes": {k: dict(v) for k, v in false_alarm_codes.items()},
        "missed_examples": missed,
        "profiled_families": sorted(profiled_formats),
    }


def preflight_eval(samples: list[Sample], log) -> dict:
    """rgb-preview preflight on single raw latents against every same-geometry family with rgb factors."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for s in samples:
        if s.kind != "single" or not s.profiled or s.tensor.ndim != 4 or s.size != 256:
            continue
        fmt = get_format(s.format)
        for vfmt in formats().values():
            if (
                vfmt.dims != 2
                or not vfmt.rgb_factors
                or (raw_owner(vfmt.name) == raw_owner(fmt.name) and vfmt.name != fmt.name)
            ):
                continue
            if s.tensor.shape[1] not in (vfmt.channels, vfmt.model_channels):
                continue
            kind = "match" if vfmt.name == fmt.name else "family"
            lat = Latent(s.tensor, None, s.space)
            report = check(lat, vae_facts_for(vfmt))
            _, findings = run_preflight(s.tensor, vae_facts_for(vfmt), report)
            flagged = any(f.code == "preflight-mismatch" for f in findings)
            counts[kind]["flagged" if flagged else "quiet"] += 1
    out = {k: {"pairs": sum(c.values()), "flagged": c["flagged"] / max(1, sum(c.values()))} for k, c in counts.items()}
    log(f"preflight: {out}")
    return out


def published_proxy(samples: list[Sample], log) -> dict:
    """Checks against a family known only from published statistics, measured with families we can encode."""
    shipped = builtin_profiles()
    measured_raw = [p for p in shipped if p.kind == "measured" and p.space == "raw"]
    out: dict[str, dict] = {}
    started = time.perf_counter()
    for own in (p for p in measured_raw if p.channels == 4):
        name = own.format
        others = [p for p in measured_raw if p.format != name]
        proxy = profile_from_published(
            get_format(name),
            own.pooled_mean,
            own.pooled_std,
            f"{name} pooled mean/std",
            B.fit_transfer(others),
            space="raw",
        )
        kept = [p for p in shipped if p.format != name and raw_owner(p.format) != "sdxl"]
        profiles = profile_set([*kept, proxy], include_builtin=False)
        counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
        for s in samples:
            if s.kind != "single" or not s.profiled or s.tensor.shape[1] != 4 or s.tensor.ndim != 4:
                continue
            fingerprint = identify(s.tensor, profiles=profiles)
            kind = "match" if s.format == name else "family"
            for meta in ("none", "space"):
                lat = Latent(s.tensor, None, s.space if meta == "space" else "unknown", "NCHW")
                report = check(lat, vae_facts_for(get_format(name)), profiles=profiles, fingerprint=fingerprint)
                counts[(kind, meta)][report.verdict] += 1
        out[name] = {
            f"{kind}/{meta}": {
                "pairs": sum(c.values()),
                "error": c["error"] / sum(c.values()),
                "warn_or_error": (c["error"] + c["warn"]) / sum(c.values()),
            }
            for (kind, meta), c in sorted(counts.items())
        }
    log(f"published-only proxy: {time.perf_counter() - started:.0f}s {json.dumps(out)}")
    return out


@torch.no_grad()
def preflight_vae_eval(samples: list[Sample], weights: Path, log) -> dict:
    """check(preflight=True) with real VAEs (both halves): the VAE-decode image scores and the cycle test."""
    from latentbridge.weights import load_vae

    vaes = {"zoo-a": load_vae("zoo-a"), "zoo-b": load_vae("zoo-b")}
    light = [weights / "vaelight-sd1" / "VAEencoder.onnx", weights / "vaelight-sd1" / "VAEpreview.onnx"]
    if all(f.is_file() for f in light):
        vaes["sd1"] = load_vae([str(f) for f in light])
    cells = 32
    refs = {name: cycle_reference(vae, cells) for name, vae in vaes.items()}
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    started = time.perf_counter()
    for s in samples:
        if s.kind != "single" or not s.profiled or s.size != 256 or s.space != "raw" or s.format not in vaes:
            continue
        for name, vae in vaes.items():
            kind = "match" if s.format == name else "family"
            report = check(
                Latent(s.tensor, None, "raw"), vae, preflight=True, preflight_cells=cells, cycle_reference=refs[name]
            )
            warned = {f.code for f in report.findings if f.severity != "info"}
            c = counts[(kind, f"{s.format} latent, {name} VAE")]
            c["n"] += 1
            c["cycle"] += "preflight-cycle" in warned
            c["image"] += bool(warned & {"preflight-unnatural", "preflight-mismatch"})
            c["any"] += bool(warned & {"preflight-cycle", "preflight-unnatural", "preflight-mismatch"})
    totals: dict[str, Counter] = defaultdict(Counter)
    for (kind, _), c in counts.items():
        totals[kind].update(c)
    out = {
        "vaes": sorted(vaes),
        "cells": cells,
        "references": {k: round(v, 4) for k, v in refs.items()},
        "by_kind": {
            k: {m: c[m] / c["n"] for m in ("cycle", "image", "any")} | {"pairs": c["n"]} for k, c in totals.items()
        },
        "by_pair": [
            {"kind": kind, "pair": pair, "pairs": c["n"]} | {m: c[m] / c["n"] for m in ("cycle", "image", "any")}
            for (kind, pair), c in sorted(counts.items())
        ],
    }
    log(f"preflight with VAEs: {time.perf_counter() - started:.0f}s {json.dumps(out['by_kind'])}")
    return out


# ---------------------------------------------------------------------------------------------- report


def _mean(values) -> float:
    v = [float(x) for x in values]
    return float(np.mean(v)) if v else math.nan


def markdown(result: dict) -> str:
    ident, mm = result["identification"], result["mismatch"]
    o = ident["overall"]
    by = mm["by_kind"]

    def rate(kind: str, meta: str, key: str) -> str:
        v = by.get(kind, {}).get(meta)
        return f"{v[key]:.3f} ({v['pairs']} pairs)" if v else "n/a"

    lines = [
        "# identify / check benchmark",
        "",
        "## Goals",
        "",
        f"- every shape-level mismatch caught (error), bare tensors: {rate('shape', 'none', 'error')}",
        f"- same-shape family mismatches among families with profiles, bare tensors: error "
        f"{rate('family', 'none', 'error')}, flagged (warn or error) {rate('family', 'none', 'warn_or_error')}; "
        f"batches of 4: flagged {rate('family (batch of 4)', 'none', 'warn_or_error')}",
        f"- false alarms (warn or error) on matching pairs: bare {rate('match', 'none', 'warn_or_error')}, "
        f"space recorded {rate('match', 'space', 'warn_or_error')}, "
        f"all recorded {rate('match', 'full', 'warn_or_error')}",
    ]
    proxy = result.get("published_proxy", {})
    if proxy:
        fa = [v["match/space"]["warn_or_error"] for v in proxy.values() if "match/space" in v]
        rc = [v["family/none"]["warn_or_error"] for v in proxy.values() if "family/none" in v]
        lines.append(
            f"- a family known only from published statistics (as SDXL is; proxy below): false alarms with the space "
            f"recorded {min(fa):.3f}–{max(fa):.3f}, recall of bare family mismatches {min(rc):.3f}–{max(rc):.3f}"
        )
    pv = result.get("preflight_vae", {}).get("by_kind", {})
    if pv:
        lines.append(
            f"- preflight with the VAE itself (cycle test + decode scores): flags {pv['family']['any']:.3f} of family "
            f"mismatches ({pv['family']['pairs']} pairs), {pv['match']['any']:.3f} of matches ({pv['match']['pairs']})"
        )
    lines += [
        "",
        f"Held-out photos {', '.join(HELDOUT_PHOTOS)}; crops at {', '.join(map(str, SIZES))} px; "
        f"encoders: {', '.join(result['encoders'])}. {result['machine']}; {result['seconds']:.0f} s.",
        "",
        "## Identification (trained encoders)",
        "",
        f"- top-1 (format + space): **{o['top1_accuracy']:.3f}** over {o['samples']} latents; family only "
        f"{o['family_accuracy']:.3f}",
        f"- confident answers: {o['confident_rate']:.3f} of latents, {o['confident_accuracy']:.3f} of them right",
        f"- single latents with a choice: mean confidence {o['mean_confidence_single']:.3f} vs accuracy "
        f"{o['accuracy_single']:.3f}",
        "",
        "| encoder | space | kind | n | top-1 | family | confident | conf. acc. | mean conf. | fits |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for g in ident["by_group"]:
        lines.append(
            f"| {g['encoder']} | {g['space']} | {g['kind']} | {g['n']} | {g['top1_accuracy']:.3f} | "
            f"{g['family_accuracy']:.3f} | {g['confident_rate']:.3f} | {g['confident_accuracy']:.3f} | "
            f"{g['mean_confidence']:.3f} | {g['fits_rate']:.3f} |"
        )
    lines += [
        "",
        "Top-1 by crop size (single latents): "
        + ", ".join(f"{k} px {v:.3f}" for k, v in ident["by_size_single"].items()),
        "",
        "Reliability (single latents with more than one candidate):",
        "",
        "| confidence | n | mean confidence | accuracy |",
        "|---|---|---|---|",
    ]
    for b in ident["reliability_single"]:
        lines.append(
            f"| {b['range'][0]:.2f}–{b['range'][1]:.2f} | {b['n']} | {b['mean_confidence']:.3f} | {b['accuracy']:.3f} |"
        )
    lines += ["", "Random-weight architectures (shape only):", ""]
    for r in ident["random_weights"]:
        lines.append(
            f"- {r['encoder']} ({r['format']} {r['space']}): in shape candidates: {r['in_shape_candidates']}; "
            f'"{r["summary"]}"'
        )
    lines += [
        "",
        "## Mismatch detection over (latent, VAE) pairs",
        "",
        "metadata: none = bare tensor; space = space recorded; full = format and space recorded.",
        "",
        "| pair kind | metadata | pairs | error | warn or error | ok |",
        "|---|---|---|---|---|---|",
    ]
    for kind, per in mm["by_kind"].items():
        for meta, v in per.items():
            lines.append(
                f"| {kind} | {meta} | {v['pairs']} | {v['error']:.3f} | {v['warn_or_error']:.3f} | {v['ok']:.3f} |"
            )
    lines += [
        "",
        "For a match, the columns error / warn or error are false alarms.",
        "",
        "Same-shape family mismatches without metadata, per pair (single latents):",
        "",
        "| latent | VAE | pairs | error | warn or error |",
        "|---|---|---|---|---|",
        *(
            f"| {r['latent']} | {r['vae']} | {r['pairs']} | {r['error']:.3f} | {r['warn_or_error']:.3f} |"
            for r in mm["family_pairs_no_metadata"]
        ),
        "",
        f"False-alarm findings on matching pairs: {json.dumps(mm['false_alarm_codes'])}",
        "",
        f"Families with profiles: {', '.join(mm['profiled_families'])}",
        "",
    ]
    if mm["missed_examples"]:
        lines += ["Missed (first few):", ""] + [f"- {m}" for m in mm["missed_examples"][:12]] + [""]
    if proxy:
        lines += [
            "## A family known only from published statistics (proxy for SDXL / Playground v2.5)",
            "",
            "Each measured 4-channel family in turn is known only the way SDXL is: a profile from its pooled "
            "per-channel mean/std with spreads transferred from the other measured families; SDXL's published "
            "profile is left out (as there is no second published 4-channel family beside SDXL). Its own held-out "
            "latents against its VAE are matches (false alarms); the other families' latents are mismatches.",
            "",
            "| family (published only) | pairs | metadata | error | warn or error |",
            "|---|---|---|---|---|",
        ]
        for name, per in proxy.items():
            for key, v in per.items():
                lines.append(
                    f"| {name} | {key.split('/')[0]} ({v['pairs']}) | {key.split('/')[1]} | {v['error']:.3f} | "
                    f"{v['warn_or_error']:.3f} |"
                )
        lines.append("")
    lines += ["## Preflight (rgb previews, 256-px latents)", ""]
    for kind, v in result["preflight"].items():
        lines.append(f"- {kind}: {v['pairs']} pairs, flagged {v['flagged']:.3f}")
    if pv:
        pre = result["preflight_vae"]
        lines += [
            "",
            f"## Preflight with the VAE itself ({', '.join(pre['vaes'])}; raw 256-px latents, "
            + f"{pre['cells']}-cell crop)",
            "",
            f"cycle: decode→encode test against the VAE's own baseline (reference ratios {pre['references']}); "
            "image: the VAE decode's image scores (preflight-unnatural / preflight-mismatch).",
            "",
            "| kind | latent, VAE | pairs | cycle | image | any |",
            "|---|---|---|---|---|---|",
            *(
                f"| {r['kind']} | {r['pair']} | {r['pairs']} | {r['cycle']:.3f} | {r['image']:.3f} | {r['any']:.3f} |"
                for r in pre["by_pair"]
            ),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo-dir", type=Path, default=REPO / "src" / "latentbridge" / "zoo")
    parser.add_argument("--weights", type=Path, default=B.WEIGHTS)
    parser.add_argument("--crops", type=int, default=6, help="crops per held-out photo and size")
    parser.add_argument("--quick", action="store_true", help="2 crops per photo and size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--cache", type=Path, default=None, help="keep encoded latents here between runs")
    parser.add_argument("--render", type=Path, default=None, help="only rewrite the .md from this identify.json")
    args = parser.parse_args(argv)
    if args.render is not None:
        (args.out / "identify.md").write_text(markdown(json.loads(args.render.read_text())))
        return 0
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    encs = B.encoders(args.zoo_dir, args.weights, log)
    samples = trained_samples(encs, 2 if args.quick else args.crops, log, args.cache) + random_weight_samples(log)
    result = {
        "encoders": [e.name for e in encs],
        "machine": f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU",
        "heldout_photos": list(HELDOUT_PHOTOS),
        "sizes": list(SIZES),
        "identification": identification(samples, log),
        "mismatch": mismatch(samples, log),
        "published_proxy": published_proxy(samples, log),
        "preflight": preflight_eval(samples, log),
        "preflight_vae": preflight_vae_eval(samples, args.weights, log),
    }
    result["seconds"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("identify.json", json.dumps(result, indent=1, default=str) + "\n"),
        ("identify.md", markdown(result)),
    ):
        tmp = args.out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(args.out / name)
    log(f"wrote {args.out / 'identify.json'} and identify.md")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
