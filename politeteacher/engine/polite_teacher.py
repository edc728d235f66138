"""Polite Teacher: teacher–student training on labelled + unlabelled images (polite_teacher.md §2–§5).

`PoliteTeacherTrainer.run_step` is the whole method, read top to bottom: draw a labelled and an
unlabelled batch (two views each, same geometry), update the teacher, let it pseudo-label the weak
views, and train the student on the labelled views and the strong unlabelled views.
"""
from __future__ import annotations

import logging
import time
import weakref
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn
from detectron2.engine import TrainerBase, hooks
from detectron2.solver import build_lr_scheduler
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..data.loaders import build_labeled_loader, build_unlabeled_loader, per_worker_batch
from ..data.mappers import TwoViewMapper
from ..data.splits import labeled_and_unlabeled
from ..data.streams import seeded
from ..errors import PoliteTeacherError
from .baseline import build_centermask, finish_run, resume_or_start, run_training, training_hooks
from .checkpoint import AtomicCheckpointer, load_initial_weights
from .evaluate import coco_evaluate
from .launch import create_ddp_model
from .optim import build_optimizer
from .ema import copy_student_to_teacher, ema_update
from .pseudo_labels import as_targets, pseudo_label_stats, teacher_pseudo_labels
from .pseudo_monitor import NoPseudoLabelWarning, save_pseudo_views

logger = logging.getLogger(__name__)

SUPERVISED_LOSSES = ("loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_maskiou")


class TeacherStudent(nn.Module):
    """Both models in one module, so a checkpoint names them `modelTeacher.` / `modelStudent.` as
    Polite Teacher checkpoints do."""

    def __init__(self, teacher: nn.Module, student: nn.Module):
        super().__init__()
        self.modelTeacher = teacher
        self.modelStudent = student


def pseudo_loss_weights(cfg) -> Dict[str, float]:
    """Weights of the losses on pseudo-labels (§3 step 6): boxes of pseudo-labels give no box
    regression or centerness signal; classification, masks and mask IoU get the unsupervised weight.
    The switches PSEUDO_MASK_LOSSES / PSEUDO_MASKIOU_LOSS set the mask terms to 0."""
    ssl = cfg.SEMISUPERVISED
    w = ssl.UNSUP_LOSS_WEIGHT
    mask_w = w if ssl.PSEUDO_MASK_LOSSES else 0.0
    return {
        "loss_fcos_cls": w,
        "loss_fcos_loc": ssl.PSEUDO_LOC_WEIGHT,
        "loss_fcos_ctr": ssl.PSEUDO_CTR_WEIGHT,
        "loss_mask": mask_w,
        "loss_maskiou": mask_w if ssl.PSEUDO_MASKIOU_LOSS else 0.0,
    }


def combine_losses(
    supervised: Dict[str, torch.Tensor],
    pseudo: Dict[str, torch.Tensor],
    weights: Dict[str, float],
    factors: Optional[Dict[str, float]] = None,
    divisor: float = 1.0,
):
    """Total loss = (Σ supervised losses + Σ weight × factor × pseudo loss) / divisor (factors 1
    and divisor 1 unless the NORM_LOSS switch is on); returns it with every term named (pseudo
    terms get a `_pseudo` suffix and are reported unweighted)."""
    total = sum(supervised.values())
    named = dict(supervised)
    for name, value in pseudo.items():
        factor = factors[name] if factors else 1.0
        total = total + weights[name] * factor * value
        named[f"{name}_pseudo"] = value
    return total / divisor, named


