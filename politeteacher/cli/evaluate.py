"""`politeteacher eval`."""
from __future__ import annotations

from pathlib import Path

import typer
from typing_extensions import Annotated

from . import app
from .options import (
    EVAL_DATA, EXTRA_ARGS, LAUNCH, MODEL, CheckpointOpt, DeviceOpt, OutputDirOpt, VerboseOpt,
)
from .resolve import checkpoint_cfg, config_overrides_only, output_dir_override

DEFAULT_PRESET = "baseline_sup10"


def default_eval_dir(weights: str, model: str) -> Path:
    """runs/eval/<run folder>-<checkpoint stem>[-student]."""
    w = Path(weights.split("://")[-1])
    name = f"{w.parent.name}-{w.stem}" if w.parent.name else w.stem
    return Path("runs") / "eval" / (name + ("-student" if model == "student" else ""))


@app.command("eval", context_settings=EXTRA_ARGS)
def eval_(
    ctx: typer.Context,
    weights: CheckpointOpt = None,
    model=MODEL,
    data=EVAL_DATA,
    output_dir: OutputDirOpt = None,
    device: DeviceOpt = None,
    per_category: Annotated[bool, typer.Option("--per-category", help="Also print AP per class.")] = False,
    launch=LAUNCH,
    verbose: VerboseOpt = False,
) -> None:
    """Evaluate a checkpoint: COCO bbox and segm AP on the test set.

    The config is --preset/--config-file if given, else the config.yaml of the run the checkpoint
    comes from, else baseline_sup10. The test set: --dataset, --val-json/--val-images or --data's val
    entries, else the config's. Results go to --output-dir (default runs/eval/<run>-<checkpoint>):
    eval_results.json, <dataset>/coco_instances_results.json, and the plots <dataset>/ap_per_class.png
    and <dataset>/pr_curves.png.
    """
    from ..evaluation.evaluate import format_results, run_evaluate
    from ..engine.launch import set_verbose

    set_verbose(verbose)

    output_dir, overrides = output_dir_override(output_dir, config_overrides_only(ctx.args))
    weights, cfg = checkpoint_cfg(weights, overrides, model, default_preset=DEFAULT_PRESET, device=device,
                                  data_flags=data.overrides())
    cfg.OUTPUT_DIR = str((output_dir or default_eval_dir(weights, model.which)).expanduser().resolve())
    results = run_evaluate(cfg, weights, model.which, launch=launch)
    if launch.machine_rank == 0:
        typer.echo(f"weights: {weights} ({model.which})")
        typer.echo(format_results(results, per_category=per_category))
        typer.echo(f"results: {Path(cfg.OUTPUT_DIR) / 'eval_results.json'}")
