"""The skeleton both trainers share: detectron2's `TrainerBase` loop with everything around a step.

`Trainer(cfg)` builds the model it trains (`model`; `train_model` is the same in DistributedDataParallel
when several workers run) and whatever else `build_models` adds, the optimiser, LR scheduler, grad
scaler (AMP), the atomic checkpointer and the hooks (`hooks.training_hooks`). `resume_or_load(resume)`,
then `train()` runs it and returns the last evaluation (`last_results`). A subclass says what it trains
on and how one step goes:

- `build_train_loaders(start_iter)`: its batch streams, started at `start_iter` (batch i is a pure
  function of SEED, rank and i, so a resumed run draws what the uninterrupted one would have);
- `run_step()`: draw the batches (`next_batches`), compute the losses inside `step_context()` and hand
  them to `apply_losses`, the one place where a loss becomes an optimiser step and metrics;
- `evaluate_models()`: what is evaluated every TEST.EVAL_PERIOD;
- `batch_keys`: the SOLVER batch totals it reads (checked to split over the workers before launch);
- `best_metric`: the metric that picks model_best.pth.

`supervised_step(batch, data_time)` is the supervised step on one batch of labelled images: the
baseline's whole step, and Polite Teacher's burn-in.
"""
from __future__ import annotations

import contextlib
import logging
import time
import weakref
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from detectron2.engine import TrainerBase
from detectron2.solver import build_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage
from torch import nn

from ..data.streams import seeded
from ..modeling.build import build_centermask
from .checkpoint import AtomicCheckpointer, load_initial_weights
from .hooks import training_hooks
from .launch import create_ddp_model
from .optim import build_optimizer
from .progress import METRICS_FILE, trim_metrics

logger = logging.getLogger(__name__)


