"""The typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="latentbridge",
    help="Identify, check, decode and move diffusion-model latents between families.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """latentbridge: identify, check, decode and move diffusion-model latents between families."""
