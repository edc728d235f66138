"""Options shared by the training commands (`train-baseline`, `train-ssl`) and the config they build.

A training command declares its flags with the Annotated types of `common.py` and the ones below,
then calls `training_cfg(...)` to get the resolved config (OUTPUT_DIR defaulting to
`runs/<kind>/<preset or config stem>`), and `launch_kwargs(...)` for the engine's `run_*` function.
"""
from __future__ import annotations

import shlex
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import typer
from typing_extensions import Annotated

from ..engine.run_dir import default_run_dir, run_config, run_files
from ..errors import PoliteTeacherError
from .common import build_cfg, data_overrides, run_overrides, split_overrides

ResumeOpt = Annotated[
    bool,
    typer.Option("--resume", help="Continue the run in the output folder from its last checkpoint (on the same data)."),
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Start over in a non-empty output folder (deletes its checkpoints and metrics)."),
]
TrainForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Start over in a non-empty output folder (deletes the files a run wrote there, keeps others); "
        "with --resume: resume on other data than the run's.",
    ),
]
AmpOpt = Annotated[bool, typer.Option("--amp", help="Mixed precision (GPU only; SOLVER.AMP.ENABLED).")]
SkipBadImagesOpt = Annotated[
    bool,
    typer.Option("--skip-bad-images", help="Leave out training images that cannot be read or whose size differs "
                 "from their JSON entry, with a warning each (DATALOADER.SKIP_BAD_IMAGES); default: stop."),
]
BoxesOnlyOpt = Annotated[
    bool,
    typer.Option("--boxes-only", help="Accept annotations without masks: train without the mask losses on "
                 "labelled images (INPUT.BOXES_ONLY)."),
]
ModelOpt = Annotated[
    str, typer.Option("--model", help="Which model of a two-model (Polite Teacher) checkpoint: teacher or student.")
]
VerboseOpt = Annotated[
    bool,
    typer.Option("--verbose", help="Also show detectron2's, fvcore's and pycocotools' output on the console "
                 "(always in the run's log.txt)."),
]
SweepOpt = Annotated[
    Optional[List[str]],
    typer.Option("--sweep", metavar="KEY=V1,V2,...", help="Train one run per value (one or two keys, repeat the "
                 "option for the second; a grid), one after another, each in <run folder>/<KEY=value>; "
                 "ends with the `compare` table."),
]


def config_overrides_only(extra: Sequence[str]) -> List[str]:
    """The trailing `KEY VALUE` overrides; anything else on the line is an error."""
    others, overrides = split_overrides(extra)
    if others:
        raise PoliteTeacherError(
            f"unexpected argument(s): {' '.join(others)}; options start with --, "
            "config overrides are KEY VALUE pairs such as SOLVER.MAX_ITER 100"
        )
    return overrides


def training_cfg(
    kind: str,
    default_preset: str,
    extra: Sequence[str],
    *,
    preset: Optional[str] = None,
    config_file: Optional[Path] = None,
    output_dir: Optional[Path] = None,
    weights: Optional[str] = None,
    device: Optional[str] = None,
    amp: bool = False,
    skip_bad_images: bool = False,
    boxes_only: bool = False,
    resume: bool = False,
    train_json: Optional[Path] = None,
    train_images: Optional[Path] = None,
    val_json: Optional[Path] = None,
    val_images: Optional[Path] = None,
    unlabeled_images: Optional[Sequence[Path]] = None,
    split: Optional[Path] = None,
    percent: Optional[float] = None,
    split_seed: Optional[int] = None,
    seed: Optional[int] = None,
    data: Optional[Path] = None,
    dataset: Optional[str] = None,
    val_dataset: Optional[str] = None,
):
    """The config of a training run from the command's flags (precedence: preset / config file, then
    flags, then trailing `KEY VALUE` overrides). OUTPUT_DIR: --output-dir, else the config's, else
    (detectron2's './output') `runs/<kind>/<preset or config-file stem>`.

    `--resume` with neither --preset nor --config-file continues with the run's own config.yaml."""
    overrides = config_overrides_only(extra)
    if split is not None and (percent is not None or split_seed is not None):
        raise PoliteTeacherError("--split takes the split from a file; drop --percent/--split-seed (or --split)")
    if split is not None and not Path(split).is_file():
        raise PoliteTeacherError(f"split file {split} not found; make one with `politeteacher split`")
    if resume and preset is None and config_file is None:
        folder = output_dir or default_run_dir("./output", kind, default_preset)
        saved = Path(folder) / "config.yaml"
        if saved.is_file():
            config_file = saved
    flags = data_overrides(train_json, train_images, val_json, val_images, unlabeled_images, split, percent,
                           split_seed, data=data, dataset=dataset, val_dataset=val_dataset)
    flags += run_overrides(output_dir, device, weights, seed)
    if amp:
        flags += ["SOLVER.AMP.ENABLED", "True"]
    if skip_bad_images:
        flags += ["DATALOADER.SKIP_BAD_IMAGES", "True"]
    if boxes_only:
        flags += ["INPUT.BOXES_ONLY", "True"]
    cfg = build_cfg(preset, config_file, overrides, flags, default_preset=default_preset)
    name = preset or (Path(config_file).stem if config_file else default_preset)
    cfg.OUTPUT_DIR = str(default_run_dir(cfg.OUTPUT_DIR, kind, name))
    return cfg


