"""The threshold sweep: how the pseudo-labels of a grid of (box threshold, mask-IoU threshold) pairs
compare with ground truth, from one teacher pass per image.

The teacher runs once per image with the lowest box threshold of the grid; a higher box threshold
keeps a subset of those detections (their scores, masks and mask IoU do not depend on the other
boxes), and a mask-IoU threshold only decides which masks are valid. So every cell is counted from
the same `ImageEvidence`: no inference per cell.

Per cell, over all images (matching as in training, `pseudo_labels.match_count`: greedy by score,
class-aware, IoU >= 0.5):
- boxes_per_image: pseudo-labels per image;
- box_precision / box_recall: of the pseudo boxes against the ground-truth boxes;
- mask_precision / mask_recall: of the *valid* masks (those that supervise the mask loss) against the
  ground-truth masks;
- valid_mask_fraction: valid masks / pseudo boxes.
A figure with nothing to measure (no pseudo box, no valid mask, no ground truth) is None, never 0.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.structures import Instances
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..errors import PoliteTeacherError
from .pseudo_labels import iou_matrices, match_count, ratio

METRICS = ("boxes_per_image", "box_precision", "box_recall", "mask_precision", "mask_recall", "valid_mask_fraction")
RULE = (
    "box threshold: the highest box F1 (harmonic mean of box precision and recall); mask-IoU threshold: "
    "at that box threshold, the highest mask F1; ties go to the higher threshold (fewer, surer labels)"
)


@dataclass
class ImageEvidence:
    """One image's candidate pseudo-labels (all above the grid's lowest box threshold) against its
    ground truth: their scores, predicted mask IoU, and the IoU matrices with the ground truth."""

    scores: torch.Tensor  # (P,)
    maskiou: torch.Tensor  # (P,)
    box_iou: torch.Tensor  # (P, G)
    mask_iou: torch.Tensor  # (P, G)
    same_class: torch.Tensor  # (P, G) bool
    num_gt: int

    @classmethod
    def from_instances(cls, pseudo: Instances, gt: Instances) -> "ImageEvidence":
        """From pseudo-labels (`make_pseudo_labels`, with scores and maskiou) and ground truth
        (`gt_boxes`, `gt_classes`, `gt_masks`) of one image, in the same coordinates."""
        box_iou, mask_iou, same = iou_matrices(pseudo, gt)
        return cls(pseudo.scores.cpu().float(), pseudo.maskiou.cpu().float(), box_iou, mask_iou, same, len(gt))


def sweep_cell(evidence: Sequence[ImageEvidence], box_threshold: float, mask_iou_threshold: float) -> Dict:
    """The figures of one (box threshold, mask-IoU threshold) pair (strict thresholds, as training)."""
    boxes = valid = gts = box_tp = mask_tp = 0
    for e in evidence:
        keep = e.scores > box_threshold
        ok = keep & (e.maskiou > mask_iou_threshold)
        boxes += int(keep.sum())
        valid += int(ok.sum())
        gts += e.num_gt
        box_tp += match_count(e.box_iou[keep], e.same_class[keep], e.scores[keep])
        mask_tp += match_count(e.mask_iou[ok], e.same_class[ok], e.scores[ok])
    return {
        "box_threshold": box_threshold,
        "mask_iou_threshold": mask_iou_threshold,
        "boxes_per_image": boxes / len(evidence) if evidence else None,
        "box_precision": ratio(box_tp, boxes),
        "box_recall": ratio(box_tp, gts),
        "mask_precision": ratio(mask_tp, valid),
        "mask_recall": ratio(mask_tp, gts),
        "valid_mask_fraction": ratio(valid, boxes),
    }


def sweep_table(
    evidence: Sequence[ImageEvidence], box_thresholds: Sequence[float], mask_iou_thresholds: Sequence[float]
) -> List[Dict]:
    """One row per grid cell (box thresholds outer, mask-IoU thresholds inner)."""
    return [sweep_cell(evidence, b, m) for b in box_thresholds for m in mask_iou_thresholds]


def _f1(p: Optional[float], r: Optional[float]) -> float:
    if p is None or r is None or p + r == 0:
        return -1.0  # undefined or zero: never preferred to a measured F1
    return 2 * p * r / (p + r)


def suggest(rows: Sequence[Dict]) -> Optional[Dict]:
    """The row of the suggested pair by `RULE`; None when no cell has a box F1 (no ground truth matched)."""
    best_box = max(rows, key=lambda r: (_f1(r["box_precision"], r["box_recall"]), r["box_threshold"]), default=None)
    if best_box is None or _f1(best_box["box_precision"], best_box["box_recall"]) <= 0:
        return None
    same_box = [r for r in rows if r["box_threshold"] == best_box["box_threshold"]]
    return max(same_box, key=lambda r: (_f1(r["mask_precision"], r["mask_recall"]), r["mask_iou_threshold"]))


def _cell(v: Optional[float], digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def format_table(rows: Sequence[Dict], suggested: Optional[Dict] = None) -> str:
    """The sweep as a text table, one line per cell ('-': undefined), the suggested pair marked '*'."""
    head = ["box_th", "mask_th", "labels/img", "box_P", "box_R", "mask_P", "mask_R", "valid"]
    lines = ["  ".join(f"{h:>10}" for h in head)]
    for r in rows:
        values = [f"{r['box_threshold']:g}", f"{r['mask_iou_threshold']:g}", _cell(r["boxes_per_image"], 2),
                  *(_cell(r[k]) for k in METRICS[1:])]
        mark = " *" if r is suggested else ""
        lines.append("  ".join(f"{v:>10}" for v in values) + mark)
    return "\n".join(lines)


def heatmap_png(
    rows: Sequence[Dict], box_thresholds: Sequence[float], mask_iou_thresholds: Sequence[float],
    suggested: Optional[Dict] = None,
) -> bytes:
    """A PNG with one heat map per figure (box thresholds down, mask-IoU thresholds across), values
    written in the cells, the suggested pair framed."""
    nb, nm = len(box_thresholds), len(mask_iou_thresholds)
    fig = Figure(figsize=(3.2 * 3, 0.45 * nb * 2 + 2.2), constrained_layout=True)
    axes = fig.subplots(2, 3)
    for ax, key in zip(axes.flat, METRICS):
        grid = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float).reshape(nb, nm)
        vmax = 1.0 if key != "boxes_per_image" else max(1.0, float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0)
        ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
        for i in range(nb):
            for j in range(nm):
                v = grid[i, j]
                ax.text(j, i, "-" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if np.isnan(v) or v < 0.6 * vmax else "black")
        ax.set_xticks(range(nm), [f"{m:g}" for m in mask_iou_thresholds], fontsize=7)
        ax.set_yticks(range(nb), [f"{b:g}" for b in box_thresholds], fontsize=7)
        ax.set_xlabel("mask-IoU threshold", fontsize=8)
        ax.set_ylabel("box threshold", fontsize=8)
        ax.set_title(key.replace("_", " "), fontsize=9)
        if suggested is not None:
            i = list(box_thresholds).index(suggested["box_threshold"])
            j = list(mask_iou_thresholds).index(suggested["mask_iou_threshold"])
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def parse_grid(text: str, option: str) -> Tuple[float, ...]:
    """`0.5,0.6,0.7` -> (0.5, 0.6, 0.7), sorted and without duplicates; a PoliteTeacherError naming
    `option` otherwise."""
    try:
        values = sorted({float(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise PoliteTeacherError(f"{option} takes comma-separated numbers such as 0.5,0.6,0.7; got '{text}'") from None
    if not values:
        raise PoliteTeacherError(f"{option} is empty; pass comma-separated numbers such as 0.5,0.6,0.7")
    return tuple(values)
