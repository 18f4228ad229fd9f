"""`latentbridge check LATENT --vae FILE [--format F] [--space S] [--vae-format F] [--preflight] [--json]`.

Exit codes: 0 ok, 1 warn, 2 error — and 2 as well when the check cannot run at all (unreadable file, bad
option: click's usage errors are 2 too), with an ``error:`` line on stderr instead of a report. Scripts can
treat "not 0" as "do not decode" and "1" as "look first".
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from latentbridge import LatentBridgeError
from latentbridge.cli._app import app
from latentbridge.cli._common import GRID_HELP, auto_vae, load_vae_option, vae_spec

if TYPE_CHECKING:
    from latentbridge import Report

F = TypeVar("F", bound=Callable[..., Any])
COULD_NOT_CHECK = 2  # same code as a usage error and as an "error" verdict: never decode after it
STYLE = {"ok": "green", "warn": "yellow", "error": "red", "info": "cyan"}


def exit_2_on_error(fn: F) -> F:
    """A check that cannot run exits 2 (like an "error" verdict), with one red line on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (LatentBridgeError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as exc:
            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"[red]error:[/red] could not check: {escape(str(exc))}", markup=True
            )
            raise typer.Exit(COULD_NOT_CHECK) from exc

    return wrapper  # type: ignore[return-value]


def load_vae_for_check(spec: str, vae_format: str | None, preflight: bool) -> Any:
    """Header facts for a plain check (fast: no tensors read); for ``--preflight`` the loaded VAE: both halves when
    the file has them (the decode→encode cycle test needs the encoder), else the decoder alone."""
    from latentbridge import describe_weights
    from latentbridge.weights import resolve_spec

    named = vae_spec(spec)  # an existing path stays whole, commas and all
    if isinstance(named, list):  # ENCODER,DECODER pair (TAESD style): both halves are named
        if preflight:
            return load_vae_option(spec, part="both", format=vae_format)
        return describe_weights(named[-1], format=vae_format).identity()
    path, extra = resolve_spec(named)
    info = describe_weights(path, format=vae_format if vae_format is not None else extra.get("format"))
    if not preflight:
        return info.identity()
    part = "both" if info.has_encoder and info.has_decoder else "decoder"
    return load_vae_option(spec, part=part, format=vae_format)


def render(report: Report, console: Console) -> None:
    """The report for humans: verdict, findings with their fixes, fingerprint, preflight table."""
    lat, vae = report.latent, report.vae
    console.print(
        f"[bold {STYLE[report.verdict]}]{report.verdict.upper()}[/]  latent {list(lat.shape)} {lat.layout}, "
        f"format {escape(lat.format or 'unknown')} ({lat.format_source}), space {lat.space} ({lat.space_source})"
        f"  ×  VAE {escape(vae.name)} ({escape(vae.format.name if vae.format else 'format unknown')}, "
        f"{vae.channels} ch / {vae.spatial_ratio}×, {vae.native_space})"
    )
    for f in report.findings:
        console.print(f"[{STYLE[f.severity]}]{f.severity:5s}[/] [bold]{f.code}[/]: {escape(f.message)}")
        if f.fix:
            console.print(f"       fix: {escape(f.fix)}")
    if report.identification is not None:
        console.print(f"fingerprint: {escape(report.identification.summary)}")
    if report.preflight:
        table = Table(title="preflight: centre crop decoded per candidate (penalty ≤ 20.5 looks natural)")
        for col in ("decode", "saturation", "cast", "range", "clipped", "slope", "penalty"):
            table.add_column(col, justify="right" if col != "decode" else "left")
        for s in report.preflight:
            scores = dict(s.scores)
            table.add_row(
                s.label,
                *(f"{scores[k]:.3f}" for k in ("saturation", "cast", "range", "clipped", "slope")),
                f"[{'green' if s.natural else 'red'}]{s.penalty:.1f}[/]",
            )
        console.print(table)


@app.command("check")
@exit_2_on_error
def check_command(
    latent: str = typer.Argument(..., help="A latent file (.latent, .safetensors, .pt, .npy, .npz, kohya cache)."),
    vae: str = typer.Option(
        ..., "--vae", help="The VAE to decode with: weight file, diffusers folder, zoo name, auto."
    ),
    format: str = typer.Option(None, "--format", help="The latent's format, when the file does not record it."),
    space: str = typer.Option(None, "--space", help="raw or model: the latent's space, when not recorded."),
    vae_format: str = typer.Option(None, "--vae-format", help="The VAE's format, when its file cannot tell."),
    key: str = typer.Option(None, "--key", help="Which array holds the latent, when the file has several."),
    grid: str = typer.Option(None, "--grid", help=GRID_HELP),
    layout: str = typer.Option(None, "--layout", help="Dimension letters of the stored tensor, e.g. NHWC."),
    preflight: bool = typer.Option(False, "--preflight", help="Also decode a small crop per candidate and score it."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for machines."),
) -> None:
    """Check that a latent and a VAE belong together before decoding.

    Exit codes: 0 ok, 1 warn, 2 error — 2 also when the check cannot run (unreadable file, bad option).
    """
    from latentbridge import check, read_latent

    lat = read_latent(latent, key=key, format=format, space=space, layout=layout, grid=grid)
    loaded = load_vae_for_check(auto_vae(vae, latent), vae_format, preflight)
    report = check(lat, loaded, preflight=preflight)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        render(report, Console(highlight=False, soft_wrap=True))
    raise typer.Exit(report.exit_code)
