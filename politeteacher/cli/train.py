"""`politeteacher train-baseline` and `politeteacher train-ssl`: one command, made twice by `training_command`.

Both build a run's config from the same flags (`resolve.training_cfg`) and hand it to the engine's
runner; they differ in the run kind, the default preset, the runner, and train-ssl's unlabelled images
and --sweep.
"""
from __future__ import annotations

import inspect
import shlex
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, List, Optional

import typer
from typing_extensions import Annotated

from ..engine.run_dir import run_files
from . import app, err_console
from .options import (
    DATA, EXTRA_ARGS, LAUNCH, TRAINING_DATA, ConfigFileOpt, DeviceOpt, OptionGroup, OutputDirOpt, PresetOpt, SeedOpt,
    VerboseOpt, WeightsOpt,
)
from .resolve import training_cfg

ResumeOpt = Annotated[
    bool,
    typer.Option("--resume", help="Continue the run in the output folder from its last checkpoint (on the same data)."),
]
TrainForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Start over in a non-empty output folder (deletes the files a run wrote there, keeps others); "
        "with --resume: resume on other data than the run's.",
    ),
]
# Switches that each turn one config key on: name -> (declaration, key).
_SWITCHES = {
    "amp": (Annotated[bool, typer.Option("--amp", help="Mixed precision (GPU only; SOLVER.AMP.ENABLED).")],
            "SOLVER.AMP.ENABLED"),
    "skip_bad_images": (Annotated[bool, typer.Option(
        "--skip-bad-images", help="Leave out training images that cannot be read or whose size differs from their "
        "JSON entry, with a warning each (DATALOADER.SKIP_BAD_IMAGES); default: stop.")], "DATALOADER.SKIP_BAD_IMAGES"),
    "boxes_only": (Annotated[bool, typer.Option(
        "--boxes-only", help="Accept annotations without masks: train without the mask losses on labelled images "
        "(INPUT.BOXES_ONLY).")], "INPUT.BOXES_ONLY"),
}


def _switch_overrides(**on: bool) -> List[str]:
    """`KEY True` for each switch given."""
    return [part for name, given in on.items() if given for part in (_SWITCHES[name][1], "True")]


# The command gets the config overrides of the switches given.
SWITCHES = OptionGroup(_switch_overrides, {name: (kind, False) for name, (kind, _) in _SWITCHES.items()})
SweepOpt = Annotated[
    Optional[List[str]],
    typer.Option("--sweep", metavar="KEY=V1,V2,...", help="Train one run per value (one or two keys, repeat the "
                 "option for the second; a grid), one after another, each in <run folder>/<KEY=value>; "
                 "ends with the `compare` table."),
]


def resume_command(output_dir) -> str:
    """The command line being run, made to continue its run: --resume, the same run folder, no --force."""
    args, value_of_output_dir = [], False
    for a in sys.argv[1:]:
        if value_of_output_dir:
            value_of_output_dir = False
        elif a in ("--output-dir", "-o"):
            value_of_output_dir = True
        elif not (a in ("--resume", "--force") or a.startswith(("--output-dir=", "-o"))):
            args.append(a)
    return shlex.join(["politeteacher", *args[:1], "--resume", "--output-dir", str(output_dir), *args[1:]])


@contextmanager
def resume_hint(output_dir):
    """Ctrl-C during training ends with what to run next: the same command with --resume."""
    try:
        yield
    except KeyboardInterrupt:
        if Path(output_dir).is_dir() and run_files(output_dir):  # kept: a checkpoint was written
            hint = f"interrupted; the checkpoints written so far are kept. Continue with: {resume_command(output_dir)}"
        else:  # the start was undone (run_dir.RunFolder)
            hint = "interrupted before the first checkpoint, so nothing of this run was kept; run the command again"
        err_console.print(hint, markup=False, highlight=False, soft_wrap=True)
        raise


def training_command(name: str, kind: str, default_preset: str, runner: str, doc: str, *, ssl: bool) -> Callable:
    """Register the training command `name`: a run of `kind` (its folder runs/<kind>/<preset>) by the
    function `runner` of `engine.run` (imported when the command runs),
    with `doc` as its help. `ssl`: the command also takes --unlabeled-images and --sweep."""

    def train(
        ctx: typer.Context,
        weights: WeightsOpt = None,
        preset: PresetOpt = None,
        config_file: ConfigFileOpt = None,
        data=DATA if ssl else TRAINING_DATA,
        output_dir: OutputDirOpt = None,
        resume: ResumeOpt = False,
        force: TrainForceOpt = False,
        seed: SeedOpt = None,
        device: DeviceOpt = None,
        switches=SWITCHES,
        launch=LAUNCH,
        verbose: VerboseOpt = False,
        sweep: SweepOpt = None,
    ) -> None:
        from ..engine import run as runs
        from ..engine.launch import set_verbose
        from ..evaluation.evaluate import format_results

        run = getattr(runs, runner)

        set_verbose(verbose)
        cfg = training_cfg(
            kind, default_preset, ctx.args, data, preset=preset, config_file=config_file, output_dir=output_dir,
            weights=weights, device=device, switches=switches, resume=resume, seed=seed,
        )

        def train_one(c):
            return run(c, resume=resume, force=force, launch=launch)

        if sweep:
            from .compare import sweep_and_compare

            sweep_and_compare(sweep, cfg, train_one, show=launch.machine_rank == 0)
            return
        with resume_hint(cfg.OUTPUT_DIR):
            results = train_one(cfg)
        if launch.machine_rank == 0:
            if results:
                typer.echo(format_results(results))
            typer.echo(f"run folder: {cfg.OUTPUT_DIR}")

    params = list(inspect.signature(train, eval_str=True).parameters.values())
    # The baseline's --help lists --weights after the run folder; train-ssl's first (what it starts from).
    if not ssl:
        weights = params.pop(1)
        params = [p for p in params if p.name != "sweep"]
        params.insert(next(i for i, p in enumerate(params) if p.name == "output_dir") + 1, weights)
    train.__signature__ = inspect.Signature(params)
    train.__doc__ = doc
    train.__name__ = train.__qualname__ = name.replace("-", "_")
    return app.command(name, context_settings=EXTRA_ARGS)(train)


train_baseline = training_command("train-baseline", "baseline", "baseline_sup10",
                                  "run_train_baseline", """
Train the supervised baseline on the labelled split.

Trailing `KEY VALUE` pairs override config keys, e.g. `SOLVER.MAX_ITER 1000`.
Default preset: baseline_sup10; default run folder: runs/baseline/<preset>.
""", ssl=False)

train_ssl = training_command("train-ssl", "ssl", "polite_teacher_sup10",
                             "run_train_ssl", """
Train with Polite Teacher on labelled + unlabelled images, from a baseline checkpoint.

The unlabelled pool is the training set minus the labelled split, plus --unlabeled-images.
Trailing `KEY VALUE` pairs override config keys, e.g. `SEMISUPERVISED.BOX_THRESHOLD 0.7`.
Default preset: polite_teacher_sup10; default run folder: runs/ssl/<preset>.
--sweep SEMISUPERVISED.BOX_THRESHOLD=0.5,0.6,0.7 trains a run per value in <run folder>/BOX_THRESHOLD=<value>.
""", ssl=True)
