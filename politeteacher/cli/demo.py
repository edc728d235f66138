"""`politeteacher demo`: the whole workflow on the generated demo dataset."""
from __future__ import annotations

from pathlib import Path

import typer

from . import app
from .options import EXTRA_ARGS, ForceOpt, output_dir_option
from .resolve import config_overrides_only, output_dir_override

OutputDirOpt = output_dir_option("Where the demo writes everything (default runs/demo; with --pretrain, "
                                 "runs/demo_source).")


@app.command("demo", context_settings=EXTRA_ARGS)
def demo(
    ctx: typer.Context,
    output_dir: OutputDirOpt = None,
    pretrain: bool = typer.Option(
        False, "--pretrain", help="Instead: make the demo's pre-trained weights again (about 80 min on 2 CPU cores)."
    ),
    force: ForceOpt = False,
) -> None:
    """Run the whole workflow on the generated demo dataset (CPU, about 10 minutes).

    split 10 % -> train-baseline -> train-ssl -> eval both -> predict; ends with a table.

    Both models start from weights pre-trained on a generated source set of other shapes (shipped with the package; `--pretrain` makes them again).

    Trailing `KEY VALUE` pairs override both trainings' configs, e.g. `SOLVER.MAX_ITER 20`.
    """
    from ..demo import run_demo, run_pretrain

    output_dir, overrides = output_dir_override(output_dir, config_overrides_only(ctx.args))
    if pretrain:
        weights = run_pretrain(output_dir or Path("runs/demo_source"), force=force, overrides=overrides)
        typer.echo(f"pre-trained weights: {weights}")
        typer.echo("ship them with: cp {} politeteacher/weights/".format(weights))
        return
    report = run_demo(output_dir or Path("runs/demo"), force=force, overrides=overrides)
    typer.echo("")
    typer.echo(report.table())
    typer.echo("")
    typer.echo(f"split:        {report.split_file}")
    typer.echo(f"checkpoints:  {report.baseline_weights}\n              {report.ssl_weights}")
    for plot in report.plots:
        typer.echo(f"curves:       {plot}")
    if report.overlays:
        typer.echo(f"overlays:     {report.overlays[0].parent}/ ({len(report.overlays)} images)")
