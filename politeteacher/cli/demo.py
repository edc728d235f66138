"""`politeteacher demo`."""
from __future__ import annotations

import typer

from . import app


@app.command("demo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def demo(ctx: typer.Context) -> None:
    """Run the whole workflow on the generated demo dataset."""
    typer.echo("`politeteacher demo` is not implemented yet", err=True)
    raise typer.Exit(3)
