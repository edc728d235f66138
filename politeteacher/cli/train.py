"""`politeteacher train-baseline`."""
from __future__ import annotations

import typer

from . import app
from .common import (
    EXTRA_ARGS,
    ConfigFileOpt,
    DataFileOpt,
    DeviceOpt,
    DistUrlOpt,
    MachineRankOpt,
    NumGpusOpt,
    NumMachinesOpt,
    OutputDirOpt,
    PercentOpt,
    PresetOpt,
    SeedOpt,
    SplitSeedOpt,
    SplitFileOpt,
    TrainDatasetOpt,
    TrainImagesOpt,
    TrainJsonOpt,
    ValDatasetOpt,
    ValImagesOpt,
    ValJsonOpt,
    WeightsOpt,
)
from .training_options import AmpOpt, ResumeOpt, TrainForceOpt, launch_kwargs, resume_hint, training_cfg
from .training_options import BoxesOnlyOpt, SkipBadImagesOpt
from .training_options import VerboseOpt

DEFAULT_PRESET = "baseline_sup10"


@app.command("train-baseline", context_settings=EXTRA_ARGS)
def train_baseline(
    ctx: typer.Context,
    preset: PresetOpt = None,
    config_file: ConfigFileOpt = None,
    data: DataFileOpt = None,
    dataset: TrainDatasetOpt = None,
    val_dataset: ValDatasetOpt = None,
    split: SplitFileOpt = None,
    percent: PercentOpt = None,
    split_seed: SplitSeedOpt = None,
    train_json: TrainJsonOpt = None,
    train_images: TrainImagesOpt = None,
    val_json: ValJsonOpt = None,
    val_images: ValImagesOpt = None,
    output_dir: OutputDirOpt = None,
    weights: WeightsOpt = None,
    resume: ResumeOpt = False,
    force: TrainForceOpt = False,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    amp: AmpOpt = False,
    skip_bad_images: SkipBadImagesOpt = False,
    boxes_only: BoxesOnlyOpt = False,
    num_gpus: NumGpusOpt = 1,
    num_machines: NumMachinesOpt = 1,
    machine_rank: MachineRankOpt = 0,
    dist_url: DistUrlOpt = "auto",
    verbose: VerboseOpt = False,
) -> None:
    """Train the supervised baseline on the labelled split.

    Trailing `KEY VALUE` pairs override config keys, e.g. `SOLVER.MAX_ITER 1000`.
    Default preset: baseline_sup10; default run folder: runs/baseline/<preset>.
    """
    from ..engine.run import run_train_baseline
    from ..evaluation.evaluate import format_results
    from ..engine.launch import set_verbose

    set_verbose(verbose)

    cfg = training_cfg(
        "baseline", DEFAULT_PRESET, ctx.args, preset=preset, config_file=config_file,
        output_dir=output_dir, weights=weights, device=device, amp=amp, resume=resume,
        skip_bad_images=skip_bad_images, boxes_only=boxes_only,
        train_json=train_json, train_images=train_images, val_json=val_json, val_images=val_images,
        split=split, percent=percent, split_seed=split_seed, seed=seed,
        data=data, dataset=dataset, val_dataset=val_dataset,
    )
    with resume_hint(cfg.OUTPUT_DIR):
        results = run_train_baseline(
            cfg, resume=resume, force=force, **launch_kwargs(num_gpus, num_machines, machine_rank, dist_url)
        )
    if machine_rank == 0:
        if results:
            typer.echo(format_results(results))
        typer.echo(f"run folder: {cfg.OUTPUT_DIR}")
