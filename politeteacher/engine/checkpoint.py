"""Checkpoints that survive a kill, and the hooks that write them.

`AtomicCheckpointer` is detectron2's `DetectionCheckpointer` whose files are written to `name.pth.tmp`,
fsynced and renamed over the target, so an interrupted save never leaves a broken or half-overwritten
file. It saves whatever module it is given: a CenterMask model, or a wrapper holding two models (keys
then carry the attribute names, e.g. `modelTeacher.` / `modelStudent.`).

`build_checkpoint_hooks` gives the periodic checkpointer (keeping the newest
`SOLVER.MAX_CHECKPOINTS_KEPT` files, surviving resumes) and the best-metric checkpointer; both are
stateful through the trainer's checkpoint, so a resumed run keeps counting where it stopped.

Two kinds of file: the periodic `model_<iter>.pth`, which `--resume` reads, hold the whole trainer state
(optimiser moments, scheduler, hooks: two thirds of the file with AdamW); `model_best.pth` and
`model_final.pth` are *lean*, what inference needs: the weights (both models of a Polite Teacher run),
the iteration, the run's config (YAML text) and its classes (`LEAN_KEYS`). The last iteration is always
also written as a periodic file, so a finished run can still be resumed for more iterations.
`strip_checkpoint` makes a lean file of any checkpoint.
"""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import hooks
from detectron2.utils import comm

from .. import pretrained  # noqa: F401  (registers the politeteacher:// prefix of shipped weights)
from ..errors import PoliteTeacherError
from ..io import atomic_write, atomic_write_text

logger = logging.getLogger(__name__)

# File names in a run folder (`run_dir.run_files` knows them all).
LAST_CHECKPOINT = "last_checkpoint"
FINAL_NAME = "model_final"
BEST_NAME = "model_best"
PERIODIC_PREFIX = "model"
# What a lean checkpoint holds besides "model" (see the module doc): strings and lists, no trainer state.
LEAN_KEYS = ("iteration", "config", "classes", "category_ids")


class AtomicCheckpointer(DetectionCheckpointer):
    """`DetectionCheckpointer` with atomic saves.

    `save(name, tag_last=False)` writes a file without pointing `last_checkpoint` at it (used for
    `model_best` and `model_final`, so that `--resume` always continues from the newest periodic
    checkpoint); `save(name, lean=True)` writes the weights and what inference needs only (module doc).
    """

    _resuming: Optional[str] = None  # the checkpoint `resume` is loading

    def save(self, name: str, *, tag_last: bool = True, lean: bool = False, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data: Dict[str, Any] = {"model": self.model.state_dict()}
        if lean:
            data.update(self._inference_info())
        else:
            for key, obj in self.checkpointables.items():
                data[key] = obj.state_dict()
        data.update(kwargs)

        basename = f"{name}.pth"
        os.makedirs(self.save_dir, exist_ok=True)
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write(save_file, lambda f: torch.save(data, f))
        if tag_last:
            self.tag_last_checkpoint(basename)

    def _inference_info(self) -> Dict[str, Any]:
        """The run's config and classes, from the trainer's config (nothing without a trainer)."""
        cfg = getattr(self.checkpointables.get("trainer"), "cfg", None)
        if cfg is None:
            return {}
        from ..data.classes import class_metadata

        names, to_dataset_id = class_metadata(cfg)
        return {"config": cfg.dump(), "classes": names, "category_ids": [to_dataset_id[i] for i in range(len(names))]}

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, LAST_CHECKPOINT), last_filename_basename)

    def resume(self, path: str) -> None:
        """Load everything from the checkpoint at `path` to continue its run. Unlike `load`, which
        skips what does not fit with a warning, a checkpoint of another model (or optimiser) is a
        PoliteTeacherError: the run was resumed with another config than its own."""
        self._resuming = path
        try:
            self.load(path)
        except ValueError as e:  # the optimiser's parameter groups are another model's
            raise self._not_this_model(path, " ".join(str(e).split())) from e
        finally:
            self._resuming = None

    def _load_model(self, checkpoint: Dict[str, Any]):
        incompatible = super()._load_model(checkpoint)
        if self._resuming:
            wrong = [f"{k} {tuple(a)} there, {tuple(b)} here" for k, a, b in incompatible.incorrect_shapes]
            wrong += [f"{k} missing" for k in incompatible.missing_keys]
            wrong += [f"{k} not in this model" for k in incompatible.unexpected_keys]
            if wrong:
                raise self._not_this_model(self._resuming, f"{len(wrong)} weights differ, e.g. {wrong[0]}")
        return incompatible

    @staticmethod
    def _not_this_model(path, detail: str) -> PoliteTeacherError:
        return PoliteTeacherError(
            f"{path} does not fit the model of this config ({detail}); resume with the config of the run "
            "that wrote it (without --preset and --config-file, its config.yaml is used), or start over with --force"
        )


