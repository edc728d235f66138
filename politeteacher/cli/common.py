"""Options shared by the commands, and their translation into config overrides.

Commands stay thin: they turn flags into `KEY VALUE` overrides on top of a preset or a user YAML and
hand the resolved config to the Python API.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import typer
from typing_extensions import Annotated

from ..errors import PoliteTeacherError

# A detectron2 config key as written on a command line: upper-case words joined by dots, or one of
# the config's top-level keys (kept here rather than read from the config: the CLI starts without
# importing detectron2; a test checks the list against the config).
_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")
TOP_LEVEL_KEYS = ("CUDNN_BENCHMARK", "OUTPUT_DIR", "SEED", "VERSION", "VIS_PERIOD")

# Commands that take a config also take trailing `KEY VALUE` overrides (and, for predict, file names).
EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}

PresetOpt = Annotated[
    Optional[str], typer.Option("--preset", help="Built-in preset (see `politeteacher presets list`).")
]
ConfigFileOpt = Annotated[
    Optional[Path],
    typer.Option("--config-file", help="Your YAML config; it may `_BASE_: <preset name>`."),
]
OutputDirOpt = Annotated[
    Optional[Path], typer.Option("--output-dir", "-o", help="Run folder (default: OUTPUT_DIR of the config).")
]
DatasetOpt = Annotated[
    Optional[str], typer.Option("--dataset", help="Registered dataset name, e.g. coco_2017_train.")
]
TrainDatasetOpt = Annotated[
    Optional[str],
    typer.Option("--dataset", help="Training set by registered name, e.g. coco_2017_train (DATASETS.TRAIN)."),
]
ValDatasetOpt = Annotated[
    Optional[str],
    typer.Option("--val-dataset", help="Validation set by registered name, e.g. coco_2017_val (DATASETS.TEST)."),
]
EvalDatasetOpt = Annotated[
    Optional[str],
    typer.Option("--dataset", help="Set to evaluate, by registered name, e.g. coco_2017_val (DATASETS.TEST)."),
]
DataFileOpt = Annotated[
    Optional[Path],
    typer.Option("--data", metavar="FILE", help="Dataset file (YAML: train/val JSON and images, unlabelled "
                 "folders, split, classes); README, 'Your own data in 10 minutes'."),
]
TrainJsonOpt = Annotated[Optional[Path], typer.Option("--train-json", help="COCO JSON of your training images.")]
TrainImagesOpt = Annotated[Optional[Path], typer.Option("--train-images", help="Folder of your training images.")]
ValJsonOpt = Annotated[Optional[Path], typer.Option("--val-json", help="COCO JSON of your validation images.")]
ValImagesOpt = Annotated[Optional[Path], typer.Option("--val-images", help="Folder of your validation images.")]
UnlabeledOpt = Annotated[
    Optional[List[Path]],
    typer.Option("--unlabeled-images", metavar="FOLDER", help="Folder of raw images added to the unlabelled pool (repeatable)."),
]
SplitFileOpt = Annotated[Optional[Path], typer.Option("--split", help="Split file from `politeteacher split`.")]
PercentOpt = Annotated[
    Optional[float], typer.Option("--percent", help="Labelled percent, to make a split on the fly.")
]
SplitSeedOpt = Annotated[Optional[int], typer.Option("--split-seed", help="Seed of the split made on the fly.")]
SeedOpt = Annotated[
    Optional[int], typer.Option("--seed", help="Training seed (the config's SEED; -1: a random one, logged).")
]
DeviceOpt = Annotated[
    Optional[str],
    typer.Option("--device", help="cpu, cuda or cuda:N, the GPU numbered N (MODEL.DEVICE; default: cuda if available)."),
]
# The spelling of --output-dir before 0.3.0 on predict, plot and split; kept for one version.
OldOutputOpt = Annotated[Optional[Path], typer.Option("--output", hidden=True)]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option("--weights", help="Checkpoint or backbone weights to start from; '' or none: from scratch."),
]
CheckpointOpt = Annotated[
    Optional[str],
    typer.Option("--weights", help="Checkpoint to use (default: the newest run's model_best.pth, else "
                 "model_final.pth, under runs/)."),
]
NumGpusOpt = Annotated[
    int, typer.Option("--num-gpus", help="Processes per machine (GPUs; on a CPU-only machine, CPU workers).")
]
NumMachinesOpt = Annotated[int, typer.Option("--num-machines", help="Machines taking part.")]
MachineRankOpt = Annotated[int, typer.Option("--machine-rank", help="Rank of this machine.")]
DistUrlOpt = Annotated[
    str, typer.Option("--dist-url", help="Rendezvous URL of process 0 (detectron2's meaning); 'auto' on one machine.")
]


_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")


def deprecated_alias(old_value, new_value, old: str, new: str):
    """The value of an option given under its old name `old` (with one line on stderr saying so), or
    of its new name `new`; both at once is an error."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise PoliteTeacherError(f"{old} and {new} are the same option; pass {new} only")
    typer.echo(f"{old} is deprecated, use {new}", err=True)
    return old_value


