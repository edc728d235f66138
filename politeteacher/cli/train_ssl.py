"""`politeteacher train-ssl`."""
from __future__ import annotations

import typer

from . import app


@app.command("train-ssl", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_ssl(ctx: typer.Context) -> None:
    """Train with Polite Teacher on labelled + unlabelled images."""
    typer.echo("`politeteacher train-ssl` is not implemented yet", err=True)
    raise typer.Exit(3)
