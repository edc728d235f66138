"""Everything a trainer does periodically, as detectron2 hooks, in the order they run after a step.

    IterationTimer, LRScheduler
    FinalEvalAtLastIteration (TEST.EVAL_PERIOD and at the end)  -> "segm/AP", ... in the event storage
    BestCheckpointer (the trainer's best_metric)               -> model_best.pth (lean)
    PeriodicCheckpointer (SOLVER.CHECKPOINT_PERIOD)            -> model_<iter>.pth (newest
                                                                  SOLVER.MAX_CHECKPOINTS_KEPT), model_final.pth
    PeriodicWriter (SOLVER.LOG_PERIOD)                         -> progress lines, metrics.json, TensorBoard
    ProgressBar                                                -> a tqdm bar on a terminal

The checkpoint hooks are stateful through the trainer's checkpoint, so a resumed run keeps counting
(and keeps its best value) where it stopped. Only the main process gets checkpoint and writer hooks.
"""
from __future__ import annotations

import logging
import math
import sys
from typing import Any, Dict, List, Optional, Sequence, TextIO

from detectron2.engine import hooks
from detectron2.utils import comm
from tqdm import tqdm

from .checkpoint import BEST_NAME, FINAL_NAME, PERIODIC_PREFIX, AtomicCheckpointer, periodic_checkpoints
from .launch import console_above_bar
from .progress import build_writers, fmt_loss

logger = logging.getLogger(__name__)


def training_hooks(trainer) -> List[hooks.HookBase]:
    """The hooks of every trainer (`engine.trainer.Trainer`): iteration timer, LR schedule,
    `trainer.evaluate` every TEST.EVAL_PERIOD and at the end, checkpoints (periodic, final, and best
    by `trainer.best_metric`), progress and metric writers (without `trainer.hidden_losses`)."""
    cfg = trainer.cfg
    ret: List[hooks.HookBase] = [hooks.IterationTimer(), hooks.LRScheduler()]
    if cfg.DATASETS.TEST:
        ret.append(FinalEvalAtLastIteration(cfg.TEST.EVAL_PERIOD, trainer.evaluate))
    # After the eval hook: the best checkpoint needs its metric, and the periodic checkpoint then
    # stores the best value seen so far in the trainer state (for --resume).
    best = best_metric_key(cfg, trainer.best_metric) if cfg.DATASETS.TEST else None
    ret += build_checkpoint_hooks(cfg, trainer.checkpointer, best_metric=best)
    ret += build_progress_hooks(cfg, trainer.max_iter, hidden=trainer.hidden_losses)
    return ret


class FinalEvalAtLastIteration(hooks.EvalHook):
    """detectron2's EvalHook, recording the evaluation after training at the last iteration (MAX_ITER - 1,
    whose model it evaluates) rather than at MAX_ITER: one iteration numbering (progress.py)."""

    def after_train(self):
        storage = self.trainer.storage
        after = storage.iter
        storage.iter = min(after, self.trainer.max_iter - 1)
        try:
            super().after_train()
        finally:
            storage.iter = after


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
            self.checkpointer.save(FINAL_NAME, tag_last=False, lean=True, **state)
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
        out.append(BestCheckpointer(cfg.TEST.EVAL_PERIOD, checkpointer, best_metric, "max", BEST_NAME))
    keep = cfg.SOLVER.MAX_CHECKPOINTS_KEPT
    out.append(PeriodicCheckpointer(checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD,
                                    max_to_keep=keep if keep and keep > 0 else None))
    return out


class ProgressBar(hooks.HookBase):
    """A tqdm bar over the iterations on `file` (stderr), shown only when that is a terminal (never in
    logs or CI).

    While it is shown, the run's console lines are written above it. It is closed after the last
    step, so that it does not sit at 100 % through the final evaluation (which has its own bar).
    """

    def __init__(self, enabled: Optional[bool] = None, file: Optional[TextIO] = None):
        self.file = sys.stderr if file is None else file
        self.enabled = self.file.isatty() if enabled is None else enabled
        self._bar = None
        self._above = None

    def before_train(self):
        if not self.enabled:
            return
        self._above = console_above_bar()
        self._above.__enter__()
        self._bar = tqdm(total=self.trainer.max_iter, initial=self.trainer.start_iter, file=self.file,
                         unit="it", dynamic_ncols=True, leave=True)

    def after_step(self):
        if self._bar is None:
            return
        self._bar.update(1)
        hist = self.trainer.storage.histories()
        if "total_loss" in hist and "lr" in hist:
            self._bar.set_postfix(loss=fmt_loss(hist["total_loss"].median(20)),
                                  lr=f"{hist['lr'].latest():.3g}", refresh=False)
        if self.trainer.storage.iter + 1 >= self.trainer.max_iter:
            self.after_train()

    def after_train(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._above is not None:
            self._above.__exit__(None, None, None)
            self._above = None


def build_progress_hooks(cfg, max_iter: int, hidden: Sequence[str] = ()) -> List[hooks.HookBase]:
    """Writers every SOLVER.LOG_PERIOD iterations (and at the end) plus the terminal bar; register
    them last, after the eval hooks, so evaluation results reach metrics.json at their iteration.
    The progress line leaves out the `hidden` losses. Main process only (others get [])."""
    if not comm.is_main_process():
        return []
    period = max(1, int(cfg.SOLVER.LOG_PERIOD))
    return [
        hooks.PeriodicWriter(build_writers(cfg.OUTPUT_DIR, max_iter, period, hidden), period=period),
        ProgressBar(),
    ]
