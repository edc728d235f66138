"""Pseudo-labels from the teacher's detections: box-confidence and mask-score thresholds (§3).

A teacher detection becomes a pseudo box when its score > the box threshold (strict). Its mask, the
teacher's 28×28 probability pasted into the image at 0.5, is kept as a bitmask on the device, and is
*valid* (may supervise the mask loss) only when the teacher's raw predicted mask IoU > the mask
threshold (strict). The decision is made per region, so one image never decides for another.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
from detectron2.layers import paste_masks_in_image
from detectron2.structures import BitMasks, Boxes, Instances, PolygonMasks, pairwise_iou


def make_pseudo_labels(
    teacher_outputs: Sequence[Instances], box_threshold: float, mask_iou_threshold: float
) -> List[Instances]:
    """Turn teacher detections (input-image coordinates) into ground-truth-style Instances with
    `gt_boxes`, `gt_classes`, `gt_masks` (BitMasks) and `gt_mask_valid` (bool per instance)."""
    labels = []
    for det in teacher_outputs:
        det = det[det.scores > box_threshold]
        h, w = det.image_size
        boxes = det.pred_boxes.tensor.detach()
        if len(det):
            masks = paste_masks_in_image(det.pred_masks[:, 0], Boxes(boxes), (h, w), threshold=0.5)
        else:
            masks = torch.zeros((0, h, w), dtype=torch.bool, device=boxes.device)
        gt = Instances((h, w))
        gt.gt_boxes = Boxes(boxes.clone())
        gt.gt_classes = det.pred_classes.clone()
        gt.gt_masks = BitMasks(masks)
        gt.gt_mask_valid = det.maskiou > mask_iou_threshold
        gt.scores = det.scores.detach()  # for statistics; removed before the student sees it
        labels.append(gt)
    return labels


def as_targets(pseudo: Instances) -> Instances:
    """The fields the student's losses read: no teacher scores travel into the model."""
    out = Instances(pseudo.image_size)
    for name in ("gt_boxes", "gt_classes", "gt_masks", "gt_mask_valid"):
        out.set(name, pseudo.get(name))
    return out


def _mask_matrix(masks, h: int, w: int) -> torch.Tensor:
    if isinstance(masks, PolygonMasks):
        masks = BitMasks.from_polygon_masks(masks, h, w)
    return masks.tensor.flatten(1).float()


def _precision_recall(iou: torch.Tensor, same_class: torch.Tensor, scores: torch.Tensor):
    """Greedy one-to-one matching by descending score at IoU >= 0.5, class-aware.
    Returns (true positives, number of predictions, number of ground truths)."""
    num_pred, num_gt = iou.shape
    taken = torch.zeros(num_gt, dtype=torch.bool)
    tp = 0
    ok = (iou >= 0.5) & same_class
    for i in torch.argsort(scores, descending=True).tolist():
        candidates = ok[i] & ~taken
        if candidates.any():
            j = int(torch.argmax(torch.where(candidates, iou[i], torch.full_like(iou[i], -1.0))))
            taken[j] = True
            tp += 1
    return tp, num_pred, num_gt


def pseudo_label_stats(
    pseudo: Sequence[Instances], hidden: Optional[Sequence[Optional[Instances]]] = None
) -> Dict[str, float]:
    """What a user needs to judge the thresholds: pseudo boxes per image, fraction of valid masks, mean
    teacher score and, when the unlabelled images have hidden ground truth, box and mask precision and
    recall at IoU 0.5 (hidden ground truth is only ever compared, never trained on)."""
    n = max(len(pseudo), 1)
    num = sum(len(p) for p in pseudo)
    stats = {
        "pseudo/boxes_per_image": num / n,
        "pseudo/valid_mask_fraction": (
            sum(int(p.gt_mask_valid.sum()) for p in pseudo) / num if num else 0.0
        ),
        "pseudo/mean_score": (sum(float(p.scores.sum()) for p in pseudo) / num if num else 0.0),
    }
    if hidden is None or any(h is None for h in hidden):
        return stats
    counts = {"box": [0, 0, 0], "mask": [0, 0, 0]}
    for p, g in zip(pseudo, hidden):
        p, g = p.to("cpu"), g.to("cpu")
        same = p.gt_classes[:, None] == g.gt_classes[None, :]
        box_iou = pairwise_iou(p.gt_boxes, g.gt_boxes)
        h, w = p.image_size
        pm, gm = _mask_matrix(p.gt_masks, h, w), _mask_matrix(g.gt_masks, h, w)
        inter = pm @ gm.T
        mask_iou = inter / (pm.sum(1)[:, None] + gm.sum(1)[None, :] - inter).clamp(min=1.0)
        for kind, iou in (("box", box_iou), ("mask", mask_iou)):
            for i, v in enumerate(_precision_recall(iou, same, p.scores)):
                counts[kind][i] += v
    for kind, (tp, num_pred, num_gt) in counts.items():
        stats[f"pseudo/{kind}_precision"] = tp / num_pred if num_pred else 0.0
        stats[f"pseudo/{kind}_recall"] = tp / num_gt if num_gt else 0.0
    return stats
