"""`politeteacher plot`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from . import app


@app.command("plot")
def plot(
    run_dir: Annotated[Path, typer.Argument(help="Run folder holding metrics.json.")],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="PNG to write (default: RUN_DIR/curves.png).")
    ] = None,
) -> None:
    """Draw a run's loss and AP curves to a PNG."""
    from ..engine.plot import plot_run

    typer.echo(str(plot_run(run_dir, output)))
