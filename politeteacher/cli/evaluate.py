"""`politeteacher eval`."""
from __future__ import annotations

from pathlib import Path

import typer
from typing_extensions import Annotated

from . import app
from .common import (
    EXTRA_ARGS,
    ConfigFileOpt,
    DataFileOpt,
    EvalDatasetOpt,
    DeviceOpt,
    DistUrlOpt,
    MachineRankOpt,
    NumGpusOpt,
    NumMachinesOpt,
    OutputDirOpt,
    PresetOpt,
    ValImagesOpt,
    ValJsonOpt,
    CheckpointOpt,
    data_overrides,
)
from .training_options import (
    ModelOpt, VerboseOpt, config_overrides_only, inference_cfg, launch_kwargs, output_dir_override,
    weights_or_latest_run,
)

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
    model: ModelOpt = "teacher",
    preset: PresetOpt = None,
    config_file: ConfigFileOpt = None,
    data: DataFileOpt = None,
    dataset: EvalDatasetOpt = None,
    val_json: ValJsonOpt = None,
    val_images: ValImagesOpt = None,
    output_dir: OutputDirOpt = None,
    device: DeviceOpt = None,
    per_category: Annotated[bool, typer.Option("--per-category", help="Also print AP per class.")] = False,
    num_gpus: NumGpusOpt = 1,
    num_machines: NumMachinesOpt = 1,
    machine_rank: MachineRankOpt = 0,
    dist_url: DistUrlOpt = "auto",
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

    weights = weights_or_latest_run(weights)
    output_dir, overrides = output_dir_override(output_dir, config_overrides_only(ctx.args))
    data_flags = data_overrides(val_json=val_json, val_images=val_images, data=data, val_dataset=dataset)
    cfg = inference_cfg(weights, overrides, default_preset=DEFAULT_PRESET, preset=preset,
                        config_file=config_file, device=device, data_flags=data_flags)
    cfg.OUTPUT_DIR = str((output_dir or default_eval_dir(weights, model)).expanduser().resolve())
    results = run_evaluate(cfg, weights, model, **launch_kwargs(num_gpus, num_machines, machine_rank, dist_url))
    if machine_rank == 0:
        typer.echo(f"weights: {weights} ({model})")
        typer.echo(format_results(results, per_category=per_category))
        typer.echo(f"results: {Path(cfg.OUTPUT_DIR) / 'eval_results.json'}")
