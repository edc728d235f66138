"""Pictures of pseudo-labels: overlays and the histograms of the two thresholded quantities.

One style everywhere (`pseudo-label`, the training run's `pseudo/` folder and TensorBoard), so a user
learns it once:
- valid pseudo-label (box and mask supervise the student): filled mask, solid green box;
- invalid mask (mask IoU not above its threshold; the box alone supervises): solid orange box, no mask;
- rejected detection (score not above the box threshold): dotted grey box.
"""
from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np
import torch
from detectron2.structures import Instances
from detectron2.utils.visualizer import Visualizer
from matplotlib.figure import Figure

VALID = (0.1, 0.75, 0.2)
BOX_ONLY = (1.0, 0.55, 0.0)
REJECTED = (0.6, 0.6, 0.6)
# Rejected detections drawn at most (the highest-scoring ones): the teacher returns up to
# MODEL.FCOS.POST_NMS_TOPK_TRAIN boxes, which would hide the image.
MAX_REJECTED = 20


def view_rgb(weak_input: dict, input_format: str) -> np.ndarray:
    """The RGB (H, W, 3) uint8 image of a model input (a weak view: CHW in INPUT.FORMAT)."""
    image = weak_input["image"].permute(1, 2, 0).cpu().numpy()
    if input_format == "BGR":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image.astype(np.uint8))


def draw_pseudo_labels(
    rgb: np.ndarray,
    labels: Instances,
    names: Sequence[str],
    rejected: Optional[Instances] = None,
) -> np.ndarray:
    """The image with its pseudo-labels (and the rejected detections, when given) in the style of the
    module doc; each kept box is labelled `class score` and its mask IoU."""
    vis = Visualizer(rgb, None, scale=max(1.0, 320 / max(rgb.shape[:2])))
    if rejected is not None and len(rejected):
        order = torch.argsort(rejected.scores, descending=True)[:MAX_REJECTED]
        for box in rejected.pred_boxes.tensor[order].tolist():
            vis.draw_box(box, alpha=0.9, edge_color=REJECTED, line_style=":")
    labels = labels.to("cpu")
    for i in range(len(labels)):
        box = labels.gt_boxes.tensor[i].tolist()
        valid = bool(labels.gt_mask_valid[i])
        color = VALID if valid else BOX_ONLY
        if valid:
            vis.draw_binary_mask(labels.gt_masks.tensor[i].numpy().astype(np.uint8), color=color, alpha=0.4)
        vis.draw_box(box, alpha=0.9, edge_color=color)
        c = int(labels.gt_classes[i])
        name = names[c] if c < len(names) else str(c)
        text = f"{name} {float(labels.scores[i]):.2f}"
        if labels.has("maskiou"):
            text += f" iou {float(labels.maskiou[i]):.2f}"
        vis.draw_text(text, (box[0], box[1]), color=color, horizontal_alignment="left",
                      font_size=vis._default_font_size * 0.8)
    return vis.get_output().get_image()


def histograms_png(
    scores: Sequence[float], mask_ious: Sequence[float], box_threshold: float, mask_iou_threshold: float
) -> bytes:
    """A PNG with two histograms: the teacher's detection scores with the box threshold marked, and
    the predicted mask IoU of the pseudo boxes with the mask-IoU threshold marked."""
    fig = Figure(figsize=(9, 3.2), constrained_layout=True)
    axes = fig.subplots(1, 2)
    for ax, values, threshold, title in (
        (axes[0], scores, box_threshold, "detection score (all detections)"),
        (axes[1], mask_ious, mask_iou_threshold, "predicted mask IoU (pseudo boxes)"),
    ):
        values = np.asarray(list(values), dtype=float)
        ax.hist(values, bins=np.linspace(min(0.0, values.min(initial=0.0)), max(1.0, values.max(initial=1.0)), 41),
                color="#4c72b0")
        ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
        kept = int((values > threshold).sum())
        ax.set_title(f"{title}: {kept} of {len(values)} above", fontsize=9)
        ax.set_ylabel("count")
        ax.legend(fontsize=8, loc="upper left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
