"""Starting workers: detectron2's `launch`, plus what each worker sets up before training.

`launch_workers(fn, cfg, Launch(num_gpus, ...))` runs `fn(cfg, *args)` in `num_gpus` processes per machine
(one per GPU; on a machine without GPUs, CPU processes talking over gloo). Each worker first calls
`setup_worker(cfg)`: logging to the console (main process) and `OUTPUT_DIR/log.txt`, the seed
(`SEED + rank`), and, on the CPU, a fair share of the cores. A worker that fails for a reason the
user can act on (bad input, a diverged loss, a full disk) raises a PoliteTeacherError saying what to do.
"""
from __future__ import annotations

import io
import logging
import os
import re
import sys
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from detectron2.engine import create_ddp_model as _d2_create_ddp_model
from detectron2.engine import launch as launch_d2
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from tqdm import tqdm

from ..errors import PoliteTeacherError
from ..io import NoSpaceError, no_space

logger = logging.getLogger(__name__)

# Loggers whose records a run keeps in log.txt. On the console (main process) only the project's own
# lines appear, unless --verbose (see `set_verbose`): the libraries' output is for the log.
LOGGER_NAMES = ("politeteacher", "detectron2", "fvcore", "pycocotools")
# What pycocotools prints during COCOeval is logged under this name (see `prints_to_log`).
PRINTS_LOGGER = "pycocotools"
_FMT = "[%(asctime)s %(name)s]: %(message)s"
# --verbose crosses into worker processes (spawned, with their own logging setup) through the environment.
VERBOSE_ENV = "POLITETEACHER_VERBOSE"

# Warnings the libraries repeat (each worker, each dataset registration) that the console says once, in
# the tool's words: (logger name prefix, start of the library's message, what the console says).
KNOWN_WARNINGS = (
    ("detectron2.data.datasets.coco", "Category ids in annotations are not in [1, #categories]",
     "the category ids of the JSON are not 1..N: classes are numbered in the order of its categories "
     "(predictions and eval results use the JSON's ids)"),
    ("detectron2.solver", "SOLVER.STEPS contains values larger than SOLVER.MAX_ITER",
     "SOLVER.STEPS has steps beyond SOLVER.MAX_ITER: the learning rate is not decayed at those"),
)


def set_verbose(verbose: bool) -> None:
    """Show detectron2's, fvcore's and pycocotools' output on the console too (`--verbose`), or keep
    it to log.txt (the default); for this process and the workers it starts."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


_said: set = set()  # the known warnings the console said already in this run (cleared by close_log_files)
_tqdm_bars = 0  # bars open on the terminal: console lines are then written above them
_prints_outer_stdout = None  # the console's stdout while `prints_to_log` captures sys.stdout


class _StdoutHandler(logging.StreamHandler):
    """The console: writes to whatever `sys.stdout` is at the time of the record (test runners swap
    it), above the progress bar when one is shown. Without --verbose it lets through the project's
    own records and the libraries' errors, and says each of KNOWN_WARNINGS once in the tool's words;
    records logged with `extra={"log_only": True}` are for log.txt."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return _prints_outer_stdout or sys.stdout

    @stream.setter
    def stream(self, value):
        pass

    def handle(self, record: logging.LogRecord) -> bool:
        # detectron2's trainer logs the exception it re-raises; the console shows errors the command
        # reports in one line only that way (log.txt keeps their traceback).
        if record.exc_info and _reported_in_one_line(record.exc_info[1]):
            return False
        if is_verbose():
            return super().handle(record)
        if getattr(record, "log_only", False):
            return False
        if record.name.startswith("politeteacher") or record.levelno >= logging.ERROR:
            return super().handle(record)
        for prefix, start, words in KNOWN_WARNINGS:
            if record.name.startswith(prefix) and record.getMessage().strip().startswith(start):
                if words not in _said:
                    _said.add(words)
                    said = logging.makeLogRecord({**record.__dict__, "name": "politeteacher",
                                                  "msg": "warning: " + words, "args": ()})
                    return super().handle(said)
        return False

    def emit(self, record: logging.LogRecord) -> None:
        if not _tqdm_bars:
            return super().emit(record)
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:
            self.handleError(record)


@contextmanager
def console_above_bar():
    """While a tqdm bar is on the terminal, console log lines are written above it."""
    global _tqdm_bars
    _tqdm_bars += 1
    try:
        yield
    finally:
        _tqdm_bars -= 1


