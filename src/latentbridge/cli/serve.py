"""`latentbridge serve [--host 127.0.0.1] [--port 8765] [--root DIR …] [--library HOME]`: the local web service and
its one-page UI (``latentbridge.web``), run by uvicorn.

Loopback by default; any other address needs ``--token`` (or ``$LATENTBRIDGE_TOKEN``). Files are served only from
the ``--root`` folders (and uploads); no CORS unless ``--cors ORIGIN`` is given.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from latentbridge import LatentBridgeError
from latentbridge.cli._app import app
from latentbridge.cli._common import HOME_HELP, fail_on_error

DEFAULT_PORT = 8765  # latentbridge.web.DEFAULT_PORT, without importing fastapi for --help


@app.command("serve")
@fail_on_error
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; other than loopback needs --token."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=0, max=65535, help="TCP port (0: any free one)."),
    root: list[Path] = typer.Option([], "--root", help="A folder whose files requests may name (repeatable)."),
    library: Path = typer.Option(None, "--library", help=HOME_HELP + " Its VAEs are offered on the page."),
    token: str = typer.Option(
        None, "--token", envvar="LATENTBRIDGE_TOKEN", help="A secret every request must carry (?token= or Bearer)."
    ),
    cors: list[str] = typer.Option([], "--cors", help="An origin allowed to call the API from its pages (repeatable)."),
    max_upload_mb: int = typer.Option(1024, "--max-upload-mb", min=1, help="Largest upload; bigger ones get 413."),
    workers: int = typer.Option(2, "--workers", min=1, help="Jobs (decode, compare, transfer, report) run at once."),
    max_jobs: int = typer.Option(64, "--max-jobs", min=1, help="Jobs queued or running at once; more get 429."),
    keep_minutes: float = typer.Option(60.0, "--keep-minutes", min=0.0, help="Keep results and uploads this long."),
    vae_cache_mb: int = typer.Option(2048, "--vae-cache-mb", min=1, help="Memory bound of the loaded-VAE cache."),
    device: str = typer.Option("cpu", "--device", help="Where the networks run: cpu, cuda, cuda:1, mps …"),
    work_dir: Path = typer.Option(None, "--work-dir", help="Keep uploads and results here (default: a temp folder)."),
) -> None:
    """Serve the web UI and its API (OpenAPI at /docs) on this machine."""
    try:
        import uvicorn

        from latentbridge.web import WebConfig, capture_warnings, create_app, loopback_hosts
    except ImportError as exc:  # the web extra is not installed
        raise LatentBridgeError(
            f"latentbridge serve needs the web extra ({exc.name} is missing): pip install 'latentbridge[web]'"
        ) from exc

    config = WebConfig(
        host=host,
        roots=tuple(r.expanduser().resolve() for r in root),
        library=library.expanduser() if library is not None else None,
        work_dir=work_dir,
        token=token or None,
        cors_origins=tuple(cors),
        allowed_hosts=loopback_hosts(host),
        max_upload_bytes=max_upload_mb << 20,
        workers=workers,
        max_jobs=max_jobs,
        keep_seconds=keep_minutes * 60,
        vae_cache_bytes=vae_cache_mb << 20,
        device=device,
    )
    web = create_app(config)
    capture_warnings()  # automatic tiling, fp32 redos: reported on the job that caused them
    shown = f"[{host}]" if ":" in host else host
    suffix = "/?token=…" if token else "/"
    Console(stderr=True, highlight=False).print(
        f"latentbridge serve: http://{shown}:{port}{suffix}  (API docs at /docs; Ctrl+C stops)", markup=False
    )
    # an open event stream would hold a shutdown until its job ends: after 5 s the jobs are cancelled instead
    uvicorn.run(web, host=host, port=port, log_level="info", access_log=False, timeout_graceful_shutdown=5)