def inference_cfg(
    weights: Optional[str],
    extra: Sequence[str],
    *,
    default_preset: str,
    preset: Optional[str] = None,
    config_file: Optional[Path] = None,
    device: Optional[str] = None,
    data_flags: Sequence[str] = (),
):
    """The config for `eval` / `predict` of a checkpoint: the preset or config file if given, else the
    config.yaml of the run the checkpoint comes from, else the config a lean checkpoint carries (e.g. one
    made by `politeteacher strip` and moved away from its run), else `default_preset`; then `data_flags`
    (what `data_overrides` made of the command's data options), --device and the trailing overrides."""
    flags = [*data_flags, *run_overrides(device=device)]
    if preset is None and config_file is None and weights and "://" not in weights:
        config_file = run_config(Path(weights))
        if config_file is None:
            from ..engine.checkpoint import checkpoint_config

            text = checkpoint_config(weights)
            if text is not None:
                with tempfile.TemporaryDirectory() as tmp:
                    embedded = Path(tmp) / "config.yaml"
                    embedded.write_text(text)
                    return build_cfg(None, embedded, list(extra), flags)
    return build_cfg(preset, config_file, list(extra), flags, default_preset=default_preset)


def output_dir_override(output_dir: Optional[Path], overrides: Sequence[str]) -> Tuple[Optional[Path], List[str]]:
    """For the commands whose output folder is not the config's run folder (eval, predict, demo): a
    trailing `OUTPUT_DIR x` means `--output-dir x` (trailing overrides win), and is taken out of the
    overrides."""
    rest, i = list(overrides), 0
    while i < len(rest):
        if rest[i] == "OUTPUT_DIR":
            output_dir = Path(rest[i + 1])
            del rest[i:i + 2]
        else:
            i += 2
    return output_dir, rest


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
        from . import err_console

        if Path(output_dir).is_dir() and run_files(output_dir):  # kept: a checkpoint was written
            hint = f"interrupted; the checkpoints written so far are kept. Continue with: {resume_command(output_dir)}"
        else:  # the start was undone (run_dir.RunFolder)
            hint = "interrupted before the first checkpoint, so nothing of this run was kept; run the command again"
        err_console.print(hint, markup=False, highlight=False, soft_wrap=True)
        raise


def launch_kwargs(num_gpus: int, num_machines: int, machine_rank: int, dist_url: str) -> Dict:
    from ..engine.launch import Launch

    return dict(launch=Launch(num_gpus, num_machines, machine_rank, dist_url))


def weights_or_latest_run(weights: Optional[str]) -> str:
    """`--weights` as given (`none` is refused: there is nothing to run), else the newest run's
    model_best.pth (else model_final.pth) under runs/."""
    from ..engine.run_dir import RUNS_ROOT, latest_run_weights

    if weights is not None and weights.lower() not in ("", "none"):
        if "://" not in weights and not Path(weights).expanduser().is_file():
            raise PoliteTeacherError(f"weights file {weights} not found; pass an existing .pth checkpoint")
        return weights if "://" in weights else str(Path(weights).expanduser().absolute())
    if weights is not None:
        raise PoliteTeacherError("this command needs trained weights; pass --weights path/to/model_final.pth")
    found = latest_run_weights(RUNS_ROOT)
    if found is None:
        raise PoliteTeacherError(
            f"no --weights given and no run under {RUNS_ROOT.resolve()} has model_best.pth or "
            "model_final.pth; pass --weights path/to/checkpoint.pth"
        )
    return str(found.absolute())