@contextmanager
def prints_to_log(name: str = PRINTS_LOGGER):
    """What the code inside prints to stdout (pycocotools' COCOeval does) is logged under `name`:
    log.txt, and the console with --verbose, instead of raw lines on the console."""
    global _prints_outer_stdout
    outer = _prints_outer_stdout
    _prints_outer_stdout = outer or sys.stdout
    buffer = io.StringIO()
    try:
        with redirect_stdout(buffer):
            yield
    finally:
        _prints_outer_stdout = outer
        lg = logging.getLogger(name)
        for line in buffer.getvalue().splitlines():
            if line.strip():
                lg.info(line.rstrip())


def _reported_in_one_line(exc: BaseException) -> bool:
    """Errors that end a command with one `error:` line (see `_worker`)."""
    return isinstance(exc, (PoliteTeacherError, FloatingPointError)) or no_space(exc) is not None


def _one_line_error(exc: BaseException, cfg) -> PoliteTeacherError:
    """What to tell the user about a full disk or a diverged loss (a non-finite loss)."""
    full = no_space(exc)
    if full is not None:
        return NoSpaceError(full.filename or cfg.OUTPUT_DIR)
    clip = cfg.SOLVER.CLIP_GRADIENTS
    clipping = (f"a lower SOLVER.CLIP_GRADIENTS.CLIP_VALUE (now {clip.CLIP_VALUE:g})" if clip.ENABLED
                else "SOLVER.CLIP_GRADIENTS.ENABLED True")
    return PoliteTeacherError(
        f"training diverged ({' '.join(str(exc).split())}); lower SOLVER.BASE_LR (now {cfg.SOLVER.BASE_LR:g}), "
        f"set a longer SOLVER.WARMUP_ITERS (now {cfg.SOLVER.WARMUP_ITERS}) or {clipping}"
    )


class _LogFile(logging.FileHandler):
    """log.txt; on a full disk it stops writing, silently: the run stops with one error line at its
    next checkpoint or metrics write, rather than printing a logging error for every line."""

    full = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.full:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if no_space(sys.exc_info()[1]) is not None:
            self.full = True
        else:
            super().handleError(record)


def setup_logging(output_dir: str | None = None, rank: int = 0, console: bool = True) -> None:
    """INFO logging of the project and the libraries to `output_dir/log.txt` (`log.txt.rank<N>` for
    other ranks) and to stdout (main process only; the libraries' lines with --verbose only, see
    `_StdoutHandler`). Calling it again replaces the handlers
    it added before, so several runs in one process don't duplicate lines."""
    formatter = logging.Formatter(_FMT, datefmt="%m/%d %H:%M:%S")
    handlers: list[logging.Handler] = []
    if console and rank == 0:
        h = _StdoutHandler()
        h.setFormatter(formatter)
        handlers.append(h)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        name = "log.txt" if rank == 0 else f"log.txt.rank{rank}"
        h = _LogFile(os.path.join(output_dir, name))
        h.setFormatter(formatter)
        handlers.append(h)
    for name in LOGGER_NAMES:
        lg = logging.getLogger(name)
        for old in [h for h in lg.handlers if getattr(h, "_politeteacher", False)]:
            lg.removeHandler(old)
            old.close()
        lg.setLevel(logging.INFO)
        lg.propagate = False
        for h in handlers:
            h._politeteacher = True  # type: ignore[attr-defined]
            lg.addHandler(h)


def close_log_files() -> None:
    """Detach and close the log files `setup_logging` opened: a run's log.txt records that run only,
    not what a later command in the same process (a notebook, the demo, a test) logs. The known
    warnings may be said again by the next run."""
    _said.clear()
    for name in LOGGER_NAMES:
        lg = logging.getLogger(name)
        for old in [h for h in lg.handlers if isinstance(h, _LogFile)]:
            lg.removeHandler(old)
            old.close()


def setup_worker(cfg) -> None:
    """Per-process setup before building a trainer: logging, seed, CPU threads."""
    rank = comm.get_rank()
    setup_logging(cfg.OUTPUT_DIR, rank)
    seed = cfg.SEED if cfg.SEED >= 0 else None
    seed_all_rng(None if seed is None else seed + rank)
    if cfg.MODEL.DEVICE.startswith("cuda:"):  # one process on the GPU the user named
        torch.cuda.set_device(torch.device(cfg.MODEL.DEVICE))
    if not cfg.MODEL.DEVICE.startswith("cuda"):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, comm.get_local_size())))
        # Denormal floats (tiny weights and Adam moments late in training) make CPU kernels many
        # times slower; flushing them to zero changes nothing a model can tell. numpy computes its
        # float limits once, on first use: done after the flush, that warns, so it is done before.
        np.finfo(np.float32), np.finfo(np.float64)
        torch.set_flush_denormal(True)


