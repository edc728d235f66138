"""What a training run writes as it goes: metrics.json, TensorBoard events, and progress a person can follow.

One iteration numbering everywhere: iteration i is the (i+1)-th step, 0-based as detectron2 counts
and names checkpoints (model_0000299.pth holds the model after 300 steps). The console line, the
records of metrics.json, TensorBoard's steps and the plots all use it; the evaluation after the
last step is recorded at the last iteration (MAX_ITER - 1).

- `ProgressPrinter`: one log line every SOLVER.LOG_PERIOD iterations:
  `iter 39 (40/300, 13%)  eta 0:02:10  total_loss 2.41  loss_fcos_cls 0.98 ...  lr 0.0080  0.51 s/it`
- `EvalProgress`: for an evaluation what `hooks.ProgressBar` is for training: a bar on a terminal,
  else a line at the start and the end.
- `build_writers(output_dir, max_iter, log_period)`: the printer, `metrics.json` (`MetricsWriter`) and
  TensorBoard events (`TensorboardWriter`), for `hooks.PeriodicWriter`.
- `trim_metrics(path, last_iteration)`: what `--resume` does to metrics.json before training on.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch
from detectron2.utils import comm
from detectron2.utils.events import (
    CommonMetricPrinter,
    EventWriter,
    JSONWriter,
    TensorboardXWriter,
    get_event_storage,
)
from tqdm import tqdm

from ..io import atomic_write_text, reporting_full_disk
from .launch import console_above_bar

METRICS_FILE = "metrics.json"


def _record_line(record: dict) -> str:
    """One strict-JSON line: NaN and infinity (e.g. the AP of a size no object has) become null."""
    finite = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    return json.dumps(finite, sort_keys=True, allow_nan=False) + "\n"


def _unwritten(written: Dict[str, int], window_size: int) -> Dict[int, Dict[str, float]]:
    """The storage's latest scalars not written yet, by iteration; marks them written. Tracked per
    key, not per iteration: the final evaluation is recorded at the last iteration, whose losses
    were written already."""
    by_iter: Dict[int, Dict[str, float]] = defaultdict(dict)
    for k, (v, it) in get_event_storage().latest_with_smoothing_hint(window_size).items():
        if it > written.get(k, -1):
            by_iter[it][k] = v
            written[k] = it
    return by_iter


class MetricsWriter(JSONWriter):
    """detectron2's JSONWriter (the latest scalars of each iteration, one JSON record per line,
    appended to metrics.json) writing strict JSON (`_record_line`). The file is opened at the first
    write, so that a resumed run can trim it before (`trim_metrics`); a full disk is a NoSpaceError."""

    def __init__(self, json_file: str, window_size: int = 20):
        # Not JSONWriter.__init__, which opens the file.
        self._path = Path(json_file)
        self._window_size = window_size
        self._written: Dict[str, int] = {}
        self._file_handle = None

    def write(self) -> None:
        by_iter = _unwritten(self._written, self._window_size)
        if not by_iter:
            return
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


class TensorboardWriter(TensorboardXWriter):
    """detectron2's TensorboardXWriter, writing each scalar once per iteration as `MetricsWriter` does
    (so TensorBoard shows the final evaluation at the last iteration, as metrics.json does)."""

    def __init__(self, log_dir: str, window_size: int = 20, **kwargs):
        super().__init__(log_dir, window_size, **kwargs)
        self._written: Dict[str, int] = {}

    def write(self) -> None:
        for it, scalars in sorted(_unwritten(self._written, self._window_size).items()):
            for k, v in scalars.items():
                self._writer.add_scalar(k, v, it)
        storage = get_event_storage()
        # Images and histograms as detectron2's writer: the storage keeps them for this writer only.
        if storage._vis_data:
            for name, img, step in storage._vis_data:
                self._writer.add_image(name, img, step)
            storage.clear_images()
        if storage._histograms:
            for params in storage._histograms:
                self._writer.add_histogram_raw(**params)
            storage.clear_histograms()


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


def fmt_loss(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else "-"


# Pseudo-label statistics the SSL line shows (when logged; absent or NaN shows nothing / "-").
PSEUDO_ON_LINE = (("pseudo/boxes_per_image", "pseudo/img"), ("pseudo/valid_mask_fraction", "valid_masks"))


class ProgressPrinter(CommonMetricPrinter):
    """detectron2's CommonMetricPrinter, shorter: the iteration (as in metrics.json), the steps done of
    MAX_ITER and the percentage, the losses except `hidden` ones (Polite Teacher's zero-weighted pseudo
    losses), pseudo-labels per image and the valid-mask fraction when logged, the LR and the speed."""

    def __init__(self, max_iter: int, window_size: int = 20, hidden: Sequence[str] = ()):
        super().__init__(max_iter, window_size)
        self.logger = logging.getLogger("politeteacher.train")
        self._hidden = set(hidden)

    def write(self) -> None:
        storage = get_event_storage()
        it = storage.iter
        # After training (storage.iter == max_iter) or this iteration was written already: after_step
        # was interrupted (Ctrl-C) after this writer, and after_train writes again.
        if it >= self._max_iter or (self._last_write is not None and self._last_write[0] == it):
            return
        hist = storage.histories()

        def median(k):
            return hist[k].median(storage.count_samples(k, self._window_size))

        losses = [k for k in hist if "loss" in k and k not in self._hidden]
        losses.sort(key=lambda k: (k != "total_loss", k))
        done = it + 1
        parts = [f"iter {it} ({done}/{self._max_iter}, {100 * done // self._max_iter}%)"]
        eta = self._get_eta(storage)
        if eta:
            parts.append(f"eta {eta}")
        parts += [f"{k} {fmt_loss(median(k))}" for k in losses]
        parts += [f"{short} {fmt_loss(hist[k].latest())}" for k, short in PSEUDO_ON_LINE if k in hist]
        if "lr" in hist:
            parts.append(f"lr {hist['lr'].latest():.5g}")
        if "time" in hist:
            parts.append(f"{hist['time'].global_avg():.3g} s/it")
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            parts.append(f"max_mem {torch.cuda.max_memory_allocated() / 2**20:.0f}M")
        self.logger.info("  ".join(parts))


class EvalProgress:
    """Progress of one evaluation: `callbacks` for detectron2's `inference_on_dataset` draw a tqdm bar
    over the batches on a terminal (main process), or log a line at the start; `done()` logs the time
    taken, COCOeval included."""

    def __init__(self, what: str, total: int, enabled: Optional[bool] = None):
        self.what, self.total = what, total
        self.enabled = sys.stderr.isatty() and comm.is_main_process() if enabled is None else enabled
        self._bar = self._above = None
        self._start = time.perf_counter()
        self.logger = logging.getLogger("politeteacher.eval")

    @property
    def callbacks(self) -> dict:
        return {"on_start": self._on_start, "after_inference": self._step, "on_end": self._close}

    def _on_start(self) -> None:
        self._start = time.perf_counter()
        if not self.enabled:
            self.logger.info("Evaluating %s: %d batches", self.what, self.total)
            return
        self._above = console_above_bar()
        self._above.__enter__()
        self._bar = tqdm(total=self.total, desc=f"eval {self.what}", unit="batch", dynamic_ncols=True, leave=False)

    def _step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._above.__exit__(None, None, None)
            self._bar = self._above = None

    def done(self) -> None:
        self._close()
        self.logger.info("Evaluated %s in %.1f s", self.what, time.perf_counter() - self._start)


def build_writers(output_dir: str, max_iter: int, log_period: int = 20, hidden: Sequence[str] = ()) -> List[EventWriter]:
    """Progress lines (without the `hidden` losses), `output_dir/metrics.json` and TensorBoard events
    in `output_dir`."""
    window = max(1, min(20, log_period))
    return [
        ProgressPrinter(max_iter, window_size=window, hidden=hidden),
        MetricsWriter(f"{output_dir}/{METRICS_FILE}", window_size=window),
        TensorboardWriter(output_dir, window_size=window),
    ]
