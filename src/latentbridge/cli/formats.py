"""`latentbridge formats [NAME] [--json]`: the latent-format registry as a table, one format in full."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from latentbridge.cli._app import app
from latentbridge.cli._common import fail_on_error

if TYPE_CHECKING:
    from latentbridge import LatentFormat


def _geometry(fmt: LatentFormat) -> str:
    out = f"{fmt.channels} ch / {fmt.spatial_ratio}×"
    if fmt.patch > 1:
        out += f" → packed {fmt.model_channels} ch / {fmt.model_spatial_ratio}×"
    if fmt.dims == 3:
        out += f", {fmt.temporal_ratio}× time ({fmt.frame_rule})"
    return out


def _space_rule(fmt: LatentFormat) -> str:
    """model = f(raw), as a short formula."""
    term = "pack(raw)" if fmt.patch > 1 else "raw"
    if fmt.shift:
        term = f"({term} − {fmt.shift:g})"
    if fmt.norm_source != "none":
        src = "VAE file" if fmt.norm_source == "vae" else "registry"
        term = f"({term} − mean) / std [{src}]"
    return f"{term} × {fmt.scale:.6g}" if fmt.scale != 1.0 else term


def format_table(registry: dict[str, LatentFormat]) -> Table:
    """A rich table with one row per format."""
    table = Table(title=f"latentbridge latent formats ({len(registry)})", show_lines=False)
    for col in ("name", "geometry", "model = …", "sizes ×", "preview", "shared by"):
        table.add_column(col, overflow="fold")
    for fmt in registry.values():
        preview = ("rgb" if fmt.rgb_factors else "") + (f"+{fmt.preview_decoder}" if fmt.preview_decoder else "")
        table.add_row(
            fmt.name,
            _geometry(fmt),
            _space_rule(fmt),
            str(fmt.size_multiple),
            preview.strip("+") or "—",
            ", ".join(fmt.aliases[:4]) + (", …" if len(fmt.aliases) > 4 else ""),
        )
    return table


def format_detail(fmt: LatentFormat) -> Table:
    """A two-column table with every field of one format and the source of each number."""
    table = Table(title=f"{fmt.name}: {fmt.title}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("shared by", ", ".join(fmt.aliases)),
        ("raw geometry", f"{fmt.channels} channels, {fmt.spatial_ratio}× spatial, layout {fmt.layout}"),
        ("model geometry", f"{fmt.model_channels} channels, {fmt.model_spatial_ratio}× spatial (patch {fmt.patch})"),
        ("time", f"{fmt.temporal_ratio}× temporal, frames {fmt.frame_rule}" if fmt.dims == 3 else "image (2-D)"),
        ("  source", fmt.source("geometry")),
        ("model = …", _space_rule(fmt)),
        ("scale / shift", f"{fmt.scale:.8g} / {fmt.shift:.8g}"),
        ("  source", fmt.source("scale")),
        ("normalisation", fmt.norm_source + (f" (eps {fmt.norm_eps:g})" if fmt.norm_eps else "")),
        ("  mean", ", ".join(f"{v:.4g}" for v in fmt.mean) or "—"),
        ("  std", ", ".join(f"{v:.4g}" for v in fmt.std) or "—"),
        ("  source", fmt.source("norm")),
        ("size multiple", f"{fmt.size_multiple} px"),
        ("  source", fmt.source("size_multiple")),
        ("rgb factors", "; ".join(" ".join(f"{v:+.4f}" for v in row) for row in fmt.rgb_factors) or "—"),
        ("rgb bias", " ".join(f"{v:+.4f}" for v in fmt.rgb_bias)),
        ("  source", fmt.source("rgb")),
        ("preview decoder", fmt.preview_decoder or "—"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table


def format_markdown(registry: dict[str, LatentFormat]) -> str:
    """The registry as a GitHub markdown table (used for the README; sources: `latentbridge formats NAME`)."""
    rows = [
        "| name | geometry | model = … | size multiple | preview | shared by |",
        "|---|---|---|---|---|---|",
    ]
    for fmt in registry.values():
        preview = ("rgb factors" if fmt.rgb_factors else "") + (
            f", {fmt.preview_decoder}" if fmt.preview_decoder else ""
        )
        cells = [
            f"`{fmt.name}`",
            _geometry(fmt),
            _space_rule(fmt).replace("|", "\\|"),
            str(fmt.size_multiple),
            preview.strip(", ") or "—",
            ", ".join(fmt.aliases),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


@app.command("formats")
@fail_on_error
def formats_command(
    name: str = typer.Argument(None, help="Show one format in full, with the source of every number."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the table as markdown."),
) -> None:
    """List the latent formats latentbridge knows, or show one with every number and its source."""
    from latentbridge import get_format, list_formats

    console = Console()
    if name is None:
        registry = list_formats()
        if as_json:
            typer.echo(json.dumps([f.to_dict() for f in registry.values()], indent=1))
        elif markdown:
            typer.echo(format_markdown(registry))
        else:
            console.print(format_table(registry))
        return
    fmt = get_format(name)
    if as_json:
        typer.echo(json.dumps(fmt.to_dict(), indent=1))
    else:
        console.print(format_detail(fmt))