_PERIODIC = re.compile(r"^(?P<prefix>.+)_(?P<iter>\d{7})\.pth$")


def periodic_checkpoints(save_dir: os.PathLike | str, prefix: str = PERIODIC_PREFIX) -> List[Path]:
    """The periodic checkpoints `<prefix>_<7-digit iteration>.pth` in a folder, oldest first."""
    found = []
    for p in Path(save_dir).glob(f"{prefix}_*.pth"):
        m = _PERIODIC.match(p.name)
        if m and m.group("prefix") == prefix:
            found.append((int(m.group("iter")), p))
    return [p for _, p in sorted(found)]


class PeriodicCheckpointer(hooks.PeriodicCheckpointer):
    """detectron2's periodic checkpoint hook, keeping the newest `max_to_keep` periodic files.

    Retention looks at the folder rather than at the files saved by this process, so checkpoints
    written before a `--resume` count too. `model_final.pth` and `model_best.pth` are never removed.

    After the last iteration it writes the lean `model_final.pth` and then the periodic file of that
    iteration, which `last_checkpoint` names (a kill between the two leaves the previous periodic file
    as the one to resume from, and the last iterations are trained again).
    """

    def __init__(self, checkpointer, period: int, max_iter: Optional[int] = None,
                 max_to_keep: Optional[int] = None, file_prefix: str = PERIODIC_PREFIX):
        super().__init__(checkpointer, period, max_iter=max_iter, max_to_keep=None, file_prefix=file_prefix)
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.keep = max_to_keep

    def step(self, iteration: int, **kwargs: Any) -> None:
        iteration = int(iteration)
        state = {"iteration": iteration, **kwargs}
        last = self.max_iter is not None and iteration >= self.max_iter - 1
        if last:
            self.checkpointer.save(f"{self.file_prefix}_final", tag_last=False, lean=True, **state)
        if last or (iteration + 1) % self.period == 0:
            self.checkpointer.save(f"{self.file_prefix}_{iteration:07d}", **state)
            if self.keep is not None:
                self.prune()

    def prune(self) -> None:
        if not self.checkpointer.save_to_disk or not self.checkpointer.save_dir:
            return
        files = periodic_checkpoints(self.checkpointer.save_dir, self.file_prefix)
        for old in files[: max(0, len(files) - self.keep)]:
            logger.info("Removing old checkpoint %s (keeping the newest %d)", old, self.keep)
            old.unlink(missing_ok=True)


class BestCheckpointer(hooks.BestCheckpointer):
    """detectron2's best-metric checkpointer, whose best value is part of the trainer's state.

    Without that, a resumed run would overwrite `model_best.pth` with its first (possibly worse)
    evaluation. It also does not move `last_checkpoint`, so `--resume` follows the periodic files.
    """

    def _save_best(self, iteration: int) -> None:
        self._checkpointer.save(self._file_prefix, tag_last=False, lean=True, iteration=iteration)

    def _best_checking(self):
        metric_tuple = self.trainer.storage.latest().get(self._val_metric)
        if metric_tuple is None:
            self._logger.warning(
                f"metric {self._val_metric} was not computed; no {self._file_prefix}.pth this time"
            )
            return
        value, metric_iter = metric_tuple
        if math.isnan(value) or math.isinf(value):
            return
        if self.best_metric is None or self._compare(value, self.best_metric):
            self._save_best(metric_iter)
            self._logger.info(
                f"{self._file_prefix}.pth: {self._val_metric} = {value:0.4f} at iteration {metric_iter}"
            )
            self._update_best(value, metric_iter)

    def state_dict(self) -> Dict[str, Any]:
        if self.best_metric is None:
            return {}
        return {"best_metric": self.best_metric, "best_iter": self.best_iter}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.best_metric = state_dict.get("best_metric")
        self.best_iter = state_dict.get("best_iter")


