"""The options the commands declare, each declared once here.

An option one command alone takes stays in that command's signature. The data flags, the launch flags
and --model/--preset/--config-file are option groups: a command names the group as the default of one
parameter, e.g. `data=TRAINING_DATA`, `launch=LAUNCH` or `model=MODEL`, and gets one object there (a
`DataOptions`, an engine `Launch`, a `ModelOptions`); `Typer.command` puts the group's flags in that
parameter's place in the command's signature, hence in its help.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import typer
from typing_extensions import Annotated

from ..errors import PoliteTeacherError

# Commands that take a config also take trailing `KEY VALUE` overrides (and, for predict, file names).
EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}

PresetOpt = Annotated[
    Optional[str], typer.Option("--preset", help="Built-in preset (see `politeteacher presets list`).")
]
ConfigFileOpt = Annotated[
    Optional[Path],
    typer.Option("--config-file", help="Your YAML config; it may `_BASE_: <preset name>`."),
]
DatasetOpt = Annotated[
    Optional[str], typer.Option("--dataset", help="Registered dataset name, e.g. coco_2017_train.")
]
SeedOpt = Annotated[
    Optional[int], typer.Option("--seed", help="Training seed (the config's SEED; -1: a random one, logged).")
]
DeviceOpt = Annotated[
    Optional[str],
    typer.Option("--device", help="cpu, cuda or cuda:N, the GPU numbered N (MODEL.DEVICE; default: cuda if available)."),
]
# The spelling of --output-dir before 0.3.0 on predict, plot, split, strip and export; kept for one version.
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
ModelOpt = Annotated[
    str, typer.Option("--model", help="Which model of a two-model (Polite Teacher) checkpoint: teacher or student.")
]
VerboseOpt = Annotated[
    bool,
    typer.Option("--verbose", help="Also show detectron2's, fvcore's and pycocotools' output on the console "
                 "(always in the run's log.txt)."),
]
ForceOpt = Annotated[
    bool,
    typer.Option("--force", help="Start over in a non-empty output folder (deletes its checkpoints and metrics)."),
]


def output_dir_option(help: str):
    """`-o/--output-dir`, the one meaning of `-o`: where a command writes; `help` says what goes there."""
    return Annotated[Optional[Path], typer.Option("--output-dir", "-o", help=help)]


OutputDirOpt = output_dir_option("Run folder (default: OUTPUT_DIR of the config).")


def images_argument(note: str = ""):
    """The image arguments of predict and pseudo-label; `note` says more about them."""
    return Annotated[
        Optional[List[str]],
        typer.Argument(metavar="IMAGE|FOLDER|GLOB", show_default=False,
                       help=f"Image files, folders of images or glob patterns{note}; trailing KEY VALUE pairs "
                       "override config keys."),
    ]


def deprecated_alias(old_value, new_value, old: str, new: str):
    """The value of an option given under its old name `old` (with one line on stderr saying so), or
    of its new name `new`; both at once is an error."""
    if old_value is None:
        return new_value
    if new_value is not None:
        raise PoliteTeacherError(f"{old} and {new} are the same option; pass {new} only")
    typer.echo(f"{old} is deprecated, use {new}", err=True)
    return old_value


class OptionGroup:
    """Flags declared once that reach a command as one object, `build(**flags)`.

    `flags` maps each parameter name to its (Annotated type, default), in the order `--help` lists them.
    """

    def __init__(self, build: Callable[..., Any], flags: Dict[str, Tuple[Any, Any]]) -> None:
        self.build = build
        self.flags = flags

    def only(self, *names: str, **declared: Any) -> "OptionGroup":
        """The group with the flags `names`, in that order; `declared` (name: Annotated type) replaces the
        group's declaration of a flag for a command where it means something narrower."""
        return OptionGroup(self.build, {
            name: (declared.get(name, self.flags[name][0]), self.flags[name][1]) for name in names
        })


