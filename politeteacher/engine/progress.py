"""What a training run writes as it goes: metrics.json, TensorBoard events, and progress a person can follow.

- `ProgressPrinter`: one log line every SOLVER.LOG_PERIOD iterations:
  `iter 40/300 (13%)  eta 0:02:10  total_loss 2.41  loss_fcos_cls 0.98 ...  lr 0.0080  0.51 s/it`
- `ProgressBar`: a tqdm bar on the main process when stderr is a terminal; log lines are printed above it.
- `build_writers(output_dir, max_iter, log_period)`: the printer, `metrics.json` (JSONWriter) and
  TensorBoard events (TensorboardXWriter), for `hooks.PeriodicWriter`.
"""
from __future__ import annotations

import logging
import sys
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

from .launch import LOGGER_NAMES

METRICS_FILE = "metrics.json"


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
        if it == self._max_iter:  # training finished; nothing new about progress
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
        JSONWriter(f"{output_dir}/{METRICS_FILE}", window_size=window),
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