def create_ddp_model(model: torch.nn.Module, **kwargs: Any) -> torch.nn.Module:
    """detectron2's `create_ddp_model` (a no-op in one process), correct for CPU models too:
    DistributedDataParallel must get `device_ids=None` for a model on the CPU."""
    if comm.get_world_size() > 1 and "device_ids" not in kwargs:
        param = next(model.parameters(), None)
        if param is None or param.device.type != "cuda":
            kwargs["device_ids"] = None
    return _d2_create_ddp_model(model, **kwargs)


def _worker(fn: Callable, cfg, args: tuple) -> Any:
    setup_worker(cfg)
    try:
        return fn(cfg, *args)
    except Exception as e:
        if isinstance(e, PoliteTeacherError) or not _reported_in_one_line(e):
            raise
        raise _one_line_error(e, cfg) from e


@contextmanager
def _hide_gpus(hide: bool):
    """detectron2's launch picks NCCL whenever torch sees a GPU; CPU workers need gloo."""
    if not hide:
        yield
        return
    old = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = old


@dataclass(frozen=True)
class Launch:
    """Where the workers run: `num_gpus` processes per machine (CPU processes with MODEL.DEVICE cpu)
    on `num_machines` machines; this machine is `machine_rank`; rank 0 listens on `dist_url`."""

    num_gpus: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    dist_url: str = "auto"

    @property
    def world_size(self) -> int:
        return self.num_gpus * self.num_machines


def check_launch(cfg, launch: Launch) -> None:
    """Validate the worker layout (flags, GPUs of this machine) for `cfg`."""
    num_gpus, num_machines = launch.num_gpus, launch.num_machines
    if num_gpus < 1 or num_machines < 1:
        raise PoliteTeacherError("--num-gpus and --num-machines must be at least 1")
    if not 0 <= launch.machine_rank < num_machines:
        raise PoliteTeacherError(f"--machine-rank must be in [0, {num_machines - 1}], got {launch.machine_rank}")
    if num_machines > 1 and launch.dist_url == "auto":
        raise PoliteTeacherError("several machines need --dist-url tcp://<host of rank 0>:<port>, not 'auto'")
    if num_machines > 1 and cfg.SEED < 0:  # each machine would draw its own (see prepare_training_cfg)
        raise PoliteTeacherError("several machines need the same SEED: pass SEED <n> (n >= 0), not a random one")
    world = launch.world_size
    if cfg.MODEL.DEVICE.startswith("cuda:") and world > 1:
        raise PoliteTeacherError(
            f"--device {cfg.MODEL.DEVICE} names one GPU but {world} processes would share it; "
            "pass --device cuda with --num-gpus (pick the GPUs with CUDA_VISIBLE_DEVICES)"
        )
    if cfg.MODEL.DEVICE.startswith("cuda"):
        have = torch.cuda.device_count()
        if num_gpus > have:
            raise PoliteTeacherError(
                f"--num-gpus {num_gpus} but torch sees {have} GPU(s); pass --num-gpus {max(have, 1)}"
                + (" or --device cpu" if have == 0 else "")
            )


# The last line of a worker's traceback for a project error, e.g. "politeteacher.errors.PoliteTeacherError: ...".
_REMOTE_ERROR = re.compile(r"^politeteacher\.[\w.]*Error: (.+)$", re.MULTILINE)


def launch_workers(fn: Callable, cfg, launch: Launch, *args: Any) -> Any:
    """Run `fn(cfg, *args)` in every worker of `launch` (checked beforehand with `check_launch`).
    Returns `fn`'s result when a single process runs it here; with several processes the result
    stays in the workers (write what you need to OUTPUT_DIR). A PoliteTeacherError raised in a
    worker comes back as one."""
    if launch.world_size == 1:
        return _worker(fn, cfg, args)
    try:
        with _hide_gpus(not cfg.MODEL.DEVICE.startswith("cuda")):
            launch_d2(_worker, launch.num_gpus, num_machines=launch.num_machines,
                      machine_rank=launch.machine_rank, dist_url=launch.dist_url, args=(fn, cfg, args))
    except torch.multiprocessing.ProcessRaisedException as e:
        m = _REMOTE_ERROR.search(str(e))
        if m:
            raise PoliteTeacherError(m.group(1).strip()) from None
        raise
    return None