class PseudoLossNorm:
    """The NORM_LOSS switch: each pseudo loss is scaled by EMA(its supervised twin) / EMA(itself).

    The EMAs follow the detached losses averaged over workers (so every worker scales alike),
    start at the first values seen and keep `keep_rate` of their value per step; they are part of
    the trainer's checkpoint, so a resumed run scales as the uninterrupted one."""

    def __init__(self, keep_rate: float):
        self.keep_rate = keep_rate
        self.ema: Dict[str, float] = {}

    def factors(self, supervised: Dict[str, torch.Tensor], pseudo: Dict[str, torch.Tensor]) -> Dict[str, float]:
        values = {k: v.detach().item() for k, v in supervised.items()}
        values.update({f"{k}_pseudo": v.detach().item() for k, v in pseudo.items()})
        if comm.get_world_size() > 1:
            gathered = comm.all_gather(values)
            values = {k: sum(g[k] for g in gathered) / len(gathered) for k in values}
        for k, v in values.items():
            old = self.ema.get(k)
            self.ema[k] = v if old is None else self.keep_rate * old + (1 - self.keep_rate) * v
        # A pseudo loss that has been 0 throughout (e.g. no valid pseudo mask yet) has no scale.
        return {k: self.ema[k] / max(self.ema[f"{k}_pseudo"], 1e-12) for k in pseudo}

    def state_dict(self) -> Dict[str, float]:
        return dict(self.ema)

    def load_state_dict(self, state: Dict[str, float]) -> None:
        self.ema = dict(state)