class Trainer(TrainerBase):
    """See the module doc. A checkpoint holds the module `build_models` returns (the model by default)
    and this trainer's state: iteration, optimiser, grad scaler and the hooks' states (the LR
    scheduler's among them)."""

    batch_keys: Tuple[str, ...] = ("IMS_PER_BATCH",)
    best_metric = "segm/AP"
    hidden_losses: Sequence[str] = ()  # losses recorded in metrics.json but left off the progress line

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        saved = self.build_models(cfg)
        self.train_model = create_ddp_model(self.model, broadcast_buffers=False)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer)
        self.amp = cfg.SOLVER.AMP.ENABLED
        self.scaler = torch.cuda.amp.GradScaler(enabled=self.amp)
        self.start_iter, self.max_iter = 0, cfg.SOLVER.MAX_ITER
        self.last_results: Dict[str, dict] = {}
        self._batches: List[Iterable] = []
        self.checkpointer = AtomicCheckpointer(saved, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.register_hooks(training_hooks(self))

    @classmethod
    def check_start(cls, cfg, resume: bool) -> None:
        """Refuse (PoliteTeacherError) a config this trainer cannot start from; checked once, on the
        launching process (`engine.run.check_config`)."""

    def build_models(self, cfg) -> nn.Module:
        """Build `model` (the one the optimiser trains); return the module a checkpoint saves."""
        self.model = build_centermask(cfg)
        return self.model

    # ------------------------------------------------------------------------------------------
    # the loop

    def build_train_loaders(self, start_iter: int) -> Sequence[Iterable]:
        raise NotImplementedError

    def before_train(self):
        self.start_loaders()
        super().before_train()

    def start_loaders(self) -> None:
        """Start the batch streams at `start_iter` (before_train does this; call it to drive
        `run_step` by hand)."""
        self._batches = [iter(loader) for loader in self.build_train_loaders(self.start_iter)]

    def next_batches(self) -> Tuple[list, float]:
        """This worker's batch of each stream for this iteration, and the time spent waiting for them."""
        start = time.perf_counter()
        batches = [next(stream) for stream in self._batches]
        return batches, time.perf_counter() - start

    def step_context(self):
        """Around a step's forward passes: the step's own randomness (e.g. the sampling of mask regions)
        depends on SEED, rank and the iteration only, so a resumed run repeats an uninterrupted one;
        mixed precision with SOLVER.AMP.ENABLED."""
        stack = contextlib.ExitStack()
        stack.enter_context(seeded(self.cfg.SEED, comm.get_rank(), self.iter))
        stack.enter_context(torch.autocast("cuda", enabled=self.amp))
        return stack

    def supervised_step(self, batch: list, data_time: float) -> None:
        """One supervised step on `batch` (images with annotations)."""
        with self.step_context():
            loss_dict = self.train_model(batch)
        self.apply_losses(sum(loss_dict.values()), loss_dict, data_time)

    def apply_losses(self, total: torch.Tensor, loss_dict: Dict[str, torch.Tensor], data_time: float) -> None:
        """The one place a loss trains the model: refuse a non-finite `total`, backward (scaled under
        AMP), optimiser step, and record `total_loss`, every term of `loss_dict` (averaged over
        workers) and data_time (the slowest worker's)."""
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"loss became {total.item()} at iteration {self.iter}: "
                + ", ".join(f"{k}={v.item():.4g}" for k, v in loss_dict.items())
            )
        self.optimizer.zero_grad()
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

        metrics = {k: v.detach().item() for k, v in loss_dict.items()}
        metrics["total_loss"] = total.detach().item()
        metrics["data_time"] = data_time
        gathered = comm.gather(metrics) if comm.get_world_size() > 1 else [metrics]
        if comm.is_main_process():
            data_time = max(g.pop("data_time") for g in gathered)
            means = {k: sum(g[k] for g in gathered) / len(gathered) for k in gathered[0]}
            get_event_storage().put_scalars(**means, data_time=data_time)

    # ------------------------------------------------------------------------------------------
    # around the loop: weights, state, evaluation

    def resume_or_load(self, resume: bool) -> None:
        """With `resume` and a checkpoint in OUTPUT_DIR: load the models, optimiser, scheduler,
        iteration and hook states from it and continue at the next iteration. Otherwise MODEL.WEIGHTS
        into `model` (see `load_initial_weights`) and start at iteration 0. On resume, metrics.json
        keeps the records up to the checkpoint only: the iterations after it are trained (and
        recorded) again."""
        if resume and self.checkpointer.has_checkpoint():
            path = self.checkpointer.get_checkpoint_file()
            self.checkpointer.resume(path)
            self.start_iter = self.iter + 1
            logger.info("Resuming from %s at iteration %d", path, self.start_iter)
        else:
            if resume:
                logger.info("--resume: no checkpoint in %s yet; starting at iteration 0", self.cfg.OUTPUT_DIR)
            load_initial_weights(self.model, self.cfg.MODEL.WEIGHTS)
            self.start_iter = 0
        if resume and comm.is_main_process():
            trim_metrics(Path(self.cfg.OUTPUT_DIR) / METRICS_FILE, self.start_iter - 1)

    def train(self, start_iter: Optional[int] = None, max_iter: Optional[int] = None) -> Dict[str, dict]:
        """Train from `start_iter` (default: where `resume_or_load` put it) to `max_iter` (default
        SOLVER.MAX_ITER); return the last evaluation ({} on other ranks or without a test set)."""
        super().train(self.start_iter if start_iter is None else start_iter,
                      self.max_iter if max_iter is None else max_iter)
        return self.last_results

    def evaluate_models(self) -> Dict[str, dict]:
        raise NotImplementedError

    def evaluate(self) -> Dict[str, dict]:
        results = self.evaluate_models()
        self.last_results = results if comm.is_main_process() else {}
        return self.last_results

    def state_dict(self):
        out = super().state_dict()
        out["optimizer"] = self.optimizer.state_dict()
        out["grad_scaler"] = self.scaler.state_dict()
        return out

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        # Baseline checkpoints of politeteacher <= 0.3 kept the optimiser in detectron2's inner trainer.
        inner = state_dict.get("_trainer", state_dict)
        self.optimizer.load_state_dict(inner["optimizer"])
        if "grad_scaler" in inner:
            self.scaler.load_state_dict(inner["grad_scaler"])

