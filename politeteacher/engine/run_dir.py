"""Run folders: where a run goes by default, the guard against overwriting one, and finding runs again.

A run folder holds everything a run wrote (resolved config, checkpoints, metrics, TensorBoard events,
curves), so the next command can be pointed at it. Starting into a folder that already holds a run
needs `--resume` (continue it) or `--force` (start over: its run files are deleted, other files kept).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Iterable, List, Optional

from ..errors import PoliteTeacherError

logger = logging.getLogger(__name__)

RUNS_ROOT = Path("runs")
# detectron2's default OUTPUT_DIR; a config that keeps it gets `runs/<kind>/<name>` instead.
D2_DEFAULT_OUTPUT_DIRS = ("./output", "output", "")

# What a training run writes into its folder (glob patterns); `--force` removes exactly these.
RUN_ARTIFACTS = (
    "model_*.pth",
    "*.tmp",
    "last_checkpoint",
    "metrics.json",
    "events.out.tfevents.*",
    "config.yaml",
    "log.txt*",
    "curves.png",
    "eval_results.json",
    "coco_instances_results.json",
    "instances_predictions.pth",
    "inference",
)


def default_run_dir(output_dir: str, kind: str, name: str, root: Path = RUNS_ROOT) -> Path:
    """`output_dir` unless it is detectron2's default './output', then `runs/<kind>/<name>`."""
    if output_dir in D2_DEFAULT_OUTPUT_DIRS:
        return (root / kind / name).resolve()
    return Path(output_dir).expanduser().resolve()


def _artifacts(folder: Path) -> List[Path]:
    found: List[Path] = []
    for pattern in RUN_ARTIFACTS:
        found += [p for p in folder.glob(pattern) if p not in found]
    return found


def check_run_dir(output_dir: Path, *, resume: bool, force: bool) -> None:
    """Refuse to start into a non-empty folder unless `resume` or `force` says what to do with it."""
    if resume and force:
        raise PoliteTeacherError("--resume and --force contradict each other; pass one of them")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise PoliteTeacherError(f"output folder {output_dir} is a file; pass another --output-dir")
    if resume or force or not output_dir.exists():
        return
    entries = sorted(p.name for p in output_dir.iterdir())
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise PoliteTeacherError(
            f"output folder {output_dir} is not empty ({shown}); pass --resume to continue that run, "
            "--force to start over (deletes its checkpoints and metrics), or another --output-dir"
        )


def prepare_run_dir(output_dir: Path, *, resume: bool, force: bool) -> Path:
    """Check the folder (see `check_run_dir`), then create it. With `force`, delete the previous run's
    files (only those a run writes, see RUN_ARTIFACTS); with `resume`, remove stale `*.tmp` files
    left by a killed save. Call it on the launching process, after the config has been validated."""
    output_dir = Path(output_dir)
    check_run_dir(output_dir, resume=resume, force=force)
    if output_dir.is_dir():
        if force:
            removed = _artifacts(output_dir)
            for p in removed:
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
            if removed:
                logger.info("--force: removed %d files of the previous run in %s", len(removed), output_dir)
        elif resume:
            for p in output_dir.glob("*.tmp"):
                p.unlink(missing_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    return output_dir


def has_checkpoint(output_dir: Path) -> bool:
    return (Path(output_dir) / "last_checkpoint").is_file()


def run_config(weights: Path) -> Optional[Path]:
    """The `config.yaml` written next to a checkpoint by the run that made it, if any."""
    cfg = Path(weights).expanduser().absolute().parent / "config.yaml"
    return cfg if cfg.is_file() else None


def latest_run_weights(root: Path = RUNS_ROOT, names: Iterable[str] = ("model_best.pth", "model_final.pth")) -> Optional[Path]:
    """The newest run under `root` (by its newest checkpoint) and, in it, the first of `names` found."""
    root = Path(root)
    if not root.is_dir():
        return None
    names = list(names)
    runs = {}
    for name in names:
        for p in root.rglob(name):
            if p.is_file():
                mtime = p.stat().st_mtime
                runs[p.parent] = max(runs.get(p.parent, 0.0), mtime)
    if not runs:
        return None
    newest = max(runs, key=runs.get)
    for name in names:
        if (newest / name).is_file():
            return newest / name
    return None
