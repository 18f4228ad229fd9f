"""`latentbridge transfer LATENT|DIR --from-vae A --to-vae B -o OUT [--bridge FILE] [--report]`.

Moves latents from VAE A's latent space to VAE B's: decode→re-encode by default, or with a bridge fitted by
`latentbridge fit-bridge`. A folder is done file by file with a progress bar and resumes where it stopped.
`--report` measures fidelity (PSNR/SSIM of B's decode of the result against A's decode of the input) and time.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from latentbridge.cli._app import app
from latentbridge.cli._common import GRID_HELP, auto_vae, fail_on_error, load_vae_option, print_error, run_options

if TYPE_CHECKING:
    from latentbridge import Run


def _cell(value: float, fmt: str) -> str:
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞"
    return format(value, fmt)


def fidelity_table(rows: Any, title: str) -> Table:
    """A rich table of FidelityRow values."""
    table = Table(title=title, title_justify="left")
    for col in ("method", "PSNR dB", "SSIM", "ms / latent", "PSNR vs image", "SSIM vs image"):
        table.add_column(col, justify="left" if col == "method" else "right", overflow="fold", no_wrap=col == "method")
    for r in rows:
        table.add_row(
            r.method,
            _cell(r.psnr, ".2f"),
            _cell(r.ssim, ".4f"),
            _cell(r.seconds_per_latent * 1000, ".1f"),
            _cell(r.image_psnr, ".2f"),
            _cell(r.image_ssim, ".4f"),
        )
    notes = [f"{r.method}: {r.note}" for r in rows if r.note]
    if notes:
        table.caption = "; ".join(notes)
        table.caption_justify = "left"
    return table


@app.command("transfer")
@fail_on_error
@run_options(
    "batch_size",
    "tile",
    "device",
    "dtype",
    batch_size="Images per network call (decode→re-encode).",
    tile="Tile side in pixels for decode and encode.",
    device="Where the networks run.",
    dtype="fp32, bf16 or fp16.",
)
def transfer_command(
    source: Path = typer.Argument(..., help="A latent file, or a folder of latent files.", show_default=False),
    output: Path = typer.Option(..., "-o", "--output", help="Output file (or folder, for a folder input)."),
    from_vae: str = typer.Option(
        None, "--from-vae", help="Source VAE: weight file, zoo name, ENCODER,DECODER, or auto."
    ),
    to_vae: str = typer.Option(None, "--to-vae", help="Target VAE: weight file, zoo name, or ENCODER,DECODER."),
    bridge: Path = typer.Option(None, "--bridge", help="A bridge file from `latentbridge fit-bridge` (no pixels)."),
    bridge_kind: str = typer.Option("conv", "--bridge-kind", help="Which converter of the bridge: conv or linear."),
    format: str = typer.Option(None, "--format", help="Latent format, when the file does not record it."),
    layout: str = typer.Option(None, "--layout", help="Dimension letters of the stored tensor, e.g. NTCHW, NHWC."),
    space: str = typer.Option(None, "--space", help="raw|model: the input's space, when the file does not say."),
    key: str = typer.Option(None, "--key", help="Which array of the file holds the latent."),
    grid: str = typer.Option(None, "--grid", help=GRID_HELP),
    out_space: str = typer.Option(None, "--out-space", help="raw|model for the output (default: the input's)."),
    container: str = typer.Option(
        None, "--container", help="Output container: latent, safetensors, pt, npy, npz (default: the input's)."
    ),
    report: bool = typer.Option(False, "--report", help="Print fidelity (PSNR/SSIM) and time of each method."),
    image: Path = typer.Option(None, "--image", help="With --report: the original image, for the best achievable."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (a folder: redo it all)."),
    pad: bool = typer.Option(
        False, "--pad", help="Reflect-pad decoded sizes the target format cannot take (recorded; decode crops it off)."
    ),
    crop: bool = typer.Option(False, "--crop", help="Centre-crop decoded sizes the target format cannot take."),
    refine: int = typer.Option(
        0,
        "--refine",
        help="After decode→re-encode, refine each latent N steps through the target decoder towards the source "
        "decode (closer to the best achievable; ~3 decodes per step, untiled; try 20). 0 = off.",
    ),
    *,
    run: Run,
) -> None:
    """Move latents to another VAE's latent space (decode→re-encode, or a learned bridge)."""
    from latentbridge import (
        LatentBridgeError,
        Refine,
        fidelity_report,
        load_bridge,
        read_latent,
        transfer,
        transfer_dir,
        write_latent,
    )
    from latentbridge.files import sniff
    from latentbridge.transfers import FIDELITY_NOTE, MANIFEST_NAME, method_name, output_container

    console = Console()
    if bridge is None and (from_vae is None or to_vae is None):
        raise typer.BadParameter("decode→re-encode needs --from-vae and --to-vae (or pass --bridge FILE)")
    if not source.is_dir() and output.exists() and not overwrite:
        raise LatentBridgeError(f"{output} already exists; pass --overwrite to replace it, or choose another -o")
    if refine < 0:
        raise typer.BadParameter(f"--refine takes a number of steps, 0 or more; got {refine}")
    if pad and crop:
        raise typer.BadParameter("--pad and --crop both given; choose one (--pad keeps every pixel, --crop cuts edges)")
    if (pad or crop) and bridge is not None:
        raise typer.BadParameter("--pad/--crop fit decoded pictures for decode→re-encode; a bridge maps latents")
    fit = "pad" if pad else "crop" if crop else None
    if refine and bridge is not None:
        raise typer.BadParameter("--refine improves decode→re-encode; it does not apply with --bridge (drop one)")
    method: Any = load_bridge(bridge, kind=bridge_kind) if bridge is not None else "reencode"
    if refine:
        method = Refine(refine)
    # A is only decoded; B encodes, and decodes too when the result is scored or refined through its decoder
    device, dtype = str(run.device), str(run.dtype)
    from_vae = auto_vae(from_vae, source, option="--from-vae")  # "auto": the file the latent's provenance names
    src_vae = (
        load_vae_option(from_vae, part="decoder", device=device, dtype=dtype, option="--from-vae") if from_vae else None
    )
    dst_part = "both" if report or refine else "encoder"
    dst_vae = load_vae_option(to_vae, part=dst_part, device=device, dtype=dtype, option="--to-vae") if to_vae else None

    if source.is_dir():
        if grid is not None or layout is not None:
            raise typer.BadParameter("--grid and --layout describe one file's tensor; run them file by file")
        if report:
            raise typer.BadParameter("--report measures one latent file; run it on one file of the folder")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, TimeRemainingColumn(), console=console, transient=False) as bar:
            task = bar.add_task(f"transfer {method_name(method)}", total=None)

            def on_file(outcome: Any) -> None:
                bar.update(task, total=outcome.total, completed=outcome.index, description=outcome.name)

            try:
                outcomes = transfer_dir(
                    source,
                    output,
                    src_vae,
                    dst_vae,
                    method=method,
                    format=format,
                    space=space,
                    out_space=out_space,
                    container=container,
                    overwrite=overwrite,
                    on_file=on_file,
                    fit=fit,
                    run=run.replace(progress=None),  # the folder bar shows files; decodes stay quiet
                )
            except FileExistsError as exc:  # an output this transfer did not write
                raise LatentBridgeError(str(exc)) from exc
        counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "not-latent", "failed")}
        failed = f", {counts['failed']} failed" if counts["failed"] else ""
        console.print(
            f"{counts['done']} transferred, {counts['skipped']} already complete (skipped), "
            f"{counts['not-latent']} not latents (left alone){failed} -> {output}",
            highlight=False,
        )
        for o in outcomes:
            if o.status == "not-latent":
                console.print(f"  not a latent: {o.name}: {o.note}", highlight=False, markup=False)
        if counts["failed"]:
            for o in outcomes:
                if o.status == "failed":
                    print_error(f"{o.name}: {o.note}")
            print_error(
                f"{counts['failed']} of {len(outcomes)} files failed (recorded in {output / MANIFEST_NAME}); fix them "
                "and run the same command again: only the failed files are retried"
            )
            raise typer.Exit(1)
        return

    latent = read_latent(source, key=key, format=format, space=space, grid=grid, layout=layout)
    out = transfer(
        latent,
        src_vae,
        dst_vae,
        method=method,
        space=out_space,
        fit=fit,
        run=run,
    )
    write_latent(out, output, container=output_container(sniff(source), container), overwrite=overwrite)
    console.print(
        f"{source} ({latent.format_name or 'unknown format'}, {list(latent.shape)}) -> {output} "
        f"({out.format_name or 'unknown format'}, {out.space}, {list(out.shape)}) via {method_name(method)}",
        highlight=False,
    )
    if report:
        if src_vae is None or dst_vae is None:
            raise typer.BadParameter("--report decodes both sides: pass --from-vae and --to-vae")
        methods: list[Any] = ["reencode"] + ([method] if refine else [])
        if bridge is not None:
            methods += [load_bridge(bridge, kind="linear"), load_bridge(bridge, kind="conv")]
        original = None
        if image is not None:
            from latentbridge import load_images

            original = load_images([image]).tensor
        rows = fidelity_report(
            latent, src_vae, dst_vae, methods, image=original, fit=fit, run=run.replace(progress=None)
        )
        console.print(fidelity_table(rows, f"fidelity {src_vae.name} -> {dst_vae.name} ({source.name})"))
        console.print(FIDELITY_NOTE, highlight=False)
