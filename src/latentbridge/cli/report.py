"""`latentbridge report LATENT… [--vae …] -o report.html [--tensorboard DIR]`: everything about a latent, one page.

One self-contained HTML file (images inline as base64 PNG data URIs; no scripts, fonts or external CSS):
inspect, identify, check, previews, diagnostics and the candidate VAEs' decodes side by side. With several
latents the page has one section each. ``--tensorboard DIR`` also writes the same scalars, images and
histograms as a TensorBoard event file (one step per latent, in order), without needing tensorboard installed.

Exit codes: 0 when the page is written and no check found an error; 2 when a check's verdict is error (the page is
written all the same; the errors are listed on stderr), as `latentbridge check` does; 1 when it could not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.markup import escape

from latentbridge.cli._app import app
from latentbridge.cli._common import (
    FITS_HOME_HELP,
    GRID_HELP,
    fail_on_error,
    load_reference,
    load_vae_option,
    print_error,
    refuse_output,
    run_options,
)

if TYPE_CHECKING:
    from latentbridge import Run


@app.command("report")
@fail_on_error
@run_options("device", "dtype", "max_memory", max_memory="none")
def report_command(
    latents: list[Path] = typer.Argument(..., help="Latent file(s); one report section each."),
    output: Path = typer.Option(None, "-o", "--output", help="HTML file to write."),
    vae: list[str] = typer.Option([], "--vae", help="Candidate VAE to check and decode with (repeatable)."),
    reference: Path = typer.Option(None, "--reference", help="Image to measure the decodes' PSNR against."),
    tensorboard: Path = typer.Option(None, "--tensorboard", help="Also write a TensorBoard event file here."),
    format: str = typer.Option(None, "--format", help="Latent format when the files do not record it."),
    space: str = typer.Option(None, "--space", help="raw or model, when the files do not record it."),
    key: str = typer.Option(None, "--key", help="Which array holds the latent, when several could."),
    grid: str = typer.Option(None, "--grid", help=GRID_HELP),
    title: str = typer.Option("latentbridge report", "--title", help="Page title."),
    home: Path = typer.Option(None, "--home", envvar="LATENTBRIDGE_HOME", help=FITS_HOME_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report file."),
    *,
    run: Run,
) -> None:
    """Write one self-contained HTML report (and optionally TensorBoard events) about latent files.

    A file that cannot be read or reported on does not stop the others: the page lists it, each failure is one
    red line, and the exit code is 1.
    """
    from latentbridge import LatentBridgeError, build_report, open_latent, write_report  # matplotlib: only here
    from latentbridge.previews import default_fits_dir

    if output is None and tensorboard is None:
        raise typer.BadParameter("nothing to write: pass -o report.html and/or --tensorboard DIR")
    if output is not None:
        refuse_output(output, latents, overwrite=overwrite)
    vaes = [load_vae_option(spec, part="decoder", device=str(run.device)) for spec in vae]
    ref = load_reference(reference) if reference is not None else None
    reports, failures = [], []
    for path in latents:
        try:
            info = open_latent(path, key=key, format=format, space=space, grid=grid)
            reports.append(
                build_report(
                    info.latent,
                    vaes,
                    name=path.name,
                    file_info=info.to_dict(),
                    reference=ref,
                    reference_name=reference.name if reference else "reference image",
                    fits_dir=default_fits_dir(home),
                    run=run.replace(progress=None),
                )
            )
        except (LatentBridgeError, ValueError) as exc:  # this file's own problem: the others are still reported
            if len(latents) == 1:
                raise
            failures.append((path.name, str(exc)))
    if not reports:
        for _, error in failures:
            print_error(error)
        raise LatentBridgeError(f"none of the {len(latents)} files could be read: nothing to report")
    html_path, tb_path = write_report(reports, output, tensorboard=tensorboard, title=title, failures=failures)
    console = Console(stderr=True, highlight=False)
    for p in (html_path, tb_path):
        if p is not None:
            console.print(f"wrote {p}", markup=False)
    refused = [
        (rep.name, vae_name, result) for rep in reports for vae_name, result in rep.checks if result.verdict == "error"
    ]
    for name, vae_name, result in refused:
        codes = ", ".join(result.codes("error"))
        console.print(f"[red]error:[/red] check of {escape(name)} with {escape(vae_name)}: {escape(codes)}")
    if failures:
        for _, error in failures:
            print_error(error)
        print_error(f"{len(failures)} of {len(latents)} files could not be reported on (listed on the page)")
    if refused:  # as `latentbridge check`: 2 when a verdict is error, so scripts do not decode after it
        raise typer.Exit(2)
    if failures:
        raise typer.Exit(1)
