"""`politeteacher demo`: the whole workflow on the generated demo dataset."""
from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .common import EXTRA_ARGS
from .training_options import ForceOpt, config_overrides_only


@app.command("demo", context_settings=EXTRA_ARGS)
def demo(
    ctx: typer.Context,
    output_dir: Path = typer.Option(Path("runs/demo"), "--output-dir", "-o", help="Where the demo writes everything."),
    force: ForceOpt = False,
) -> None:
    """Run the whole workflow on the generated demo dataset (CPU, about 10 minutes).

    split 10 % -> train-baseline -> train-ssl -> eval both -> predict; ends with a table.
    Trailing `KEY VALUE` pairs override both trainings' configs, e.g. `SOLVER.MAX_ITER 20`.
    """
    from ..demo import run_demo

    report = run_demo(output_dir, force=force, overrides=config_overrides_only(ctx.args))
    typer.echo("")
    typer.echo(report.table())
    typer.echo("")
    typer.echo(f"split:        {report.split_file}")
    typer.echo(f"checkpoints:  {report.baseline_weights}\n              {report.ssl_weights}")
    for plot in report.plots:
        typer.echo(f"curves:       {plot}")
    if report.overlays:
        typer.echo(f"overlays:     {report.overlays[0].parent}/ ({len(report.overlays)} images)")
