"""The `latentbridge` command: one thin module per sub-command."""

from __future__ import annotations

from latentbridge.cli import calibrate as _calibrate  # noqa: F401  (registers the command)
from latentbridge.cli import check as _check  # noqa: F401  (registers the command)
from latentbridge.cli import compare as _compare  # noqa: F401  (registers the command)
from latentbridge.cli import decode as _decode  # noqa: F401  (registers the command)
from latentbridge.cli import demo as _demo  # noqa: F401  (registers the command)
from latentbridge.cli import encode as _encode  # noqa: F401  (registers the command)
from latentbridge.cli import fit_bridge as _fit_bridge  # noqa: F401  (registers the command)
from latentbridge.cli import fit_preview as _fit_preview  # noqa: F401  (registers the command)
from latentbridge.cli import formats as _formats  # noqa: F401  (registers the command)
from latentbridge.cli import identify as _identify  # noqa: F401  (registers the command)
from latentbridge.cli import inspect as _inspect  # noqa: F401  (registers the command)
from latentbridge.cli import library as _library  # noqa: F401  (registers the command group)
from latentbridge.cli import preview as _preview  # noqa: F401  (registers the command)
from latentbridge.cli import report as _report  # noqa: F401  (registers the command)
from latentbridge.cli import serve as _serve  # noqa: F401  (registers the command)
from latentbridge.cli import transfer as _transfer  # noqa: F401  (registers the command)
from latentbridge.cli._app import app


def main() -> None:
    """Console-script entry point."""
    app()
