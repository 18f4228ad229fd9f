"""`latentbridge identify LATENT [--key K] [--layout L] [--json]`: format and space from the values alone.

Whatever the file records is ignored for the answer (and shown beside it, for comparison).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from latentbridge.cli._app import app
from latentbridge.cli._common import GRID_HELP, fail_on_error

if TYPE_CHECKING:
    from latentbridge import Identification


def render(ident: Identification, recorded: str, console: Console, *, verbose: bool = False) -> None:
    """The answer, then every candidate with its probability and profile kind (``verbose``: the profile's
    whole source), then the noise-test evidence."""
    console.print(f"[bold]{escape(ident.summary)}[/]")
    console.print(f"{escape(ident.geometry)}; shape {list(ident.shape)}")
    if recorded:
        console.print(f"the file records: {escape(recorded)}")
    if ident.candidates:
        table = Table(title="profiled candidates (probability among these)")
        for col in ("candidate", "ratio", "probability", "fit (mean z²)", "profile"):
            table.add_column(col, justify="left" if col in ("candidate", "profile") else "right", overflow="fold")
        for c in ident.candidates:
            fit = f"{c.distance:.2f}" + ("" if c.fits else " (no fit)")
            table.add_row(
                escape(c.label),
                f"{c.spatial_ratio}×",
                f"{c.probability:.1%}",
                fit,
                escape(c.profile if verbose else c.profile_kind),
            )
        console.print(table)
        if not verbose:
            console.print("where each profile comes from: add -v (or --json)")
    if ident.shape_only:
        console.print("possible by shape, no profile: " + escape(", ".join(c.label for c in ident.shape_only)))
    if ident.layout_hints and (ident.candidates or ident.shape_only):  # otherwise the summary says them
        for hint in ident.layout_hints:
            console.print(f"other layout: {escape(hint)}")
    if ident.evidence:
        evidence = ", ".join(f"{name.replace('_', ' ')} {value:g}" for name, value in ident.evidence)
        console.print(f"value checks: {escape(evidence)}")


@app.command("identify")
@fail_on_error
def identify_command(
    latent: str = typer.Argument(..., help="A latent file (.latent, .safetensors, .pt, .npy, .npz, kohya cache)."),
    key: str = typer.Option(None, "--key", help="Which array holds the latent, when the file has several."),
    grid: str = typer.Option(None, "--grid", help=GRID_HELP),
    layout: str = typer.Option(None, "--layout", help="Dimension letters of the stored tensor, e.g. NHWC."),
    format: str = typer.Option(
        None, "--format", help="Only for reading a token sequence (--grid): whose tokens (flux1, flux2, wan21)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for machines."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show where each candidate's profile comes from."),
) -> None:
    """Identify a latent's format and space from its values (channel count, statistics, spectrum)."""
    from latentbridge import identify, open_latent

    if format is not None and grid is None:
        raise typer.BadParameter("--format only tells identify whose token sequence --grid reads; add --grid")
    info = open_latent(latent, key=key, layout=layout, grid=grid, format=format)
    lat = info.latent
    # a layout the user or the file states needs no hints about other layouts
    known = layout is not None or grid is not None or info.recorded_layout is not None
    ident = identify(lat, layout_known=known)
    recorded = " ".join(x for x in (lat.format_name, lat.space if lat.space != "unknown" else "") if x)
    if as_json:
        data = {"file": latent, "recorded": recorded, "read_notes": list(info.notes), **ident.to_dict()}
        typer.echo(json.dumps(data, indent=1))
    else:
        console = Console(highlight=False, soft_wrap=True)
        for note in info.notes:
            console.print(f"read: {escape(note)}")
        render(ident, recorded, console, verbose=verbose)
