"""`politeteacher split`: choose the labelled images of a dataset, or import/export Unbiased Teacher's."""
from __future__ import annotations

import typer

from . import app


@app.command()
def split() -> None:
    """Pick the labelled images of a dataset (percent, seed) and write a split file."""
    typer.echo("`politeteacher split` is not implemented yet", err=True)
    raise typer.Exit(3)