def with_option_groups(command: Callable) -> Callable:
    """`command` as typer should see it: each parameter whose default is an `OptionGroup` replaced by the
    group's flags (typer reads `inspect.signature`), and called with the group's object there."""
    signature = inspect.signature(command, eval_str=True)
    groups = {p.name: p.default for p in signature.parameters.values() if isinstance(p.default, OptionGroup)}
    if not groups:
        return command
    # Keyword-only: click calls a command with keywords, and so a parameter without a default (typer's
    # Context) may follow a group's flags.
    keyword = inspect.Parameter.KEYWORD_ONLY
    params: List[inspect.Parameter] = []
    for p in signature.parameters.values():
        if p.name in groups:
            params += [inspect.Parameter(name, keyword, annotation=kind, default=default)
                       for name, (kind, default) in groups[p.name].flags.items()]
        else:
            params.append(p.replace(kind=keyword))

    @functools.wraps(command)
    def run(**kwargs):
        for name, group in groups.items():
            kwargs[name] = group.build(**{flag: kwargs.pop(flag) for flag in group.flags})
        return command(**kwargs)

    run.__signature__ = signature.replace(parameters=params)
    return run


@dataclass(frozen=True)
class DataOptions:
    """The data flags of a command (None: not given); `overrides()` is what they say as config overrides."""

    data: Optional[Path] = None
    dataset: Optional[str] = None
    val_dataset: Optional[str] = None
    split: Optional[Path] = None
    percent: Optional[float] = None
    split_seed: Optional[int] = None
    train_json: Optional[Path] = None
    train_images: Optional[Path] = None
    val_json: Optional[Path] = None
    val_images: Optional[Path] = None
    unlabeled_images: Optional[Sequence[Path]] = None

    def overrides(self) -> List[str]:
        """Config overrides for the flags that were given: the dataset file's entries first, so that a
        flag given as well overrides its entry."""
        from ..data.data_file import data_file_overrides, load_data_file

        if self.split is not None and (self.percent is not None or self.split_seed is not None):
            raise PoliteTeacherError("--split takes the split from a file; drop --percent/--split-seed (or --split)")
        if self.split is not None and not Path(self.split).is_file():
            raise PoliteTeacherError(f"split file {self.split} not found; make one with `politeteacher split`")
        out: List[str] = data_file_overrides(load_data_file(self.data)) if self.data is not None else []
        for name, flag, json_file, key, names_key in (
            (self.dataset, "--dataset", self.train_json, "TRAIN", "DATASETS.TRAIN"),
            (self.val_dataset, "--val-dataset", self.val_json, "VAL", "DATASETS.TEST"),
        ):
            if name is None:
                continue
            if json_file is not None:
                raise PoliteTeacherError(f"{flag} and --{key.lower()}-json both name the {key.lower()} set; pass one")
            out += [names_key, repr((name,)), f"DATASETS.CUSTOM.{key}_JSON", "", f"DATASETS.CUSTOM.{key}_IMAGES", ""]
        for key, value in (
            ("DATASETS.CUSTOM.TRAIN_JSON", self.train_json),
            ("DATASETS.CUSTOM.TRAIN_IMAGES", self.train_images),
            ("DATASETS.CUSTOM.VAL_JSON", self.val_json),
            ("DATASETS.CUSTOM.VAL_IMAGES", self.val_images),
            ("DATASETS.SPLIT.FILE", self.split),
        ):
            if value is not None:
                out += [key, str(Path(value).expanduser().resolve())]
        if (self.train_json is None) != (self.train_images is None):
            raise PoliteTeacherError("--train-json and --train-images go together; pass both")
        if (self.val_json is None) != (self.val_images is None):
            raise PoliteTeacherError("--val-json and --val-images go together; pass both")
        if self.unlabeled_images:
            dirs = [str(Path(d).expanduser().resolve()) for d in self.unlabeled_images]
            out += ["DATASETS.UNLABELED_IMAGE_DIRS", repr(dirs)]
        if self.percent is not None:
            if not 0 < self.percent < 100:
                raise PoliteTeacherError(f"--percent must be in (0, 100), got {self.percent:g}")
            out += ["DATASETS.SPLIT.PERCENT", repr(float(self.percent)), "DATASETS.SPLIT.FILE", ""]
        if self.split_seed is not None:
            out += ["DATASETS.SPLIT.SEED", str(self.split_seed)]
        return out


