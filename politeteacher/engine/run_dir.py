"""Run folders: where a run goes by default, what a run writes there, the guard against overwriting
one, the lock that keeps it to one training at a time, and finding runs again.

A run folder holds everything a run wrote (resolved config, checkpoints, metrics, TensorBoard events,
evaluation outputs, curves), so the next command can be pointed at it. Starting into a folder that
already holds a run needs `--resume` (continue it) or `--force` (start over: the files a run writes
are deleted, each named in the log; anything else in the folder is kept).

`RunFolder` is one training start's hold on its folder, on the launching process: it takes the
folder's lock, clears what `--force` or `--resume` clear, and when the start fails before it wrote a
checkpoint it removes what it wrote, so that the folder is left as it was found.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

import yaml

from ..errors import PoliteTeacherError
from ..io import atomic_write

logger = logging.getLogger(__name__)

RUNS_ROOT = Path("runs")
# detectron2's default OUTPUT_DIR; a config that keeps it gets `runs/<kind>/<name>` instead.
D2_DEFAULT_OUTPUT_DIRS = ("./output", "output", "")

CONFIG_FILE = "config.yaml"
LOCK_FILE = ".politeteacher.lock"
INFERENCE_DIR = "inference"
# The files a training run writes into its folder, by exact name: checkpoints (checkpoint.py; with
# the `.tmp` of an atomic write), config.yaml, metrics.json (progress.py), eval_results.json,
# curves.png, log.txt (launch.py) and TensorBoard's event files. `--force` deletes these only.
_CHECKPOINT = re.compile(r"model_(\d{7}|final|best)\.pth")
_RUN_FILE = re.compile(
    rf"({_CHECKPOINT.pattern}|last_checkpoint|config\.yaml|metrics\.json|eval_results\.json|curves\.png)(\.tmp)?"
    r"|log\.txt(\.rank\d+)?|events\.out\.tfevents\.\d+\..+"
)
# What the evaluation during training writes under inference/ (under teacher/ and student/ for
# Polite Teacher), per test dataset: detectron2's COCO evaluator outputs.
_EVAL_FILE = re.compile(
    r"((teacher|student)/)?(?P<dataset>[^/]+)/"
    r"(coco_instances_results\.json|instances_predictions\.pth|(?P=dataset)_coco_format\.json(\.lock)?)"
)


def default_run_dir(output_dir: str, kind: str, name: str, root: Path = RUNS_ROOT) -> Path:
    """`output_dir` unless it is detectron2's default './output', then `runs/<kind>/<name>`."""
    if output_dir in D2_DEFAULT_OUTPUT_DIRS:
        return (root / kind / name).resolve()
    return Path(output_dir).expanduser().resolve()


def run_files(folder: Path) -> List[Path]:
    """The files in `folder` that a training run writes (see _RUN_FILE and _EVAL_FILE), sorted."""
    folder = Path(folder)
    found = [p for p in folder.iterdir() if _RUN_FILE.fullmatch(p.name) and p.is_file()]
    inference = folder / INFERENCE_DIR
    if inference.is_dir():
        found += [p for p in inference.rglob("*")
                  if _EVAL_FILE.fullmatch(p.relative_to(inference).as_posix()) and p.is_file()]
    return sorted(found)


def _remove(files: Iterable[Path], folder: Path) -> List[str]:
    """Delete `files` and then the folders under `folder` they leave empty; their names, relative."""
    names = []
    for p in files:
        p.unlink(missing_ok=True)
        names.append(p.relative_to(folder).as_posix())
        parent = p.parent
        while parent != folder and not any(parent.iterdir()):
            parent.rmdir()
            parent = parent.parent
    return names


def check_run_dir(output_dir: Path, *, resume: bool, force: bool) -> None:
    """Refuse to start into a non-empty folder unless `resume` or `force` says what to do with it."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise PoliteTeacherError(f"output folder {output_dir} is a file; pass another --output-dir")
    if resume or force or not output_dir.exists():
        return
    entries = sorted(p.name for p in output_dir.iterdir() if p.name != LOCK_FILE)
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise PoliteTeacherError(
            f"output folder {output_dir} is not empty ({shown}); pass --resume to continue that run, "
            "--force to start over (deletes the files of the previous run, keeps yours), or another --output-dir"
        )


# The data a resumed run must share with the run it continues (compared with its config.yaml), unless
# `--force` says the change is meant.
DATA_KEYS = (
    "DATASETS.TRAIN", "DATASETS.TEST", "DATASETS.CUSTOM.TRAIN_JSON", "DATASETS.CUSTOM.TRAIN_IMAGES",
    "DATASETS.CUSTOM.VAL_JSON", "DATASETS.CUSTOM.VAL_IMAGES", "DATASETS.SPLIT.FILE", "DATASETS.SPLIT.PERCENT",
    "DATASETS.SPLIT.SEED", "DATASETS.UNLABELED_IMAGE_DIRS",
)


def saved_config(output_dir: Path) -> Optional[dict]:
    """The config.yaml a run wrote into `output_dir`, as a dict (None if there is none)."""
    path = Path(output_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise PoliteTeacherError(
            f"{path} is not valid YAML ({type(e).__name__}); restore it, or start over with --force"
        ) from None
    return data if isinstance(data, dict) else None


def _value(tree, key: str):
    """The value at the dotted `key` of a config (a CfgNode or the dict of its YAML); sequences as lists."""
    for part in key.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return list(tree) if isinstance(tree, (list, tuple)) else tree


def data_changes(cfg, saved: dict) -> List[str]:
    """How the data of `cfg` differ from a run's saved config: ["KEY was X, now Y", ...]."""
    return [f"{key} was {_value(saved, key)!r}, now {_value(cfg, key)!r}"
            for key in DATA_KEYS if _value(saved, key) != _value(cfg, key)]


