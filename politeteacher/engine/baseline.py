"""Supervised CenterMask training on the labelled split (polite_teacher.md §1).

`BaselineTrainer` is the `Trainer` skeleton (trainer.py) with one batch stream, the labelled images
under the weak (training) mapper, and the supervised step; it is evaluated with the mask-scoring COCO
evaluator and keeps the best "segm/AP" as model_best.pth. `engine.run.run_train_baseline` runs it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

from ..data.loaders import build_labeled_loader
from ..data.splits import labeled_and_unlabeled
from ..evaluation.evaluate import coco_evaluate
from .trainer import Trainer


class BaselineTrainer(Trainer):
    """CenterMask on the labelled split, detectron2-style (see the module doc)."""

    def build_train_loaders(self, start_iter: int):
        labeled, _ = labeled_and_unlabeled(self.cfg)
        return [build_labeled_loader(self.cfg, labeled, start_iter=start_iter)]

    def run_step(self):
        (batch,), data_time = self.next_batches()
        self.train_model.train()
        self.supervised_step(batch, data_time)

    def evaluate_models(self) -> Dict[str, dict]:
        return coco_evaluate(self.cfg, self.model, str(Path(self.cfg.OUTPUT_DIR) / "inference"))
