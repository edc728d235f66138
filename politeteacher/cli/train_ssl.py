"""`politeteacher train-ssl`."""
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
    UnlabeledOpt,
    ValDatasetOpt,
    ValImagesOpt,
    ValJsonOpt,
    WeightsOpt,
)
from .training_options import AmpOpt, ResumeOpt, TrainForceOpt, launch_kwargs, resume_hint, training_cfg
from .training_options import BoxesOnlyOpt, SkipBadImagesOpt
from .training_options import SweepOpt, VerboseOpt

DEFAULT_PRESET = "polite_teacher_sup10"


@app.command("train-ssl", context_settings=EXTRA_ARGS)
def train_ssl(
    ctx: typer.Context,
    weights: WeightsOpt = None,
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
    unlabeled_images: UnlabeledOpt = None,
    output_dir: OutputDirOpt = None,
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
    sweep: SweepOpt = None,
) -> None:
    """Train with Polite Teacher on labelled + unlabelled images, from a baseline checkpoint.

    The unlabelled pool is the training set minus the labelled split, plus --unlabeled-images.
    Trailing `KEY VALUE` pairs override config keys, e.g. `SEMISUPERVISED.BOX_THRESHOLD 0.7`.
    Default preset: polite_teacher_sup10; default run folder: runs/ssl/<preset>.
    --sweep SEMISUPERVISED.BOX_THRESHOLD=0.5,0.6,0.7 trains a run per value in <run folder>/BOX_THRESHOLD=<value>.
    """
    from ..evaluation.evaluate import format_results
    from ..engine.launch import set_verbose
    from ..engine.run import run_train_ssl

    set_verbose(verbose)

    cfg = training_cfg(
        "ssl", DEFAULT_PRESET, ctx.args, preset=preset, config_file=config_file,
        output_dir=output_dir, weights=weights, device=device, amp=amp, resume=resume,
        skip_bad_images=skip_bad_images, boxes_only=boxes_only,
        train_json=train_json, train_images=train_images, val_json=val_json, val_images=val_images,
        unlabeled_images=unlabeled_images, split=split, percent=percent, split_seed=split_seed, seed=seed,
        data=data, dataset=dataset, val_dataset=val_dataset,
    )
    if sweep:
        from .compare import sweep_and_compare

        sweep_and_compare(sweep, cfg, lambda c: run_train_ssl(
            c, resume=resume, force=force, **launch_kwargs(num_gpus, num_machines, machine_rank, dist_url)),
            show=machine_rank == 0)
        return
    with resume_hint(cfg.OUTPUT_DIR):
        results = run_train_ssl(
            cfg, resume=resume, force=force, **launch_kwargs(num_gpus, num_machines, machine_rank, dist_url)
        )
    if machine_rank == 0:
        if results:
            typer.echo(format_results(results))
        typer.echo(f"run folder: {cfg.OUTPUT_DIR}")