def best_metric_key(cfg, metric: str = "segm/AP") -> str:
    """The storage key of `metric` as written by the eval hook: prefixed by the dataset name when
    `DATASETS.TEST` holds several datasets (the first one decides)."""
    if len(cfg.DATASETS.TEST) > 1:
        return f"{cfg.DATASETS.TEST[0]}/{metric}"
    return metric


def build_checkpoint_hooks(
    cfg,
    checkpointer: AtomicCheckpointer,
    best_metric: Optional[str] = "segm/AP",
    mode: str = "max",
) -> List[hooks.HookBase]:
    """Checkpoint hooks for a trainer; register them *after* the eval hook.

    - `model_<iter>.pth` every SOLVER.CHECKPOINT_PERIOD iterations, newest SOLVER.MAX_CHECKPOINTS_KEPT kept;
      `model_final.pth` after the last iteration;
    - `model_best.pth` whenever `best_metric` (a key of the eval results, e.g. "segm/AP" or
      "teacher/segm/AP") improves, checked at every TEST.EVAL_PERIOD and at the end.

    Only the main process gets hooks (the others return []), as in detectron2.
    """
    if not comm.is_main_process():
        return []
    out: List[hooks.HookBase] = []
    if best_metric:
        out.append(BestCheckpointer(cfg.TEST.EVAL_PERIOD, checkpointer, best_metric, mode, BEST_NAME))
    keep = cfg.SOLVER.MAX_CHECKPOINTS_KEPT
    out.append(PeriodicCheckpointer(checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD,
                                    max_to_keep=keep if keep and keep > 0 else None))
    return out


__all__ = [
    "AtomicCheckpointer",
    "BestCheckpointer",
    "PeriodicCheckpointer",
    "best_metric_key",
    "build_checkpoint_hooks",
    "load_initial_weights",
    "resolve_weights",
    "checkpoint_config",
    "load_cpu",
    "strip_checkpoint",
    "LEAN_KEYS",
    "periodic_checkpoints",
    "BEST_NAME",
    "FINAL_NAME",
    "LAST_CHECKPOINT",
]


def resolve_weights(weights: str) -> str:
    """A local file for `weights`: '' stays '' (from scratch), a URL is downloaded into detectron2's
    cache (offline: a one-line PoliteTeacherError saying what to pass instead), a path must exist.
    Call it once on the launching process, so workers never download. A ``.pkl`` must be a
    detectron2 / Caffe2 model-zoo pickle (checked here, before any run folder is touched)."""
    if not weights:
        return ""
    local = _local_weights(weights)
    if local.endswith(".pkl"):
        from ..modeling.weights import check_model_zoo_pickle

        check_model_zoo_pickle(local)
    return local


def _local_weights(weights: str) -> str:
    if "://" in weights:
        from detectron2.utils.file_io import PathManager

        try:
            local = PathManager.get_local_path(weights)
        except Exception as e:  # network errors come in many types
            raise PoliteTeacherError(
                f"could not fetch weights {weights} ({type(e).__name__}); download the file and pass "
                "--weights /path/to/file, or --weights none to train from scratch"
            ) from None
        if not os.path.isfile(local):
            raise PoliteTeacherError(
                f"could not fetch weights {weights}; pass --weights /path/to/file, or --weights none"
            )
        return local
    path = Path(weights).expanduser()
    if not path.is_file():
        raise PoliteTeacherError(f"weights file {weights} not found; pass a .pth/.pkl checkpoint, or none")
    return str(path.resolve())


