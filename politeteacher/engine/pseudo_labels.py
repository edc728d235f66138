"""Pseudo-labels from the teacher's detections: box-confidence and mask-score thresholds (§3).

A teacher detection becomes a pseudo box when its score > the box threshold (strict). Its mask, the
teacher's 28×28 probability pasted into the image at 0.5, is kept as a bitmask on the device, and is
*valid* (may supervise the mask loss) only when the teacher's raw predicted mask IoU > the mask
threshold (strict). The decision is made per region, so one image never decides for another.

`teacher_pseudo_labels` is the whole of it, model call included: `train-ssl` calls it at every
semi-supervised step and `politeteacher pseudo-label` calls it on image files, so the two cannot differ.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

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
        # For statistics and views; as_targets leaves them out of what the student sees.
        gt.scores = det.scores.detach()
        gt.maskiou = det.maskiou.detach()
        labels.append(gt)
    return labels


def teacher_pseudo_labels(
    teacher,
    weak_inputs: Sequence[dict],
    postprocess: str,
    box_threshold: float,
    mask_iou_threshold: float,
    return_all: bool = False,
):
    """The teacher's pseudo-labels for a batch of weak views (model inputs): its detections with
    score > `box_threshold` (the mask and MaskIoU heads only run on those), made into pseudo-labels by
    `make_pseudo_labels`. With `return_all`: (pseudo-labels, every detection before the box
    threshold, as `predict_for_pseudo_labels` gives them) to show what the threshold rejected."""
    out = teacher.predict_for_pseudo_labels(
        list(weak_inputs), postprocess=postprocess, score_threshold=box_threshold, return_all=return_all
    )
    detections, everything = out if return_all else (out, None)
    labels = make_pseudo_labels(detections, box_threshold, mask_iou_threshold)
    return (labels, everything) if return_all else labels


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


def iou_matrices(pseudo: Instances, gt: Instances) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(box IoU, mask IoU, same class), each pseudo-labels × ground truths, on the CPU."""
    p, g = pseudo.to("cpu"), gt.to("cpu")
    if len(g) == 0:  # an image without objects has no gt_masks field to read
        empty = torch.zeros((len(p), 0))
        return empty, empty, empty.bool()
    same = p.gt_classes[:, None] == g.gt_classes[None, :]
    box_iou = pairwise_iou(p.gt_boxes, g.gt_boxes)
    h, w = p.image_size
    pm, gm = _mask_matrix(p.gt_masks, h, w), _mask_matrix(g.gt_masks, h, w)
    inter = pm @ gm.T
    mask_iou = inter / (pm.sum(1)[:, None] + gm.sum(1)[None, :] - inter).clamp(min=1.0)
    return box_iou, mask_iou, same


def match_count(iou: torch.Tensor, same_class: torch.Tensor, scores: torch.Tensor) -> int:
    """True positives of a greedy one-to-one matching by descending score at IoU >= 0.5, class-aware
    (each ground truth is matched once, to the free one of highest IoU)."""
    num_pred, num_gt = iou.shape
    taken = torch.zeros(num_gt, dtype=torch.bool)
    tp = 0
    ok = (iou >= 0.5) & same_class
    for i in torch.argsort(scores, descending=True, stable=True).tolist():
        candidates = ok[i] & ~taken
        if candidates.any():
            j = int(torch.argmax(torch.where(candidates, iou[i], torch.full_like(iou[i], -1.0))))
            taken[j] = True
            tp += 1
    return tp


def ratio(num: int, den: int) -> Optional[float]:
    """num / den, or None (undefined) when there is nothing to measure: precision without predictions,
    recall without ground truth. Never 0 for "no data"."""
    return num / den if den else None


def pseudo_label_stats(
    pseudo: Sequence[Instances], hidden: Optional[Sequence[Optional[Instances]]] = None
) -> Dict[str, float]:
    """What a user needs to judge the thresholds: pseudo boxes per image, fraction of valid masks, mean
    teacher score and, on the images with hidden ground truth (raw images have none), box and mask
    precision and recall at IoU 0.5 (hidden ground truth is only ever compared, never trained on).
    Mask figures count the valid masks only (those that supervise the mask loss). A figure with nothing
    to measure (no pseudo box, no valid mask, no ground truth, no image with ground truth) is left out,
    never reported as 0."""
    n = max(len(pseudo), 1)
    num = sum(len(p) for p in pseudo)
    stats = {
        "pseudo/boxes_per_image": num / n,
        "pseudo/valid_mask_fraction": (
            sum(int(p.gt_mask_valid.sum()) for p in pseudo) / num if num else 0.0
        ),
        "pseudo/mean_score": (sum(float(p.scores.sum()) for p in pseudo) / num if num else 0.0),
    }
    tp, predictions, num_gt = {"box": 0, "mask": 0}, {"box": 0, "mask": 0}, 0
    for p, g in zip(pseudo, hidden or [None] * len(pseudo)):
        if g is None:  # a raw image: nothing to compare with
            continue
        box_iou, mask_iou, same = iou_matrices(p, g)
        valid, scores = p.gt_mask_valid.cpu(), p.scores.cpu()
        tp["box"] += match_count(box_iou, same, scores)
        tp["mask"] += match_count(mask_iou[valid], same[valid], scores[valid])
        predictions["box"] += len(p)
        predictions["mask"] += int(valid.sum())
        num_gt += len(g)
    for kind in ("box", "mask"):
        for name, value in (("precision", ratio(tp[kind], predictions[kind])), ("recall", ratio(tp[kind], num_gt))):
            if value is not None:
                stats[f"pseudo/{kind}_{name}"] = value
    return stats