_HELD_LOCKS: Set[int] = set()  # descriptors of the locks this process holds


def _close_locks_in_child() -> None:
    # A forked child (e.g. a data-loader worker) inherits the descriptors: closed there, a killed
    # trainer's lock does not live on in its children.
    for fd in _HELD_LOCKS:
        os.close(fd)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_close_locks_in_child)


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 1024).decode("utf-8", "replace").strip()


class RunLock:
    """One training per run folder: an exclusive lock (flock) on `<folder>/.politeteacher.lock`,
    which names its holder (pid, host, start). The kernel releases it when its process ends in any
    way, so the lock file a killed training leaves behind is stale and taken over."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: Optional[int] = None
        self._pid = 0

    def acquire(self) -> Optional[str]:
        """Take the lock, or raise a one-line error naming the training that holds it. Returns the
        holder of a stale lock taken over (None if there was none)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                raise PoliteTeacherError(
                    f"run folder {self.folder} is in use by another training ({holder or 'starting'}); "
                    "wait for it to end or stop it, or pass another --output-dir"
                ) from None
            try:  # the holder may have released (and removed) the file while we opened it
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        stale = _holder(fd) or None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                  .encode(), 0)
        self._fd, self._pid = fd, os.getpid()
        _HELD_LOCKS.add(fd)
        return stale

    def release(self) -> None:
        if self._fd is None or self._pid != os.getpid():  # not taken, or by the parent of this process
            return
        self.path.unlink(missing_ok=True)  # before unlocking: a process waiting on it then opens anew
        _HELD_LOCKS.discard(self._fd)
        os.close(self._fd)
        self._fd = None


def _snapshot(folder: Path) -> Dict[str, Tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size) for p in run_files(folder)}


class RunFolder:
    """A training start's hold on its run folder (the launching process; use as a context manager).

    On entry: create the folder, take its lock (`RunLock`), check again that it may be used (a run
    may have ended there since the first check), then with `force` delete the files of the previous
    run (`run_files`), with `resume` the temporary files of a killed save. `notes` says what was
    done, for the run's log. On exit the lock is released. A start that fails (any exception,
    Ctrl-C included) before it wrote a checkpoint removes the files it wrote and restores the
    config.yaml it replaced, so the folder is as it was found (a folder it created is removed).
    """

    def __init__(self, path: Path, *, resume: bool, force: bool):
        self.path = Path(path)
        self.resume, self.force = resume, force
        self.lock = RunLock(self.path)
        self.notes: List[str] = []
        self._created = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self._before: Dict[str, Tuple[int, int]] = {}
        self._config: Optional[bytes] = None

    def __enter__(self) -> "RunFolder":
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            stale = self.lock.acquire()
            if stale:
                self.notes.append(f"took over the lock of a training that is no longer running ({stale})")
            check_run_dir(self.path, resume=self.resume, force=self.force)
            if self.force and not self.resume:
                removed = _remove(run_files(self.path), self.path)
                if removed:
                    self.notes.append(
                        f"--force: removed {len(removed)} files of the previous run: {', '.join(removed)}"
                    )
            elif self.resume:
                _remove([p for p in run_files(self.path) if p.name.endswith(".tmp")], self.path)
            self._before = _snapshot(self.path)
            config = self.path / CONFIG_FILE
            self._config = config.read_bytes() if config.is_file() else None
        except BaseException:
            self._leave(failed=True)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None and not self._wrote_checkpoint():
                self._undo()
        finally:
            self._leave(failed=exc_type is not None)

    def _wrote_checkpoint(self) -> bool:
        return any(_CHECKPOINT.fullmatch(name) and self._before.get(name) != stat
                   for name, stat in _snapshot(self.path).items())

    def _undo(self) -> None:
        written = [p for p in run_files(self.path) if p.relative_to(self.path).as_posix() not in self._before]
        removed = _remove(written, self.path)
        config = self.path / CONFIG_FILE
        if self._config is not None and config.read_bytes() != self._config:
            atomic_write(config, lambda f: f.write(self._config))
            removed.append(f"{CONFIG_FILE} (restored)")
        if removed:
            logger.info("This start failed before its first checkpoint; undone in %s: %s",
                        self.path, ", ".join(removed))

    def _leave(self, failed: bool) -> None:
        self.lock.release()
        for p in self._created if failed else ():  # the folders this start created, if left empty
            if not p.is_dir() or any(p.iterdir()):
                break
            p.rmdir()


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
