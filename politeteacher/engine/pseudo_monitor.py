"""Watching the pseudo-labels while `train-ssl` runs (main process only).

- `save_pseudo_views`: every VIS_PERIOD iterations (when > 0) a few unlabelled weak views with their
  pseudo-labels (style of `pseudo_views`) go to TensorBoard (`EventStorage.put_image`) and to
  `OUTPUT_DIR/pseudo/iter_<iteration>_<k>.png`.
- `NoPseudoLabelWarning`: one warning line when no pseudo-label passed in the last
  SEMISUPERVISED.NO_PSEUDO_LABEL_WARN_PERIODS logging periods, naming the thresholds to change.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from detectron2.structures import Instances

from ..data.classes import class_metadata
from ..inference.outputs import png_bytes
from ..io import atomic_write
from .pseudo_views import draw_pseudo_labels, view_rgb

logger = logging.getLogger(__name__)

PSEUDO_DIR = "pseudo"
# Unlabelled images shown per VIS_PERIOD: enough to judge, few enough to keep TensorBoard light.
VIS_IMAGES = 2


def save_pseudo_views(cfg, storage, weak_inputs: Sequence[dict], labels: Sequence[Instances]) -> None:
    """Draw the first VIS_IMAGES weak views with their pseudo-labels to TensorBoard and `pseudo/`
    (files named with the iteration TensorBoard and metrics.json give them)."""
    names, _ = class_metadata(cfg)
    folder = Path(cfg.OUTPUT_DIR) / PSEUDO_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for k, (view, label) in enumerate(list(zip(weak_inputs, labels))[:VIS_IMAGES]):
        rgb = draw_pseudo_labels(view_rgb(view, cfg.INPUT.FORMAT), label, names)
        storage.put_image(f"pseudo_labels/{k}", rgb.transpose(2, 0, 1))
        atomic_write(folder / f"iter_{storage.iter:07d}_{k}.png", lambda f: f.write(png_bytes(rgb)))


class NoPseudoLabelWarning:
    """Counts the pseudo-labels of each logging period (`add` every step, `end_period` at the end of
    each period); after `periods` periods in a row without one, logs one warning, then again only
    after pseudo-labels came back and went away for as long again. `periods` <= 0: never."""

    def __init__(self, cfg, periods: int):
        self.cfg = cfg
        self.periods = periods
        self.count = 0
        self.empty = 0

    def add(self, num_labels: int) -> None:
        self.count += num_labels

    def end_period(self) -> bool:
        """Close a logging period; True when it warned."""
        self.empty = 0 if self.count else self.empty + 1
        self.count = 0
        if self.periods <= 0 or self.empty != self.periods:
            return False
        ssl = self.cfg.SEMISUPERVISED
        iters = self.periods * self.cfg.SOLVER.LOG_PERIOD
        logger.warning(
            "no pseudo-label in the last %d iterations: no teacher detection scored above "
            "SEMISUPERVISED.BOX_THRESHOLD %g (MODEL.FCOS.INFERENCE_TH_TRAIN %g drops lower ones first); "
            "lower them, check the teacher (`politeteacher pseudo-label --sweep`), or start from a "
            "better-trained model", iters, ssl.BOX_THRESHOLD, self.cfg.MODEL.FCOS.INFERENCE_TH_TRAIN,
        )
        return True
