"""What a training run writes as it goes: metrics.json, TensorBoard events, and progress a person can follow.

- `ProgressPrinter`: one log line every SOLVER.LOG_PERIOD iterations:
  `iter 40/300 (13%)  eta 0:02:10  total_loss 2.41  loss_fcos_cls 0.98 ...  lr 0.0080  0.51 s/it`
- `ProgressBar`: a tqdm bar on the main process when stderr is a terminal; log lines are printed above it.
- `build_writers(output_dir, max_iter, log_period)`: the printer, `metrics.json` (`MetricsWriter`) and
  TensorBoard events (TensorboardXWriter), for `hooks.PeriodicWriter`.
- `trim_metrics(path, last_iteration)`: what `--resume` does to metrics.json before training on.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import List, Optional

import torch
from detectron2.engine import hooks
from detectron2.utils.events import (
    CommonMetricPrinter,
    EventWriter,
    JSONWriter,
    TensorboardXWriter,
    get_event_storage,
)

from .checkpoint import atomic_write_text, reporting_full_disk
from .launch import LOGGER_NAMES

METRICS_FILE = "metrics.json"


def _record_line(record: dict) -> str:
    """One strict-JSON line: NaN and infinity (e.g. the AP of a size no object has) become null."""
    finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    return json.dumps(finite, sort_keys=True, allow_nan=False) + "\n"


class MetricsWriter(JSONWriter):
    """detectron2's JSONWriter (the latest scalars of each iteration, one JSON record per line,
    appended to metrics.json) writing strict JSON (`_record_line`). The file is opened at the first
    write, so that a resumed run can trim it before (`trim_metrics`); a full disk is a NoSpaceError."""

    def __init__(self, json_file: str, window_size: int = 20):
        # Not JSONWriter.__init__, which opens the file.
        self._path = Path(json_file)
        self._window_size = window_size
        self._last_write = -1
        self._file_handle = None

    def write(self) -> None:
        storage = get_event_storage()
        by_iter = defaultdict(dict)
        for k, (v, it) in storage.latest_with_smoothing_hint(self._window_size).items():
            if it > self._last_write:  # not written yet
                by_iter[it][k] = v
        if not by_iter:
            return
        self._last_write = max(by_iter)
        lines = "".join(_record_line({**by_iter[it], "iteration": it}) for it in sorted(by_iter))
        with reporting_full_disk(self._path):
            if self._file_handle is None:
                self._file_handle = open(self._path, "a")
            self._file_handle.write(lines)
            self._file_handle.flush()
            os.fsync(self._file_handle.fileno())

    def close(self) -> None:
        if self._file_handle is not None:
            self._file_handle.close()


def trim_metrics(path: Path, last_iteration: int) -> None:
    """Keep the records of metrics.json up to `last_iteration` (the resumed checkpoint's): a resumed
    run writes the later iterations again. Lines cut short by a kill are dropped and the NaN literals
    of older versions become null. Rewritten atomically, only when something changes."""
    path = Path(path)
    if not path.is_file():
        return
    text = path.read_text()
    kept = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("iteration", math.inf) <= last_iteration:
            kept.append(_record_line(record))
    if "".join(kept) != text:
        atomic_write_text(path, "".join(kept))


def _fmt(v: float) -> str:
    return f"{v:.4g}"


class ProgressPrinter(CommonMetricPrinter):
    """detectron2's CommonMetricPrinter, shorter and with `iter/max` and the percentage."""

    def __init__(self, max_iter: int, window_size: int = 20):
        super().__init__(max_iter, window_size)
        self.logger = logging.getLogger("politeteacher.train")

    def write(self) -> None:
        storage = get_event_storage()
        it = storage.iter
        # Training finished, or this iteration was written already: after_step was interrupted
        # (Ctrl-C) after this writer, and after_train writes again (detectron2's ETA would divide by 0).
        if it == self._max_iter or (self._last_write is not None and self._last_write[0] == it):
            return
        hist = storage.histories()

        def median(k):
            return hist[k].median(storage.count_samples(k, self._window_size))

        losses = [k for k in hist if "loss" in k]
        losses.sort(key=lambda k: (k != "total_loss", k))
        parts = [f"iter {it + 1}/{self._max_iter} ({100 * (it + 1) // self._max_iter}%)"]
        eta = self._get_eta(storage)
        if eta:
            parts.append(f"eta {eta}")
        parts += [f"{k} {_fmt(median(k))}" for k in losses]
        if "lr" in hist:
            parts.append(f"lr {hist['lr'].latest():.5g}")
        if "time" in hist:
            parts.append(f"{hist['time'].global_avg():.3g} s/it")
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            parts.append(f"max_mem {torch.cuda.max_memory_allocated() / 2**20:.0f}M")
        self.logger.info("  ".join(parts))


class ProgressBar(hooks.HookBase):
    """A tqdm bar over the iterations, shown only when stderr is a terminal (never in logs or CI).

    While it is shown, the run's log lines are routed through tqdm so the bar stays at the bottom.
    """

    def __init__(self, enabled: Optional[bool] = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar = None
        self._redirect = None

    def before_train(self):
        if not self.enabled:
            return
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._redirect = logging_redirect_tqdm([logging.getLogger(n) for n in LOGGER_NAMES])
        self._redirect.__enter__()
        self._bar = tqdm(total=self.trainer.max_iter, initial=self.trainer.start_iter,
                         unit="it", dynamic_ncols=True, leave=True)

    def after_step(self):
        if self._bar is None:
            return
        self._bar.update(1)
        hist = self.trainer.storage.histories()
        if "total_loss" in hist and "lr" in hist:
            self._bar.set_postfix(loss=_fmt(hist["total_loss"].median(20)),
                                  lr=f"{hist['lr'].latest():.3g}", refresh=False)

    def after_train(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None


def build_writers(output_dir: str, max_iter: int, log_period: int = 20) -> List[EventWriter]:
    """Progress lines, `output_dir/metrics.json` and TensorBoard events in `output_dir`."""
    window = max(1, min(20, log_period))
    return [
        ProgressPrinter(max_iter, window_size=window),
        MetricsWriter(f"{output_dir}/{METRICS_FILE}", window_size=window),
        TensorboardXWriter(output_dir, window_size=window),
    ]


def build_progress_hooks(cfg, max_iter: int) -> List[hooks.HookBase]:
    """Writers every SOLVER.LOG_PERIOD iterations (and at the end) plus the terminal bar; register
    them last, after the eval hooks, so evaluation results reach metrics.json at their iteration.
    Main process only (others get [])."""
    from detectron2.utils import comm

    if not comm.is_main_process():
        return []
    period = max(1, int(cfg.SOLVER.LOG_PERIOD))
    return [
        hooks.PeriodicWriter(build_writers(cfg.OUTPUT_DIR, max_iter, period), period=period),
        ProgressBar(),
    ]