_DATA_FLAGS: Dict[str, Any] = {
    "data": Annotated[
        Optional[Path],
        typer.Option("--data", metavar="FILE", help="Dataset file (YAML: train/val JSON and images, unlabelled "
                     "folders, split, classes); README, 'Your own data in 10 minutes'."),
    ],
    "dataset": Annotated[
        Optional[str],
        typer.Option("--dataset", help="Training set by registered name, e.g. coco_2017_train (DATASETS.TRAIN)."),
    ],
    "val_dataset": Annotated[
        Optional[str],
        typer.Option("--val-dataset", help="Validation set by registered name, e.g. coco_2017_val (DATASETS.TEST)."),
    ],
    "split": Annotated[Optional[Path], typer.Option("--split", help="Split file from `politeteacher split`.")],
    "percent": Annotated[
        Optional[float], typer.Option("--percent", help="Labelled percent, to make a split on the fly.")
    ],
    "split_seed": Annotated[Optional[int], typer.Option("--split-seed", help="Seed of the split made on the fly.")],
    "train_json": Annotated[Optional[Path], typer.Option("--train-json", help="COCO JSON of your training images.")],
    "train_images": Annotated[Optional[Path], typer.Option("--train-images", help="Folder of your training images.")],
    "val_json": Annotated[Optional[Path], typer.Option("--val-json", help="COCO JSON of your validation images.")],
    "val_images": Annotated[Optional[Path], typer.Option("--val-images", help="Folder of your validation images.")],
    "unlabeled_images": Annotated[
        Optional[List[Path]],
        typer.Option("--unlabeled-images", metavar="FOLDER",
                     help="Folder of raw images added to the unlabelled pool (repeatable)."),
    ],
}
assert list(_DATA_FLAGS) == [f.name for f in fields(DataOptions)]  # one flag a field, in the same order

# The data flags of the training commands (train-ssl adds --unlabeled-images), check-data, eval and split.
DATA = OptionGroup(DataOptions, {name: (kind, None) for name, kind in _DATA_FLAGS.items()})
TRAINING_DATA = DATA.only(*(name for name in _DATA_FLAGS if name != "unlabeled_images"))
CHECK_DATA = DATA.only(*(name for name in _DATA_FLAGS if name not in ("split", "percent", "split_seed")))
SPLIT_DATA = DATA.only("dataset", "data", "train_json", "train_images", dataset=DatasetOpt)
EVAL_DATA = DATA.only("data", "val_dataset", "val_json", "val_images", val_dataset=Annotated[
    Optional[str],
    typer.Option("--dataset", help="Set to evaluate, by registered name, e.g. coco_2017_val (DATASETS.TEST)."),
])


def _launch(**flags):
    """The engine's `Launch` (imported when a command runs: it loads torch, which the CLI's start does not)."""
    from ..engine.launch import Launch

    return Launch(**flags)


@dataclass(frozen=True)
class ModelOptions:
    """Which model of a checkpoint a command runs (`which`: teacher or student), and the config it is
    built with: the preset or config file, else (neither given) the checkpoint's own."""

    which: str = "teacher"
    preset: Optional[str] = None
    config_file: Optional[Path] = None


# The commands that run a checkpoint (eval, predict, pseudo-label, export).
MODEL = OptionGroup(ModelOptions, {"which": (ModelOpt, "teacher"), "preset": (PresetOpt, None),
                                   "config_file": (ConfigFileOpt, None)})

# Where a command's workers run; the command gets an `engine.launch.Launch`.
LAUNCH = OptionGroup(_launch, {
    "num_gpus": (Annotated[int, typer.Option(
        "--num-gpus", help="Processes per machine (GPUs; on a CPU-only machine, CPU workers).")], 1),
    "num_machines": (Annotated[int, typer.Option("--num-machines", help="Machines taking part.")], 1),
    "machine_rank": (Annotated[int, typer.Option("--machine-rank", help="Rank of this machine.")], 0),
    "dist_url": (Annotated[str, typer.Option(
        "--dist-url", help="Rendezvous URL of process 0 (detectron2's meaning); 'auto' on one machine.")], "auto"),
})
