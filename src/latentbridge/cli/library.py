"""`latentbridge library scan DIR… | list | find QUERY | which FILE` (``--home H``, ``--json``).

The local model library (``latentbridge.library``): an index of the VAEs and checkpoints on this machine, used by
``--vae auto`` on decode, check and transfer. Its home is ``--home``, else ``$LATENTBRIDGE_HOME``, else
``~/.latentbridge``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from latentbridge.cli._app import app
from latentbridge.cli._common import HOME_HELP, fail_on_error, library_home
from latentbridge.errors import LibraryError

if TYPE_CHECKING:
    from latentbridge.library import Library, LibraryEntry

library_app = typer.Typer(
    help="The local model library: index VAEs and checkpoints, find them, resolve a latent's provenance to files.",
    no_args_is_help=True,
)
app.add_typer(library_app, name="library")
_out = Console(highlight=False, soft_wrap=True)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


def _open(home: str | None) -> Library:
    from latentbridge.library import Library

    return Library(library_home(home))


def _table(entries: tuple[LibraryEntry, ...], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("kind", "format", "name", "AutoV2", "path"):
        table.add_column(col, overflow="fold")
    for e in entries:
        kind = e.kind + ((" +VAE" if e.has_vae else " no VAE") if e.kind == "checkpoint" else "")
        fmt = e.format or "/".join(e.formats) or "—"
        table.add_row(Text(kind), Text(fmt), Text(e.name), Text(e.autov2 or "—"), Text(e.path))
    return table


@library_app.command("scan")
@fail_on_error
def scan_command(
    dirs: list[Path] = typer.Argument(..., help="Folders to index (ComfyUI/A1111 models, a Hugging Face cache …)."),
    home: str = typer.Option(None, "--home", help=HOME_HELP),
    no_hash: bool = typer.Option(False, "--no-hash", help="Index names and headers only (hashes cannot match then)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for machines."),
) -> None:
    """Index the VAEs and checkpoints below DIRS (incremental: unchanged files are not read again)."""
    lib = _open(home)

    def progress(done: int, total: int, path: str) -> None:
        if not as_json:
            _err.print(f"[dim]{done + 1}/{total}[/dim] {escape(path)}", markup=True)

    report = lib.scan(*dirs, hash=not no_hash, progress=progress)
    if as_json:
        typer.echo(json.dumps({"home": str(lib.home), **report.to_dict()}, indent=1))
        return
    _out.print(Text(report.summary()))
    for folder in report.skipped:
        _out.print(Text(f"skipped {folder} (holds other kinds of weights)"))
    for path, error in report.errors:
        _out.print(Text(f"unreadable {path}: {error}"), style="yellow")
    _out.print(Text(f"library: {lib.path}"))


@library_app.command("list")
@fail_on_error
def list_command(
    kind: str = typer.Option(None, "--kind", help="Only this kind: vae, checkpoint, diffusion_model, other."),
    home: str = typer.Option(None, "--home", help=HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for machines."),
) -> None:
    """List the indexed files."""
    lib = _open(home)
    entries = lib.entries(kind)
    if as_json:
        typer.echo(json.dumps({"home": str(lib.home), "entries": [e.to_dict() for e in entries]}, indent=1))
        return
    _out.print(_table(entries, f"{len(entries)} files in {lib.path}"))


@library_app.command("find")
@fail_on_error
def find_command(
    query: str = typer.Argument(..., help="A hash prefix (≥ 8 hex digits), a format name (sdxl) or part of a name."),
    home: str = typer.Option(None, "--home", help=HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for machines."),
) -> None:
    """Find indexed files by hash prefix, family or name. Exit 1 when nothing matches."""
    lib = _open(home)
    entries = lib.find(query)
    if as_json:
        typer.echo(json.dumps({"query": query, "entries": [e.to_dict() for e in entries]}, indent=1))
    elif entries:
        _out.print(_table(entries, f"{len(entries)} match {query!r}"))
    else:
        _err.print(Text(f"nothing in {lib.path} matches {query!r} (a hash prefix, a format name or part of a name)"))
    if not entries:
        raise typer.Exit(1)


@library_app.command("which")
@fail_on_error
def which_command(
    file: Path = typer.Argument(..., help="A latent file or an image (PNG/JPEG/WebP) whose provenance to resolve."),
    home: str = typer.Option(None, "--home", help=HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for machines."),
) -> None:
    """Which local files FILE's provenance names, and the VAE `--vae auto` would pick. Exit 1 when none."""
    from latentbridge.library import resolve_vae, which

    lib = _open(home)
    found = which(file, lib)
    try:
        resolved, problem = resolve_vae(found.report, lib), ""
    except LibraryError as exc:
        resolved, problem = None, str(exc).replace("the given provenance", str(file))
    if as_json:
        auto = resolved.to_dict() if resolved is not None else {"error": problem}
        typer.echo(json.dumps({**found.to_dict(), "source": str(file), "vae_auto": auto}, indent=1))
    else:
        for line in found.report.lines():
            _out.print(Text(line))
        for line in found.lines() if found.candidates else ():
            _out.print(Text(line))
        if resolved is not None:
            _out.print(Text(f"--vae auto: {resolved.spec}", style="bold green"))
            for line in resolved.reasons:
                _out.print(Text(f"  {line}"))
        else:
            _err.print(Text(problem, style="red"))
    if resolved is None:
        raise typer.Exit(1)
