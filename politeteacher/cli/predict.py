"""`politeteacher predict`."""
from __future__ import annotations

import typer

from . import app


@app.command("predict", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def predict(ctx: typer.Context) -> None:
    """Segment images: overlays and a COCO results JSON."""
    typer.echo("`politeteacher predict` is not implemented yet", err=True)
    raise typer.Exit(3)
