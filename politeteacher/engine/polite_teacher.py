"""Polite Teacher: teacher–student training on labelled + unlabelled images (polite_teacher.md §2–§5).

`PoliteTeacherTrainer.run_step` is the whole method, read top to bottom: draw a labelled and an
unlabelled batch (two views each, same geometry), update the teacher, let it pseudo-label the weak
views, and train the student on the labelled views and the strong unlabelled views. The student is
the skeleton's `model` (trainer.py): the one the optimiser trains; the teacher is its EMA.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Dict, List

from torch import nn
from detectron2.utils import comm
from detectron2.utils.events import get_event_storage

from ..data.loaders import build_labeled_loader, build_unlabeled_loader
from ..data.mappers import TwoViewMapper
from ..data.splits import labeled_and_unlabeled
from ..errors import PoliteTeacherError
from ..evaluation.evaluate import coco_evaluate
from ..modeling.build import build_centermask
from .ema import copy_student_to_teacher, ema_update
from .pseudo_labels import as_targets, pseudo_label_stats, teacher_pseudo_labels
from .pseudo_losses import PseudoLossNorm, combine_losses, pseudo_loss_weights
from .pseudo_monitor import NoPseudoLabelWarning, save_pseudo_views
from .trainer import Trainer

logger = logging.getLogger(__name__)


class TeacherStudent(nn.Module):
    """Both models in one module, so a checkpoint names them `modelTeacher.` / `modelStudent.` as
    Polite Teacher checkpoints do."""

    def __init__(self, teacher: nn.Module, student: nn.Module):
        super().__init__()
        self.modelTeacher = teacher
        self.modelStudent = student


class PoliteTeacherTrainer(Trainer):
    """Student (`model`, optimised, in DDP when distributed) and `teacher` (EMA of the student, no
    gradients); both are checkpointed and evaluated."""

    batch_keys = ("IMS_PER_BATCH", "IMS_PER_BATCH_UNLABELED")
    best_metric = "teacher/segm/AP"

    def __init__(self, cfg):
        super().__init__(cfg)
        ssl = cfg.SEMISUPERVISED
        self.loss_weights = pseudo_loss_weights(cfg)
        self.loss_norm = PseudoLossNorm(ssl.NORM_LOSS_KEEP_RATE) if ssl.NORM_LOSS else None
        # Pseudo boxes weighted 0 for regression and centerness (the default): the student's box
        # branch then needs no backward pass on the unlabelled views (same gradients, less work).
        self.pseudo_box_grad = any(self.loss_weights[k] for k in ("loss_fcos_loc", "loss_fcos_ctr"))
        self.no_pseudo_labels = NoPseudoLabelWarning(cfg, ssl.NO_PSEUDO_LABEL_WARN_PERIODS)

    @classmethod
    def check_start(cls, cfg, resume: bool) -> None:
        if not resume and not cfg.MODEL.WEIGHTS and cfg.SEMISUPERVISED.BURN_IN_ITERS <= 0:
            raise PoliteTeacherError(
                "train-ssl starts from a trained model: pass --weights BASELINE.pth, or set "
                "SEMISUPERVISED.BURN_IN_ITERS > 0 to train the student supervised first"
            )

    def build_models(self, cfg) -> nn.Module:
        """The student, then the teacher (frozen, in eval mode); a checkpoint holds both."""
        student = super().build_models(cfg)
        self.teacher = build_centermask(cfg, announce=False)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        return TeacherStudent(self.teacher, student)

    @property
    def hidden_losses(self) -> List[str]:
        """Pseudo losses weighted 0 do not train the student: recorded, but not on the progress line."""
        return [f"{k}_pseudo" for k, w in pseudo_loss_weights(self.cfg).items() if w == 0]

    def build_train_loaders(self, start_iter: int):
        labeled, unlabeled = labeled_and_unlabeled(self.cfg)
        # The console has the data summary already (data/splits.py); this worker's view goes to log.txt.
        logger.info("Labelled images: %d, unlabelled images: %d", len(labeled), len(unlabeled),
                    extra={"log_only": True})
        return [
            build_labeled_loader(self.cfg, labeled, TwoViewMapper(self.cfg, is_train=True, labeled=True), start_iter),
            build_unlabeled_loader(self.cfg, unlabeled, start_iter=start_iter),
        ]

    def run_step(self):
        cfg = self.cfg.SEMISUPERVISED
        (labeled, unlabeled), data_time = self.next_batches()
        self.train_model.train()
        if self.iter < cfg.BURN_IN_ITERS:
            # Burn-in: supervised only, weak views, like the baseline.
            self.supervised_step([weak for weak, _ in labeled], data_time)
            return

        with self.step_context():
            # 1. The teacher: an exact copy at the first semi-supervised iteration, then EMA.
            if self.iter == cfg.BURN_IN_ITERS:
                copy_student_to_teacher(self.teacher, self.model)
            else:
                ema_update(self.teacher, self.model, cfg.EMA_KEEP_RATE)
            # 2. Pseudo-labels from the teacher on the weak views (unlabelled images carry no
            #    annotations; their mask heads only run on boxes that pass the threshold).
            t0 = time.perf_counter()
            pseudo = teacher_pseudo_labels(
                self.teacher, [weak for weak, _ in unlabeled], cfg.TEACHER_POSTPROCESS,
                cfg.BOX_THRESHOLD, cfg.MASK_IOU_THRESHOLD,
            )
            pseudo_time = time.perf_counter() - t0
            # 3. Student on labelled images, weak and strong views together.
            loss_dict = self.train_model([view for pair in labeled for view in pair])
            # 4. Student on the strong unlabelled views against the pseudo-labels.
            strong = [dict(s, instances=as_targets(p)) for (_, s), p in zip(unlabeled, pseudo)]
            weights = self.loss_weights
            if cfg.DROP_IMAGES_WITHOUT_PSEUDO_LABELS:
                kept = [x for x in strong if len(x["instances"])]
                # A worker left with no image still runs the pass, weighted 0, so that all
                # workers meet in the same collectives (FCOS's loss normalisers).
                strong, weights = (kept, weights) if kept else (strong, dict.fromkeys(weights, 0.0))
            pseudo_losses = self.train_model(strong, box_grad=self.pseudo_box_grad)
            if self.loss_norm is None:
                total, loss_dict = combine_losses(loss_dict, pseudo_losses, weights)
            else:
                total, loss_dict = combine_losses(
                    loss_dict, pseudo_losses, weights,
                    self.loss_norm.factors(loss_dict, pseudo_losses), 1 + cfg.UNSUP_LOSS_WEIGHT,
                )
        # 5. One optimiser step of the student.
        self.apply_losses(total, loss_dict, data_time)
        self._watch_pseudo_labels(get_event_storage(), unlabeled, pseudo, pseudo_time)

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
        if self.loss_norm is not None:
            out["pseudo_loss_norm"] = self.loss_norm.state_dict()
        return out

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if self.loss_norm is not None and "pseudo_loss_norm" in state_dict:
            self.loss_norm.load_state_dict(state_dict["pseudo_loss_norm"])

    def evaluate_models(self) -> Dict[str, dict]:
        """COCO AP of the teacher (the reported model) and, unless switched off, of the student;
        metrics are written as `teacher/segm/AP`, `student/bbox/AP`, ..."""
        out = str(Path(self.cfg.OUTPUT_DIR) / "inference")
        results = {}
        if self.iter >= self.cfg.SEMISUPERVISED.BURN_IN_ITERS:  # no teacher during burn-in
            results["teacher"] = coco_evaluate(self.cfg, self.teacher, f"{out}/teacher", label="teacher")
        if self.cfg.SEMISUPERVISED.EVAL_STUDENT or not results:
            results["student"] = coco_evaluate(self.cfg, self.model, f"{out}/student", label="student")
        return results
