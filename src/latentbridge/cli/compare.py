"""`latentbridge compare LATENT --vae A --vae B … -o grid.png`: the same latent through each candidate VAE.

Each tile carries PSNR (against ``--reference IMG``, else the decode of the VAE named in the latent's
provenance, else the first VAE's), colourfulness, dynamic range and the check verdict: the compatible vs
incompatible picture. A VAE of another format is fed the tensor anyway (what a mix-up does) and says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from latentbridge.cli._app import app
from latentbridge.cli._common import fail_on_error, load_reference, load_vae_option, run_options

if TYPE_CHECKING:
    from latentbridge import Run


@app.command("compare")
@fail_on_error
@run_options("device", "dtype", "max_memory", max_memory="none")
def compare_command(
    latent: Path = typer.Argument(..., help="Latent file."),
    vae: list[str] = typer.Option(..., "--vae", help="Candidate VAE (repeat for each; comma-join TAESD halves)."),
    output: Path = typer.Option(..., "-o", "--output", help="PNG grid to write."),
    reference: Path = typer.Option(None, "--reference", help="Image to measure PSNR against."),
    format: str = typer.Option(None, "--format", help="Latent format when the file does not record it."),
    space: str = typer.Option(None, "--space", help="raw or model, when the file does not record it."),
    key: str = typer.Option(None, "--key", help="Which array holds the latent, when several could."),
    item: int = typer.Option(0, "--item", min=0, help="Batch item to compare."),
    frame: int = typer.Option(0, "--frame", min=0, help="Latent frame to compare (video)."),
    tile: int = typer.Option(None, "--tile", min=16, help="Tile height in the grid (pixels)."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON."),
    *,
    run: Run,
) -> None:
    """Decode a latent with each candidate VAE and write the pictures side by side with their metrics."""
    from latentbridge import compare, read_latent
    from latentbridge.comparison import save_grid, short_name

    lat = read_latent(latent, key=key, format=format, space=space)
    vaes = [load_vae_option(spec, part="decoder", device=str(run.device)) for spec in vae]
    ref = load_reference(reference) if reference is not None else None
    result = compare(
        lat, vaes, reference=ref, reference_name=reference.name if reference else "", item=item, frame=frame, run=run
    )
    save_grid(result, output, tile=tile)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=1))
        return
    table = Table(title=f"{latent.name}: PSNR against {result.reference}", title_justify="left")
    for col in ("VAE", "format", "PSNR dB", "colourfulness", "dynamic range", "check", "note"):
        table.add_column(col, overflow="fold")
    for c in result.candidates:
        psnr = "—" if c.psnr is None else ("∞" if math.isinf(c.psnr) else f"{c.psnr:.2f}")
        table.add_row(
            short_name(c.name),
            c.format or "?",
            psnr,
            "—" if c.colourfulness is None else f"{c.colourfulness:.1f}",
            "—" if c.dynamic_range is None else f"{c.dynamic_range:.2f}",
            c.verdict or "—",
            c.error or ("latent read as this VAE's format" if c.relabelled else ""),
        )
    console = Console(highlight=False)
    console.print(table)
    console.print(f"wrote {output}", markup=False)
