"""`politeteacher plot`."""
from __future__ import annotations

import typer

from . import app


@app.command("plot", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def plot(ctx: typer.Context) -> None:
    """Draw a run's loss and AP curves to a PNG."""
    typer.echo("`politeteacher plot` is not implemented yet", err=True)
    raise typer.Exit(3)
