"""`politeteacher train-baseline`."""
from __future__ import annotations

import typer

from . import app


@app.command("train-baseline", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_baseline(ctx: typer.Context) -> None:
    """Train the supervised baseline on the labelled split."""
    typer.echo("`politeteacher train-baseline` is not implemented yet", err=True)
    raise typer.Exit(3)
