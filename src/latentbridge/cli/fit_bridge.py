"""`latentbridge fit-bridge --src-vae A --dst-vae B --images DIR|builtin:train -o bridge.safetensors`.

Encodes the same image views with both VAEs, solves the per-pixel linear map in closed form, trains a small
conv bridge with early stopping, prints the validation curve and both bridges' scores, and saves one file
that `latentbridge transfer --bridge` reads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from latentbridge.cli._app import app
from latentbridge.cli._common import fail_on_error, load_vae_option


def _num(value: float, fmt: str) -> str:
    return "—" if value is None or math.isnan(value) else format(value, fmt)


def scores_table(scores: dict[str, float], title: str) -> Table:
    """Validation scores of the baselines, the linear map and the conv bridge."""
    table = Table(title=title, title_justify="left")
    for col in ("converter", "val NMSE", "PSNR dB", "SSIM"):
        table.add_column(col, justify="left" if col == "converter" else "right")
    rows = [
        ("zero (predict the mean)", scores.get("nmse_zero", math.nan), math.nan, math.nan),
        ("identity (latent as is)", scores.get("nmse_identity", math.nan), math.nan, math.nan),
        ("linear map (closed form)", scores["nmse_linear"], scores.get("psnr_linear", math.nan),
         scores.get("ssim_linear", math.nan)),
        ("conv bridge", scores["nmse_conv"], scores.get("psnr_conv", math.nan), scores.get("ssim_conv", math.nan)),
    ]  # fmt: skip
    for name, nmse, psnr, ssim in rows:
        table.add_row(name, _num(nmse, ".4f"), _num(psnr, ".2f"), _num(ssim, ".4f"))
    return table


@app.command("fit-bridge")
@fail_on_error
def fit_bridge_command(
    src_vae: str = typer.Option(..., "--src-vae", help="Source VAE: weight file, zoo name, or ENCODER,DECODER files."),
    dst_vae: str = typer.Option(..., "--dst-vae", help="Target VAE: weight file, zoo name, or ENCODER,DECODER files."),
    images: str = typer.Option(
        "builtin:train", "--images", help="Folder of PNG/JPEG images, or builtin:train (bundled photos, offline)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Bridge file to write (.safetensors)."),
    epochs: int = typer.Option(200, "--epochs", help="Most training epochs."),
    val_split: float = typer.Option(0.2, "--val-split", help="Fraction of images held out for validation."),
    patience: int = typer.Option(15, "--patience", help="Stop after this many epochs without a better val loss."),
    view_size: int = typer.Option(256, "--view-size", help="Short side in pixels of each image view."),
    views_per_image: int = typer.Option(2, "--views-per-image", help="Views (scale, position, flip) per image."),
    crop: int = typer.Option(128, "--crop", help="Training window side in pixels."),
    windows_per_view: int = typer.Option(8, "--windows-per-view", help="Random windows per view and epoch."),
    hidden: int = typer.Option(64, "--hidden", help="Width of the conv bridge."),
    blocks: int = typer.Option(2, "--blocks", help="Residual blocks of the conv bridge."),
    lr: float = typer.Option(2e-3, "--lr", help="Adam learning rate."),
    seed: int = typer.Option(0, "--seed", help="Seed of views, windows, split and initialisation."),
    target: str = typer.Option(
        "reencode",
        "--target",
        help="reencode: learn what decode→re-encode does (B encodes A's decode); image: B encodes the crop itself.",
    ),
    weighting: str = typer.Option(
        "decoder", "--weighting", help="decoder: weight channels by how much they move B's decode; uniform."
    ),
    max_seconds: float = typer.Option(None, "--max-seconds", help="Cap on the whole fit's seconds (encoding too)."),
    tune_seconds: float = typer.Option(
        0.0,
        "--tune-seconds",
        help="Then fine-tune this long on the decoded pixels, through the target decoder (a torch network). 0 = off.",
    ),
    tune_steps: int = typer.Option(
        0, "--tune-steps", help="A step budget for that fine-tuning (alone or with --tune-seconds: the first to end)."
    ),
    threads: int = typer.Option(None, "--threads", help="torch CPU threads for this run."),
    plot: bool = typer.Option(False, "--plot", help="Also save the validation curve as a PNG beside the output."),
    device: str = typer.Option("cpu", "--device", help="Where the VAEs run while encoding."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Fit a learned bridge (plus the closed-form linear map) from one VAE's latents to another's."""
    import torch

    from latentbridge import LatentBridgeError, fit_bridge
    from latentbridge.bridge import plot_curve, save_bridge

    if output.exists() and not overwrite:
        raise LatentBridgeError(f"{output} already exists; pass --overwrite to replace it, or choose another -o")
    console = Console()
    src = load_vae_option(src_vae, part="both", device=device, option="--src-vae")
    dst = load_vae_option(dst_vae, part="both", device=device, option="--dst-vae")
    previous_threads = torch.get_num_threads()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        with Progress(*columns, TextColumn("{task.fields[info]}"), console=console) as bar:
            encode_task = bar.add_task("encode views", total=None, info="")
            train_task = bar.add_task("train", total=epochs, info="", visible=False)

            def on_event(event: Any) -> None:
                if event.stage == "encode":
                    bar.update(encode_task, total=event.total, completed=event.done)
                    return
                if event.stage == "tune":
                    bar.update(train_task, info=f"tuning through the decoder: step {event.done}")
                    return
                e = event.epoch
                bar.update(train_task, completed=event.done, visible=True, info=f"val NMSE {e.val_nmse:.4f}")
                console.print(
                    f"epoch {e.epoch:4d}  train {e.train_nmse:.4f}  val {e.val_nmse:.4f}  ({e.seconds:.1f} s)",
                    highlight=False,
                )

            result = fit_bridge(
                src,
                dst,
                images,
                epochs=epochs,
                val_split=val_split,
                patience=patience,
                view_size=view_size,
                views_per_image=views_per_image,
                crop=crop,
                windows_per_view=windows_per_view,
                hidden=hidden,
                blocks=blocks,
                lr=lr,
                seed=seed,
                target=target,
                weighting=weighting,
                max_seconds=max_seconds,
                tune_seconds=tune_seconds,
                tune_steps=tune_steps,
                on_event=on_event,
            )
    finally:
        torch.set_num_threads(previous_threads)
    path = save_bridge(result, output, overwrite=overwrite)
    meta = result.conv.meta
    console.print(scores_table(dict(result.scores), f"validation: {src.name} -> {dst.name}"))
    training = meta["training"]
    console.print(
        f"best epoch {training['best_epoch']} of {training['epochs_run']}"
        + (" (stopped early)" if result.stopped_early else "")
        + f"; {meta['data']['train_views']} train / {meta['data']['val_views']} validation views "
        f"(held out by {meta['data']['val_split_by']}), {crop} px windows -> {path}",
        highlight=False,
    )
    if meta.get("tune"):
        t = meta["tune"]
        console.print(
            f"tuned through the decoder: {t['steps']} steps in {t['seconds']:.0f} s, validation PSNR "
            f"{t['psnr_before']:.2f} -> {t['psnr_after']:.2f} dB",
            highlight=False,
        )
    if plot:
        png = plot_curve(result, output.with_suffix(".png"))
        console.print(f"validation curve -> {png}", highlight=False)
