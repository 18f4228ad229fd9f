"""`latentbridge inspect FILE [--key K] [--format F] [--space S] [--layout L] [--override] [--hash] [--json]`.

A latent file: container, who wrote it, shape, dtype, layout, space, format, per-channel statistics,
NaN/inf counts and provenance. A weight file: what ``latentbridge.weights.describe`` says about it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from latentbridge.cli._app import app
from latentbridge.cli._common import GRID_HELP, fail_on_error

if TYPE_CHECKING:
    from latentbridge import LatentFile
    from latentbridge.provenance import ProvenanceReport

UNKNOWN_FORMAT = "unknown — run `latentbridge identify`"
UNKNOWN_SPACE = "unknown — pass --space raw|model or run `latentbridge check`"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _stats_table(stats: dict[str, Any]) -> Table:
    table = Table(title="per-channel statistics (finite values)", title_justify="left")
    for col in ("channel", "mean", "std", "min", "max", "NaN", "inf"):
        table.add_column(col, justify="right")
    rows = [*stats["channels"], {"channel": "all", **stats["overall"]}]
    for i, row in enumerate(rows):
        table.add_row(
            str(row["channel"]),
            _num(row["mean"]),
            _num(row["std"]),
            _num(row["min"]),
            _num(row["max"]),
            Text(str(row["nan"]), style="red" if row["nan"] else ""),
            Text(str(row["inf"]), style="red" if row["inf"] else ""),
            end_section=i == len(rows) - 2,
        )
    return table


def _summary_table(info: LatentFile, stats: dict[str, Any]) -> Table:
    lat = info.latent
    table = Table(show_header=False, title=str(info.path), title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    rows = [
        ("container", info.container + (f" ({info.writer})" if info.writer else "")),
        ("key", info.key or "—"),
        ("shape", f"{list(lat.shape)}  ({lat.layout})"),
        ("dtype", stats["dtype"]),
        ("space", lat.space if lat.space != "unknown" else UNKNOWN_SPACE),
        ("format", lat.format_name or UNKNOWN_FORMAT),
        ("NaN / inf", f"{stats['overall']['nan']} / {stats['overall']['inf']}"),
    ]
    if len(info.entries) > 1:
        rows.append(("arrays", ", ".join(f"{e.name} {e.dtype}{list(e.shape)}" for e in info.entries)))
    for k, v in lat.provenance.to_dict().items():
        rows.append((f"provenance.{k}", json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v))
    for k, v in {**info.metadata, **info.other}.items():
        if not k.startswith("latentbridge."):
            rows.append((f"metadata.{k}", v if len(v) <= 120 else v[:119] + "…"))
    for note in info.notes:
        rows.append(("note", note))
    for k, v in rows:
        table.add_row(k, Text(str(v)))  # values are data, not rich markup ("[1, 4, 64, 64]", "[bold]")
    return table


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return getattr(obj, "to_dict", lambda: dataclasses.asdict(obj))()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return obj


def _describe_weights(path: Path, fmt: str | None, as_json: bool, console: Console, hash: bool | None) -> None:
    from latentbridge import describe_weights

    info = describe_weights(path, format=fmt, hash=hash)
    if as_json:
        typer.echo(json.dumps({"file": str(path), "kind": "weights", **info.to_dict()}, indent=1, default=str))
    else:
        console.print(Text(info.render()))


def _show_provenance(found: ProvenanceReport, as_json: bool, console: Console, head: dict[str, Any]) -> None:
    """The provenance readers' findings: one JSON object, or a titled list of lines."""
    if as_json:
        typer.echo(json.dumps({**head, "provenance_found": found.to_dict()}, indent=1, ensure_ascii=False))
        return
    if found.sources or head:
        console.print(Text("provenance found", style="bold"))
        for line in found.lines():
            console.print(Text(f"  {line}"))


@app.command("inspect")
@fail_on_error
def inspect_command(
    file: Path = typer.Argument(
        ..., help="A latent file (.latent, .safetensors, .pt, .npy, .npz), a weight file or a diffusers folder."
    ),
    key: str = typer.Option(None, "--key", help="Which array holds the latent, when the file has several."),
    grid: str = typer.Option(None, "--grid", help=GRID_HELP),
    format: str = typer.Option(None, "--format", help="Latent format, when the file does not record it."),
    space: str = typer.Option(None, "--space", help="raw or model: the space of the stored tensor, if unrecorded."),
    layout: str = typer.Option(None, "--layout", help="Dimension letters of the stored tensor, e.g. NHWC."),
    override: bool = typer.Option(False, "--override", help="Let --format/--space/--layout replace the record."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for machines."),
    hash: bool = typer.Option(
        None,
        "--hash/--no-hash",
        help="Weight files: compute the sha256 (recognises official files by content; reads the whole file). "
        "Default: only for files up to 64 MB.",
    ),
) -> None:
    """Show what a latent file holds (shape, dtype, layout, space, format, statistics, provenance), or what a VAE
    weight file or diffusers folder is (architecture, latent geometry, format)."""
    from latentbridge import latent_stats, open_latent
    from latentbridge.files import classify
    from latentbridge.images import image_kind
    from latentbridge.provenance import from_latent_file, read_provenance

    if space is not None and space not in ("raw", "model"):
        raise typer.BadParameter(f"{space!r} is not a space: use raw or model", param_hint="--space")
    console = Console(highlight=False)
    if not file.exists() and not file.is_symlink():  # a link loop or a dangling link: the reader names it
        raise FileNotFoundError(f"{file} does not exist")
    if image_kind(file):  # an image: only the provenance it carries (ComfyUI graphs, A1111 parameters …)
        _show_provenance(read_provenance(file), as_json, console, {"file": str(file), "kind": "image"})
        return
    if file.is_dir() or classify(file) == "weights":  # a folder can only be a diffusers model (or pipeline)
        _describe_weights(file, format, as_json, console, hash)
        return
    info = open_latent(file, key=key, format=format, space=space, layout=layout, override=override, grid=grid)
    stats = latent_stats(info.latent)
    found = from_latent_file(info)
    if as_json:
        out = {"kind": "latent", **info.to_dict(), "provenance_found": found.to_dict()}
        out["stats"] = {"overall": stats["overall"], "channels": stats["channels"]}
        if out["format"] is None:
            out["format_hint"] = UNKNOWN_FORMAT
        typer.echo(json.dumps(out, indent=1, ensure_ascii=False))
        return
    console.print(_summary_table(info, stats))
    console.print(_stats_table(stats))
    _show_provenance(found, False, console, {})
