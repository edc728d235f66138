"""`politeteacher plot`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from . import app
from .common import OldOutputOpt, deprecated_alias


@app.command("plot")
def plot(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR", help="Run folder holding metrics.json.")],
    output_dir: Annotated[
        Optional[Path],
        typer.Option("--output-dir", "-o", help="Folder to write curves.png into, or the .png file to write "
                     "(default: RUN_DIR/curves.png)."),
    ] = None,
    output: OldOutputOpt = None,
) -> None:
    """Draw a run's loss and AP curves to a PNG."""
    from ..engine.plot import CURVES_FILE, plot_run

    target = deprecated_alias(output, output_dir, "--output", "--output-dir")
    if target is not None and (target.is_dir() or target.suffix.lower() != ".png"):
        target = target / CURVES_FILE
    typer.echo(str(plot_run(run_dir, target)))
