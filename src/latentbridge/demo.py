"""The offline demo: what latentbridge is for, told with the built-in zoo VAEs and a real photo.

Steps (each prints as it goes and adds a section to ``index.html`` in the output folder):

1. an empty latent and seeded noise for zoo-a (the same seed gives the same noise on any machine);
2. a real photo encoded with zoo-a, then inspected;
3. that latent checked against zoo-b (same shape!) and zoo-c (channels differ): both refused, with reasons;
4. decoded anyway with zoo-b — the silent failure users hit — and with zoo-a, side by side with PSNR;
5. moved zoo-a → zoo-b by decode→re-encode and decoded with zoo-b, with PSNR;
6. the latent's channel statistics plot and latent→RGB preview.

Only the public API of the library is used; the demo is a thin shell like the CLI.
"""

from __future__ import annotations

import hashlib
import html
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latentbridge import codec, diagnostics, files, photos, previews
from latentbridge.checks import Report, check
from latentbridge.formats import get_format
from latentbridge.latent import Latent, Provenance
from latentbridge.metrics import psnr
from latentbridge.transfers import Refine, transfer
from latentbridge.weights import load_vae

__all__ = [
    "DEMO_PHOTO",
    "DEMO_SEED",
    "DemoResult",
    "DemoStep",
    "run_demo",
]

DEMO_PHOTO = "astronaut"
DEMO_SEED = 42


