"""Checkpoints that survive a kill, and the starting weights of a run.

`AtomicCheckpointer` is detectron2's `DetectionCheckpointer` whose files are written to `name.pth.tmp`,
fsynced and renamed over the target, so an interrupted save never leaves a broken or half-overwritten
file. It saves whatever module it is given: a CenterMask model, or a wrapper holding two models (keys
then carry the attribute names, e.g. `modelTeacher.` / `modelStudent.`).

The hooks that write them each period are in `hooks.py`.

Two kinds of file: the periodic `model_<iter>.pth`, which `--resume` reads, hold the whole trainer state
(optimiser moments, scheduler, hooks: two thirds of the file with AdamW); `model_best.pth` and
`model_final.pth` are *lean*, what inference needs: the weights (both models of a Polite Teacher run),
the iteration, the run's config (YAML text) and its classes (`LEAN_KEYS`). The last iteration is always
also written as a periodic file, so a finished run can still be resumed for more iterations.
`strip_checkpoint` makes a lean file of any checkpoint.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from .. import pretrained  # noqa: F401  (registers the politeteacher:// prefix of shipped weights)
from ..data.classes import class_metadata
from ..errors import PoliteTeacherError
from ..modeling.weights import check_model_zoo_pickle, extract_model_state_dict, load_pretrained_weights, weights_file
from .run_dir import run_config
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


__all__ = [
    "AtomicCheckpointer",
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
        check_model_zoo_pickle(local)
    return local


def _local_weights(weights: str) -> str:
    if "://" in weights:
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
    return weights_file(weights)


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
        DetectionCheckpointer(model).load(weights, checkpointables=[])
        return
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
    if which not in ("both", "teacher", "student"):
        raise PoliteTeacherError(f"--model must be both, teacher or student, got '{which}'")
    src = Path(weights_file(src))
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