def split_overrides(tokens: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Separate `KEY VALUE` config overrides from other positional tokens (e.g. image paths)."""
    others: List[str] = []
    overrides: List[str] = []
    i = 0
    while i < len(tokens):
        if _KEY.match(tokens[i]) or tokens[i] in TOP_LEVEL_KEYS:
            if i + 1 >= len(tokens):
                raise PoliteTeacherError(f"config override {tokens[i]} has no value; write KEY VALUE")
            overrides += [tokens[i], tokens[i + 1]]
            i += 2
        else:
            others.append(tokens[i])
            i += 1
    return others, overrides


def data_overrides(
    train_json: Optional[Path] = None,
    train_images: Optional[Path] = None,
    val_json: Optional[Path] = None,
    val_images: Optional[Path] = None,
    unlabeled_images: Optional[Sequence[Path]] = None,
    split: Optional[Path] = None,
    percent: Optional[float] = None,
    split_seed: Optional[int] = None,
    data: Optional[Path] = None,
    dataset: Optional[str] = None,
    val_dataset: Optional[str] = None,
) -> List[str]:
    """Config overrides for the dataset and split flags that were given: the dataset file's entries
    first, so that a flag given as well overrides its entry."""
    from ..data.data_file import data_file_overrides, load_data_file

    out: List[str] = data_file_overrides(load_data_file(data)) if data is not None else []
    for name, flag, json_file, key, names_key in (
        (dataset, "--dataset", train_json, "TRAIN", "DATASETS.TRAIN"),
        (val_dataset, "--val-dataset", val_json, "VAL", "DATASETS.TEST"),
    ):
        if name is None:
            continue
        if json_file is not None:
            raise PoliteTeacherError(f"{flag} and --{key.lower()}-json both name the {key.lower()} set; pass one")
        out += [names_key, repr((name,)), f"DATASETS.CUSTOM.{key}_JSON", "", f"DATASETS.CUSTOM.{key}_IMAGES", ""]
    for key, value in (
        ("DATASETS.CUSTOM.TRAIN_JSON", train_json),
        ("DATASETS.CUSTOM.TRAIN_IMAGES", train_images),
        ("DATASETS.CUSTOM.VAL_JSON", val_json),
        ("DATASETS.CUSTOM.VAL_IMAGES", val_images),
        ("DATASETS.SPLIT.FILE", split),
    ):
        if value is not None:
            out += [key, str(Path(value).expanduser().resolve())]
    if (train_json is None) != (train_images is None):
        raise PoliteTeacherError("--train-json and --train-images go together; pass both")
    if (val_json is None) != (val_images is None):
        raise PoliteTeacherError("--val-json and --val-images go together; pass both")
    if unlabeled_images:
        dirs = [str(Path(d).expanduser().resolve()) for d in unlabeled_images]
        out += ["DATASETS.UNLABELED_IMAGE_DIRS", repr(dirs)]
    if percent is not None:
        if not 0 < percent < 100:
            raise PoliteTeacherError(f"--percent must be in (0, 100), got {percent:g}")
        out += ["DATASETS.SPLIT.PERCENT", repr(float(percent)), "DATASETS.SPLIT.FILE", ""]
    if split_seed is not None:
        out += ["DATASETS.SPLIT.SEED", str(split_seed)]
    return out


def run_overrides(
    output_dir: Optional[Path] = None,
    device: Optional[str] = None,
    weights: Optional[str] = None,
    seed: Optional[int] = None,
) -> List[str]:
    """Config overrides for the run folder, device, starting weights and training seed."""
    out: List[str] = []
    if output_dir is not None:
        out += ["OUTPUT_DIR", str(Path(output_dir).expanduser().resolve())]
    if device is not None:
        if not _DEVICE.match(device):
            raise PoliteTeacherError(f"--device must be cpu, cuda or cuda:N (N a GPU number), got '{device}'")
        out += ["MODEL.DEVICE", device]
    if weights is not None:
        w = "" if weights.lower() in ("", "none") else weights
        if w and "://" not in w and not Path(w).expanduser().is_file():
            raise PoliteTeacherError(f"weights file {w} not found; pass a .pth/.pkl checkpoint, or none")
        out += ["MODEL.WEIGHTS", str(Path(w).expanduser().resolve()) if w and "://" not in w else w]
    if seed is not None:
        out += ["SEED", str(seed)]
    return out


def build_cfg(
    preset: Optional[str],
    config_file: Optional[Path],
    extra: Sequence[str],
    flag_overrides: Sequence[str] = (),
    default_preset: Optional[str] = None,
):
    """Resolve preset/config file, then flags, then the user's trailing overrides (which win)."""
    from ..config import resolve_config

    if preset is None and config_file is None:
        preset = default_preset
    return resolve_config(preset, str(config_file) if config_file else None, [*flag_overrides, *extra])
