"""`politeteacher plot`."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer
from typing_extensions import Annotated

from . import app
from .options import OldOutputOpt, deprecated_alias, output_dir_option

OutputDirOpt = output_dir_option("Folder to write curves.png into, or the .png file to write (default: "
                                 "RUN/curves.png; for several runs runs/compare/<run>+<run>.../curves.png).")


@app.command("plot")
def plot(
    run_dirs: Annotated[List[Path], typer.Argument(metavar="RUN", help="Run folder(s) holding metrics.json.")],
    output_dir: OutputDirOpt = None,
    output: OldOutputOpt = None,
) -> None:
    """Draw a run's curves to a PNG: losses, pseudo-label losses, learning rate, AP and pseudo-labels.

    Several runs are overlaid, a colour per run."""
    from ..evaluation.compare import default_compare_dir
    from ..evaluation.plot import CURVES_FILE, plot_runs

    target = deprecated_alias(output, output_dir, "--output", "--output-dir")
    if target is not None and (target.is_dir() or target.suffix.lower() != ".png"):
        target = target / CURVES_FILE
    if target is None:
        target = (run_dirs[0] if len(run_dirs) == 1 else default_compare_dir(run_dirs)) / CURVES_FILE
    typer.echo(str(plot_runs(run_dirs, target)))