class PoliteTeacherTrainer(TrainerBase):
    """Student (optimised, in DDP when distributed) and teacher (EMA of the student, no gradients)."""

    def __init__(self, cfg, student: nn.Module, teacher: nn.Module, labeled: List[dict], unlabeled: List[dict]):
        super().__init__()
        if not unlabeled:
            raise PoliteTeacherError(
                "the unlabelled pool is empty: use a split below 100 % or add --unlabeled-images DIR"
            )
        self.cfg = cfg
        teacher.requires_grad_(False)
        teacher.eval()
        self.teacher = teacher
        self.student_module = student
        self.optimizer = build_optimizer(cfg, student)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer)
        self.student = create_ddp_model(student, broadcast_buffers=False)
        self.models = TeacherStudent(teacher, student)
        self.checkpointer = AtomicCheckpointer(self.models, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.amp = cfg.SOLVER.AMP.ENABLED
        self.scaler = torch.cuda.amp.GradScaler(enabled=self.amp)
        self.loss_weights = pseudo_loss_weights(cfg)
        # Pseudo losses weighted 0 do not train the student: recorded, but not on the progress line.
        self.hidden_losses = [f"{k}_pseudo" for k, w in self.loss_weights.items() if w == 0]
        ssl = cfg.SEMISUPERVISED
        self.loss_norm = PseudoLossNorm(ssl.NORM_LOSS_KEEP_RATE) if ssl.NORM_LOSS else None
        # Pseudo boxes weighted 0 for regression and centerness (the default): the student's box
        # branch then needs no backward pass on the unlabelled views (same gradients, less work).
        self.pseudo_box_grad = any(self.loss_weights[k] for k in ("loss_fcos_loc", "loss_fcos_ctr"))
        # The batch totals must split over the workers: checked now, not at the first step.
        per_worker_batch(cfg.SOLVER.IMS_PER_BATCH, "SOLVER.IMS_PER_BATCH")
        per_worker_batch(cfg.SOLVER.IMS_PER_BATCH_UNLABELED, "SOLVER.IMS_PER_BATCH_UNLABELED")
        self._labeled, self._unlabeled = labeled, unlabeled
        self._streams = None
        self.last_results: Dict[str, dict] = {}
        self.no_pseudo_labels = NoPseudoLabelWarning(cfg, ssl.NO_PSEUDO_LABEL_WARN_PERIODS)
        self.register_hooks(self.build_hooks())

    def start_streams(self) -> None:
        """Start the labelled and unlabelled batch streams at `start_iter` (before_train does this;
        call it to drive `run_step` by hand). Batch i is the same whenever it is drawn, so a resumed
        run continues with the batches the uninterrupted one would have drawn."""
        cfg = self.cfg
        labeled_views = TwoViewMapper(cfg, is_train=True, labeled=True)
        self._streams = (
            iter(build_labeled_loader(cfg, self._labeled, labeled_views, self.start_iter)),
            iter(build_unlabeled_loader(cfg, self._unlabeled, start_iter=self.start_iter)),
        )

    def before_train(self):
        self.start_streams()
        super().before_train()

    def run_step(self):
        cfg = self.cfg.SEMISUPERVISED
        self.student.train()
        start = time.perf_counter()
        labeled, unlabeled = next(self._streams[0]), next(self._streams[1])
        data_time = time.perf_counter() - start

        # The step's own randomness (e.g. sampling of mask regions) depends on the iteration only,
        # so a resumed run repeats an uninterrupted one exactly.
        with seeded(self.cfg.SEED, comm.get_rank(), self.iter), torch.autocast("cuda", enabled=self.amp):
            if self.iter < cfg.BURN_IN_ITERS:
                # Burn-in: supervised only, weak views, like the baseline.
                loss_dict = self.student([weak for weak, _ in labeled])
                total, loss_dict = combine_losses(loss_dict, {}, self.loss_weights)
                pseudo = None
            else:
                # 1. The teacher: an exact copy at the first semi-supervised iteration, then EMA.
                if self.iter == cfg.BURN_IN_ITERS:
                    copy_student_to_teacher(self.teacher, self.student)
                else:
                    ema_update(self.teacher, self.student, cfg.EMA_KEEP_RATE)
                # 2. Pseudo-labels from the teacher on the weak views (unlabelled images carry no
                #    annotations; their mask heads only run on boxes that pass the threshold).
                t0 = time.perf_counter()
                pseudo = teacher_pseudo_labels(
                    self.teacher, [weak for weak, _ in unlabeled], cfg.TEACHER_POSTPROCESS,
                    cfg.BOX_THRESHOLD, cfg.MASK_IOU_THRESHOLD,
                )
                pseudo_time = time.perf_counter() - t0
                # 3. Student on labelled images, weak and strong views together.
                loss_dict = self.student([view for pair in labeled for view in pair])
                # 4. Student on the strong unlabelled views against the pseudo-labels.
                strong = [dict(s, instances=as_targets(p)) for (_, s), p in zip(unlabeled, pseudo)]
                weights = self.loss_weights
                if cfg.DROP_IMAGES_WITHOUT_PSEUDO_LABELS:
                    kept = [x for x in strong if len(x["instances"])]
                    # A worker left with no image still runs the pass, weighted 0, so that all
                    # workers meet in the same collectives (FCOS's loss normalisers).
                    strong, weights = (kept, weights) if kept else (strong, dict.fromkeys(weights, 0.0))
                pseudo_losses = self.student(strong, box_grad=self.pseudo_box_grad)
                if self.loss_norm is None:
                    total, loss_dict = combine_losses(loss_dict, pseudo_losses, weights)
                else:
                    total, loss_dict = combine_losses(
                        loss_dict, pseudo_losses, weights,
                        self.loss_norm.factors(loss_dict, pseudo_losses), 1 + cfg.UNSUP_LOSS_WEIGHT,
                    )

        if not torch.isfinite(total):
            raise FloatingPointError(
                f"loss became {total.item()} at iteration {self.iter}: "
                + ", ".join(f"{k}={v.item():.4g}" for k, v in loss_dict.items())
            )
        self.optimizer.zero_grad()
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

        storage = get_event_storage()
        metrics = {k: v.detach().item() for k, v in loss_dict.items()}
        metrics["total_loss"] = total.detach().item()
        metrics = _mean_over_workers(metrics)
        storage.put_scalars(**metrics, data_time=data_time)
        if pseudo is not None:
            self._watch_pseudo_labels(storage, unlabeled, pseudo, pseudo_time)

    def _watch_pseudo_labels(self, storage, unlabeled, pseudo, pseudo_time: float) -> None:
        """Statistics every SOLVER.LOG_PERIOD, the no-pseudo-label warning, and the pictures every
        VIS_PERIOD, of the main process's share of the batch (statistics' keys depend on whether its
        unlabelled images have hidden ground truth, so they are not averaged over workers)."""
        self.no_pseudo_labels.add(sum(len(p) for p in pseudo))
        if (self.iter + 1) % self.cfg.SOLVER.LOG_PERIOD == 0:
            storage.put_scalar("pseudo/time", pseudo_time)
            hidden = [weak.get("hidden_instances") for weak, _ in unlabeled]
            storage.put_scalars(**pseudo_label_stats(pseudo, hidden), smoothing_hint=False)
            if comm.is_main_process():
                self.no_pseudo_labels.end_period()
        period = self.cfg.VIS_PERIOD
        if period > 0 and (self.iter + 1) % period == 0 and comm.is_main_process():
            save_pseudo_views(self.cfg, storage, [weak for weak, _ in unlabeled], pseudo)

    def state_dict(self):
        out = super().state_dict()
        out["optimizer"] = self.optimizer.state_dict()
        out["grad_scaler"] = self.scaler.state_dict()
        if self.loss_norm is not None:
            out["pseudo_loss_norm"] = self.loss_norm.state_dict()
        return out

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.optimizer.load_state_dict(state_dict["optimizer"])
        if "grad_scaler" in state_dict:
            self.scaler.load_state_dict(state_dict["grad_scaler"])
        if self.loss_norm is not None and "pseudo_loss_norm" in state_dict:
            self.loss_norm.load_state_dict(state_dict["pseudo_loss_norm"])

    # ------------------------------------------------------------------------------------------
    # around the loop: weights, hooks, evaluation

    def resume_or_load(self, resume: bool) -> None:
        """With `resume` and a checkpoint in OUTPUT_DIR: both models, optimiser, scheduler, iteration
        and hook states from it. Otherwise MODEL.WEIGHTS into the student (the teacher is copied from
        it at the first semi-supervised iteration)."""
        resume_or_start(
            self, resume, lambda: load_initial_weights(self.student_module, self.cfg.MODEL.WEIGHTS, which="teacher")
        )

    def evaluate(self) -> Dict[str, dict]:
        """COCO AP of the teacher (the reported model) and, unless switched off, of the student;
        metrics are written as `teacher/segm/AP`, `student/bbox/AP`, ..."""
        out = str(Path(self.cfg.OUTPUT_DIR) / "inference")
        results = {}
        if self.iter >= self.cfg.SEMISUPERVISED.BURN_IN_ITERS:  # no teacher during burn-in
            results["teacher"] = coco_evaluate(self.cfg, self.teacher, f"{out}/teacher", label="teacher")
        if self.cfg.SEMISUPERVISED.EVAL_STUDENT or not results:
            results["student"] = coco_evaluate(self.cfg, self.student_module, f"{out}/student", label="student")
        self.last_results = results if comm.is_main_process() else {}
        return self.last_results

    def build_hooks(self) -> List[hooks.HookBase]:
        return training_hooks(self, self.evaluate, "teacher/segm/AP")


def train_ssl(cfg, resume: bool = False) -> Dict:
    """Train in this worker (through `launch_workers`, or directly in one process); returns the final
    evaluation {"teacher": {...}, "student": {...}} on the main process."""
    from ..data.datasets import register_all

    register_all(cfg)  # registrations do not cross process boundaries
    labeled, unlabeled = labeled_and_unlabeled(cfg)
    # The console has the data summary already (data/splits.py); this worker's view goes to log.txt.
    logger.info("Labelled images: %d, unlabelled images: %d", len(labeled), len(unlabeled), extra={"log_only": True})
    student, teacher = build_centermask(cfg), build_centermask(cfg, announce=False)
    trainer = PoliteTeacherTrainer(cfg, student, teacher, labeled, unlabeled)
    trainer.resume_or_load(resume)
    trainer.train(trainer.start_iter, trainer.max_iter)
    results = getattr(trainer, "last_results", {})
    if comm.is_main_process():
        finish_run(cfg, results)
    comm.synchronize()
    return results


def run_train_ssl(cfg, *, resume: bool = False, **kwargs) -> Dict[str, dict]:
    """`politeteacher train-ssl`: Polite Teacher into cfg.OUTPUT_DIR; returns the final evaluation
    {"teacher": {...}, "student": {...}}. Keyword arguments as `run_training` (force, num_gpus, ...)."""
    if not cfg.MODEL.WEIGHTS and cfg.SEMISUPERVISED.BURN_IN_ITERS <= 0 and not resume:
        raise PoliteTeacherError(
            "train-ssl starts from a trained model: pass --weights BASELINE.pth, or set "
            "SEMISUPERVISED.BURN_IN_ITERS > 0 to train the student supervised first"
        )
    return run_training(
        train_ssl, cfg, batch_keys=("IMS_PER_BATCH", "IMS_PER_BATCH_UNLABELED"), resume=resume, **kwargs
    )


def _mean_over_workers(values: Dict[str, float]) -> Dict[str, float]:
    if comm.get_world_size() == 1:
        return values
    gathered = comm.gather(values)
    if not comm.is_main_process():
        return values
    return {k: sum(g[k] for g in gathered) / len(gathered) for k in values}
