"""`latentbridge demo [--out DIR] [--size N]`: the whole story offline, on the built-in zoo."""

from __future__ import annotations

from pathlib import Path

import typer

from latentbridge.cli._app import app
from latentbridge.cli._common import fail_on_error


@app.command("demo")
@fail_on_error
def demo_command(
    out: Path = typer.Option(Path("demo-out"), "--out", "-o", help="Folder for index.html, PNGs and latents."),
    size: int = typer.Option(256, help="Photo side in pixels (a multiple of 8)."),
    photo: str = typer.Option("astronaut", help="Built-in photo to encode."),
    seed: int = typer.Option(42, help="Seed of the noise latent in step 1."),
) -> None:
    """Walk through what latentbridge is for, offline, and write an HTML page with PNGs."""
    from latentbridge.demo import run_demo

    if size < 64 or size % 8:
        raise typer.BadParameter(f"--size must be a multiple of 8 and at least 64, got {size}")
    run_demo(out, size=size, photo=photo, seed=seed, echo=typer.echo)