def load_initial_weights(model: torch.nn.Module, weights: str, which: str = "teacher") -> None:
    """Starting weights of a run (not a resume):
    - '' : nothing, the model keeps its initialisation (from scratch);
    - `*.pkl` (detectron2 / Caffe2 model zoo, e.g. ImageNet R-50): detectron2's name-matching load,
      missing heads are reported and keep their initialisation;
    - anything else (`*.pth`): a CenterMask checkpoint (plain, detectron2, or two-model, `which`
      picking the teacher or student), loaded strictly; a checkpoint of another model is an error;
    - a `*.pth` holding bottom-up weights only (CenterMask2's ImageNet VoVNet / MobileNetV2 files):
      loaded strictly into the backbone's bottom-up network, FPN and heads keep their initialisation.
    """
    if not weights:
        logger.info("No initial weights: training from scratch")
        return
    if weights.endswith(".pkl"):
        target = model.module if hasattr(model, "module") else model
        DetectionCheckpointer(target).load(weights, checkpointables=[])
        return
    from ..modeling import load_pretrained_weights

    loaded = load_pretrained_weights(model, weights, which=which)
    if loaded["part"] == "backbone":
        logger.info("Loaded %d backbone tensors from %s", loaded["loaded"], weights)
    else:
        logger.info("Loaded %d tensors from %s (%s)", loaded["loaded"], weights, which)


def load_cpu(path: os.PathLike | str) -> Any:
    """A checkpoint file's content on the CPU, tensors memory-mapped (nothing is read twice that is not
    used) where the file's format allows it: files of torch < 1.6 (CenterMask2's era) do not."""
    try:
        return torch.load(path, map_location="cpu", mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
        return torch.load(path, map_location="cpu")


def _load_cpu(path: Path) -> Any:
    """`load_cpu`, or a one-line error if the file is unreadable."""
    try:
        return load_cpu(path)
    except Exception as e:  # any file can be passed: whatever fails is the reason
        raise PoliteTeacherError(
            f"checkpoint {path} could not be read ({type(e).__name__}); pass a .pth file written by politeteacher "
            "or detectron2"
        ) from e


def checkpoint_config(weights: os.PathLike | str) -> Optional[str]:
    """The run config (YAML text) a lean or stripped checkpoint carries, None when it has none or is
    not a readable checkpoint."""
    try:
        data = load_cpu(weights)
    except Exception:  # not ours to judge here: loading the weights reports it
        return None
    text = data.get("config") if isinstance(data, dict) else None
    return text if isinstance(text, str) else None


def strip_checkpoint(src: os.PathLike | str, dst: Optional[os.PathLike | str] = None,
                     which: str = "both") -> Path:
    """Write the lean form of checkpoint `src` (module doc) to `dst` (default: `<stem>_weights.pth`
    beside it) and return its path. Kept: the weights (all tensors of "model", or of the whole file when
    it is a plain state dict) and LEAN_KEYS; without a "config" in `src`, the `config.yaml` of its run
    folder is embedded, so the file is self-contained. `which` for a two-model (Polite Teacher)
    checkpoint: "both" keeps both models as they are (loadable with --model teacher or student),
    "teacher" / "student" keeps that one as a plain model (half the size). Never overwrites a file."""
    from ..modeling.weights import extract_model_state_dict
    from .run_dir import run_config

    if which not in ("both", "teacher", "student"):
        raise PoliteTeacherError(f"--model must be both, teacher or student, got '{which}'")
    src = Path(src).expanduser()
    if not src.is_file():
        raise PoliteTeacherError(f"checkpoint {src} not found; pass a .pth file")
    dst = Path(dst).expanduser() if dst else src.with_name(f"{src.stem}_weights.pth")
    if dst.exists():
        raise PoliteTeacherError(f"{dst} exists; pass another file to -o (nothing is overwritten)")
    data = _load_cpu(src)
    if not isinstance(data, dict):
        raise PoliteTeacherError(f"checkpoint {src} holds a {type(data).__name__}, not a state dict")
    state = data["model"] if isinstance(data.get("model"), dict) else data
    two_models = any(str(k).startswith(("modelTeacher.", "modelStudent.")) for k in state)
    if which == "both" or not two_models:
        if which != "both":
            logger.info("%s holds one model; --model %s keeps it", src, which)
        weights = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    else:
        weights = dict(extract_model_state_dict(data, which))
    if not weights:
        raise PoliteTeacherError(f"checkpoint {src} holds no weights")
    out: Dict[str, Any] = {"model": {k: v.contiguous().clone() for k, v in weights.items()}}
    out.update({k: data[k] for k in LEAN_KEYS if k in data and state is not data})
    if "config" not in out and run_config(src) is not None:
        out["config"] = run_config(src).read_text()
    dst.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(dst, lambda f: torch.save(out, f))