@dataclass(frozen=True, slots=True)
class DemoStep:
    """One section of the demo page."""

    title: str
    lines: tuple[str, ...]
    images: tuple[tuple[str, str], ...] = ()  # (caption, file name in the output folder)
    reports: tuple[tuple[str, Report], ...] = ()  # (caption, check report): drawn as finding cards


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What the demo wrote and measured."""

    out_dir: Path
    html: Path
    steps: tuple[DemoStep, ...]
    numbers: dict[str, Any] = field(default_factory=dict)  # psnr_right_db, psnr_wrong_db, psnr_transfer_db, …


def _save_png(images: torch.Tensor, path: Path, metadata: dict[str, Any]) -> str:
    from latentbridge.images import save_images

    save_images(images, path, metadata=metadata)
    return path.name


def _side_by_side(images: list[torch.Tensor]) -> torch.Tensor:
    """[1,3,H,W] images in [0,1] of equal height -> one [1,3,H,sum(W)+gaps] strip with white gaps."""
    gap = torch.ones(1, 3, images[0].shape[-2], 4)
    parts: list[torch.Tensor] = []
    for i, im in enumerate(images):
        if i:
            parts.append(gap)
        parts.append(im.float().clamp(0, 1))
    return torch.cat(parts, dim=-1)


def _report_lines(report: Report) -> list[str]:
    lines = [f"verdict: {report.verdict.upper()}"]
    for f in report.findings:
        if f.severity == "info":
            continue
        lines.append(f"  [{f.severity}] {f.code}: {f.message}")
        if f.fix:
            lines.append(f"      fix: {f.fix}")
    return lines


def run_demo(
    out_dir: str | Path = "demo-out",
    *,
    size: int = 256,
    photo: str = DEMO_PHOTO,
    seed: int = DEMO_SEED,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run the whole demo offline and write ``out_dir/index.html`` with its PNGs and latent files.

    Args:
        out_dir: output folder (created; existing demo files in it are replaced).
        size: photo side in pixels (a multiple of 8; 256 by default, 128 keeps the test suite fast).
        photo: a built-in photo name (latentbridge.photos.PHOTOS).
        seed: the noise seed of step 1.
        echo: where progress lines go.

    Returns:
        A DemoResult with the measured numbers (PSNRs in dB against the original photo).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    steps: list[DemoStep] = []
    numbers: dict[str, Any] = {"photo": photo, "size": size, "seed": seed}

    def step(
        title: str,
        lines: list[str],
        images: list[tuple[str, str]] | None = None,
        reports: list[tuple[str, Report]] | None = None,
    ) -> None:
        n = len(steps) + 1
        echo(f"\n== {n}. {title}")
        for line in lines:
            echo(f"   {line}")
        for caption, report in reports or ():
            for line in [caption, *_report_lines(report)]:
                echo(f"   {line}")
        steps.append(DemoStep(title, tuple(lines), tuple(images or ()), tuple(reports or ())))

    vae_a, vae_b, vae_c = (load_vae(name) for name in ("zoo-a", "zoo-b", "zoo-c"))
    fmt_a = get_format("zoo-a")

    # 1. empty latent and seeded noise -------------------------------------------------------------------
    h = w = size // fmt_a.spatial_ratio
    empty = Latent(torch.zeros(1, fmt_a.channels, h, w), fmt_a, "raw", provenance=Provenance(tool="latentbridge demo"))
    noise_t = torch.randn(1, fmt_a.channels, h, w, generator=torch.Generator("cpu").manual_seed(seed))
    noise = Latent(noise_t, fmt_a, "model", provenance=Provenance(seed=seed, tool="latentbridge demo"))
    files.write_latent(empty, out / "empty.latent", overwrite=True)
    files.write_latent(noise, out / "noise.latent", overwrite=True)
    noise_hash = hashlib.sha256(noise_t.numpy().tobytes()).hexdigest()[:16]
    empty_report = check(empty, vae_a)
    numbers["noise_sha256_16"] = noise_hash
    step(
        "An empty latent and seeded noise for zoo-a",
        [
            f"empty latent: shape {tuple(empty.shape)}, all zeros -> empty.latent (ComfyUI-loadable)",
            f"noise: torch.randn with seed {seed} on the CPU generator, model space, sha256 {noise_hash}… "
            "(identical on any machine) -> noise.latent (stored raw, as ComfyUI expects)",
        ],
        reports=[("checking the empty latent against zoo-a before decoding it:", empty_report)],
    )

    # 2. encode a real photo -----------------------------------------------------------------------------
    image = photos.photo_tensor(photo, size)
    latent = codec.encode(vae_a, image, provenance=Provenance(source_image=photo))
    files.write_latent(latent, out / f"{photo}.zoo-a.latent", overwrite=True)
    back = files.read_latent(out / f"{photo}.zoo-a.latent")
    stats = files.latent_stats(back)
    original = (image + 1) / 2
    orig_png = _save_png(original, out / "original.png", {"photo": photo})
    chan = stats["channels"]
    lines = [
        f"encoded {photo} ({size}×{size}) with zoo-a -> {photo}.zoo-a.latent",
        f"read back: format {back.format_name}, space {back.space}, layout {back.layout}, shape {back.shape}, "
        f"dtype {str(back.tensor.dtype).removeprefix('torch.')}",
        f"provenance: vae {back.provenance.vae_name} sha256 {back.provenance.vae_sha256[:12]}…, "
        f"source {back.provenance.source_image}",
    ]
    for i, c in enumerate(chan):
        lines.append(f"channel {i}: mean {c['mean']:+.3f} std {c['std']:.3f} min {c['min']:+.2f} max {c['max']:+.2f}")
    step("A real photo encoded with zoo-a, then inspected", lines, [("original photo", orig_png)])

    # 3. check against zoo-b and zoo-c ---------------------------------------------------------------------
    rep_b, rep_c = check(back, vae_b), check(back, vae_c)
    # The same values with every label stripped (what a bare tensor or a ComfyUI .latent gives us): the
    # family must now come from the values themselves.
    bare = Latent(back.to_space("raw").tensor, None, "unknown")
    rep_bare = check(bare, vae_b)
    numbers["check_zoo_b"], numbers["check_zoo_c"] = rep_b.verdict, rep_c.verdict
    numbers["check_zoo_b_unlabelled"] = rep_bare.verdict
    step(
        "Checked against zoo-b (same shape!) and zoo-c (channels differ)",
        [],
        reports=[
            ("zoo-a latent vs zoo-b:", rep_b),
            ("zoo-a latent vs zoo-c:", rep_c),
            ("the same tensor with no labels at all (format and space unknown) vs zoo-b — fingerprinted:", rep_bare),
        ],
    )

    # 4. decode anyway with zoo-b, and with zoo-a ------------------------------------------------------------
    right = codec.decode(vae_a, back)
    # What a tool that does not know families does: the raw tensor goes to whichever VAE is loaded.
    unlabelled = Latent(back.to_space("raw").tensor, None, "raw")
    wrong = codec.decode(vae_b, unlabelled)
    p_right, p_wrong = float(psnr(right, original)[0]), float(psnr(wrong, original)[0])
    numbers["psnr_right_db"], numbers["psnr_wrong_db"] = round(p_right, 2), round(p_wrong, 2)
    strip = _save_png(
        _side_by_side([original, right, wrong]), out / "decode-right-vs-wrong.png", {"step": 4, "photo": photo}
    )
    step(
        "Decoded with the right VAE (zoo-a) and, anyway, with the wrong one (zoo-b)",
        [
            f"zoo-a decode: {p_right:.2f} dB PSNR against the photo",
            f"zoo-b decode: {p_wrong:.2f} dB — no crash, no warning in a tool that does not check: the silent failure",
        ],
        [("original | zoo-a decode (right) | zoo-b decode (wrong)", strip)],
    )

    # 5. transfer zoo-a -> zoo-b ------------------------------------------------------------------------------
    plain = transfer(back, vae_a, vae_b, method="reencode")
    t0 = time.perf_counter()
    moved = transfer(back, vae_a, vae_b, method=Refine())
    refine_s = time.perf_counter() - t0
    files.write_latent(moved, out / f"{photo}.zoo-b.latent", overwrite=True)
    via_plain = codec.decode(vae_b, plain)
    via_b = codec.decode(vae_b, moved)
    direct_b = codec.decode(vae_b, codec.encode(vae_b, image))
    p_plain, p_moved = float(psnr(via_plain, original)[0]), float(psnr(via_b, original)[0])
    p_direct = float(psnr(direct_b, original)[0])
    numbers["psnr_reencode_db"], numbers["psnr_transfer_db"] = round(p_plain, 2), round(p_moved, 2)
    numbers["psnr_direct_b_db"], numbers["refine_seconds"] = round(p_direct, 2), round(refine_s, 2)
    numbers["psnr_transfer_vs_source_db"] = round(float(psnr(via_b, right)[0]), 2)
    strip5 = _save_png(_side_by_side([original, right, via_b]), out / "transfer.png", {"step": 5, "photo": photo})
    step(
        "Moved zoo-a → zoo-b by decode→re-encode + refinement, then decoded with zoo-b",
        [
            f"provenance history: {' -> '.join(moved.provenance.history)}",
            f"plain decode→re-encode: {p_plain:.2f} dB against the photo",
            f"with {Refine().steps} refinement steps through zoo-b's decoder ({refine_s:.1f} s): {p_moved:.2f} dB "
            f"against the photo ({numbers['psnr_transfer_vs_source_db']:.2f} dB against the zoo-a decode)",
            f"best achievable (photo encoded with zoo-b directly): {p_direct:.2f} dB",
        ],
        [("original | zoo-a decode | zoo-b decode of the moved latent", strip5)],
    )

    # 6. channel statistics and preview ---------------------------------------------------------------------
    diag = diagnostics.diagnose(back)
    stats_png = out / "channel-stats.png"
    stats_png.write_bytes(diagnostics.figure_png(diagnostics.stats_figure(diag.stats, diag.deviation)))
    t0 = time.perf_counter()
    prev = previews.preview(back)
    preview_ms = (time.perf_counter() - t0) * 1000
    up = torch.nn.functional.interpolate(prev, size=(size, size), mode="nearest")
    small = torch.nn.functional.interpolate(original, size=tuple(prev.shape[-2:]), mode="area")
    p_prev = float(psnr(prev.clamp(0, 1), small)[0])
    numbers["preview_psnr_db"], numbers["preview_ms"] = round(p_prev, 2), round(preview_ms, 2)
    prev_png = _save_png(_side_by_side([original, up]), out / "preview.png", {"step": 6})
    step(
        "Channel statistics and latent→RGB preview",
        [
            "per-channel mean/std of the zoo-a latent against zoo-a's reference statistics (z-scores)",
            f"latent→RGB preview with zoo-a's fitted factors: {preview_ms:.1f} ms, {p_prev:.2f} dB against the "
            "photo downsampled to the latent's size (shown upscaled)",
        ],
        [("channel statistics", stats_png.name), ("original | preview (no decoder)", prev_png)],
    )

    numbers["seconds"] = round(time.perf_counter() - started, 1)
    page = _write_html(out, steps, numbers)
    (out / "numbers.json").write_text(json.dumps(numbers, indent=1))
    echo(f"\nwrote {page} ({numbers['seconds']} s)")
    return DemoResult(out, page, tuple(steps), numbers)


def _write_html(out: Path, steps: list[DemoStep], numbers: dict[str, Any]) -> Path:
    """The demo page, in latentbridge's shared look: the story's verdicts and numbers at the top, then a panel per
    step with its lines, its checks as finding cards and its pictures."""
    from latentbridge.report import finding_card
    from latentbridge.style import page_css

    e = html.escape
    verdicts = [
        ("zoo-a latent checked against zoo-b", numbers.get("check_zoo_b", "")),
        ("… against zoo-c", numbers.get("check_zoo_c", "")),
        ("the bare tensor against zoo-b", numbers.get("check_zoo_b_unlabelled", "")),
    ]
    summary = "".join(f'<li><span class="badge {e(v)}">{e(v)}</span> {e(k)}</li>' for k, v in verdicts if v)
    psnr = [
        ("right VAE (zoo-a)", numbers.get("psnr_right_db")),
        ("wrong VAE (zoo-b), no check", numbers.get("psnr_wrong_db")),
        ("moved to zoo-b and decoded", numbers.get("psnr_transfer_db")),
        ("photo encoded with zoo-b directly", numbers.get("psnr_direct_b_db")),
    ]
    rows = "".join(f'<tr><td>{e(k)}</td><td class="n">{v:.2f} dB</td></tr>' for k, v in psnr if v is not None)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, '
        'initial-scale=1"><link rel="icon" href="data:,"><title>latentbridge demo</title>'
        f"<style>{page_css()}</style></head><body>",
        "<h1>latentbridge demo</h1>",
        '<p class="sub">The whole story offline, on the built-in zoo VAEs and a real photo.</p>',
        '<section class="summary" aria-label="summary">'
        f'<div class="item"><h3>Checks before decoding</h3><ul>{summary}</ul></div>'
        f'<div class="item"><h3>PSNR against the photo</h3><table>{rows}</table></div></section>',
    ]
    for i, s in enumerate(steps, 1):
        parts.append(f'<section class="panel"><h2>{i}. {e(s.title)}</h2>')
        if s.lines:
            parts.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in s.lines) + "</ul>")
        for caption, report in s.reports:
            parts.append(f'<h3 class="row">{e(caption)} <span class="verdict {e(report.verdict)}">'
                         f"{e(report.verdict)}</span></h3>")  # fmt: skip
            shown = [f for f in report.findings if f.severity != "info"]
            cards = "".join(finding_card(f) for f in shown) or '<p class="note">no warnings or errors</p>'
            parts.append(f'<div class="cards">{cards}</div>')
        for caption, name in s.images:
            parts.append(
                f'<figure><img class="pic pixelated" src="{e(name)}" alt="{e(caption)}">'
                f"<figcaption>{e(caption)}</figcaption></figure>"
            )
        parts.append("</section>")
    parts.append(
        f'<section class="panel"><h2>Numbers</h2><pre>{e(json.dumps(numbers, indent=1))}</pre></section></body></html>'
    )
    path = out / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(path)
    return path
