"""`politeteacher eval`."""
from __future__ import annotations

import typer

from . import app


@app.command("eval", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def eval_(ctx: typer.Context) -> None:
    """Evaluate a checkpoint: COCO bbox and segm AP."""
    typer.echo("`politeteacher eval` is not implemented yet", err=True)
    raise typer.Exit(3)
