"""MaskIoU head (mask scoring): predicts the IoU of each predicted mask with its object
(centermask.md §5), with its regression target and loss.
"""
from __future__ import annotations

from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.structures import BitMasks, PolygonMasks
from detectron2.structures.masks import polygon_area
from detectron2.utils.registry import Registry

__all__ = [
    "ROI_MASKIOU_HEAD_REGISTRY",
    "MaskIoUHead",
    "build_maskiou_head",
    "maskiou_head_input",
    "gt_area_ratios",
    "clip_polygon_to_box",
    "maskiou_targets",
    "maskiou_loss",
]

ROI_MASKIOU_HEAD_REGISTRY = Registry("ROI_MASKIOU_HEAD")
ROI_MASKIOU_HEAD_REGISTRY.__doc__ = """
Registry for MaskIoU heads: (region features ⊕ mask) → predicted mask IoU per class.
The registered object is called with `obj(cfg, input_shape)`.
"""


def build_maskiou_head(cfg, input_shape: ShapeSpec) -> nn.Module:
    """Build the head named by ``cfg.MODEL.ROI_MASKIOU_HEAD.NAME``."""
    return ROI_MASKIOU_HEAD_REGISTRY.get(cfg.MODEL.ROI_MASKIOU_HEAD.NAME)(cfg, input_shape)


@ROI_MASKIOU_HEAD_REGISTRY.register()
class MaskIoUHead(nn.Module):
    """4 × [conv3×3 + ReLU] (the last with stride 2) → fc → ReLU → fc → ReLU → fc(num_classes).

    Input: (R, C + 1, S, S): pooled region features and the 2×2-max-pooled mask probability
    (see :func:`maskiou_head_input`). ``input_shape`` is the pooled features' shape (C, S×S);
    the head adds the one mask channel itself.
    """

    @configurable
    def __init__(
        self,
        input_shape: ShapeSpec,
        *,
        num_classes: int,
        conv_dims: List[int],
        fc_dim: int,
    ):
        super().__init__()
        channels = input_shape.channels + 1
        resolution = input_shape.height
        self.convs: List[nn.Module] = []
        for k, dim in enumerate(conv_dims):
            stride = 2 if k == len(conv_dims) - 1 else 1
            conv = Conv2d(channels, dim, 3, stride=stride, padding=1, activation=nn.ReLU(inplace=True))
            self.add_module(f"maskiou_fcn{k + 1}", conv)
            self.convs.append(conv)
            channels = dim
            resolution = (resolution - 1) // stride + 1
        self.maskiou_fc1 = nn.Linear(channels * resolution * resolution, fc_dim)
        self.maskiou_fc2 = nn.Linear(fc_dim, fc_dim)
        self.maskiou = nn.Linear(fc_dim, num_classes)

        for layer in self.convs + [self.maskiou_fc1, self.maskiou_fc2]:
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.constant_(layer.bias, 0.0)
        nn.init.normal_(self.maskiou.weight, std=0.01)
        nn.init.constant_(self.maskiou.bias, 0.0)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        c = cfg.MODEL.ROI_MASKIOU_HEAD
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "conv_dims": [c.CONV_DIM] * c.NUM_CONV,
            "fc_dim": c.FC_DIM,
        }

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = conv(x)
        x = torch.flatten(x, start_dim=1)
        x = F.relu_(self.maskiou_fc1(x))
        x = F.relu_(self.maskiou_fc2(x))
        return self.maskiou(x)


def maskiou_head_input(region_features: Tensor, mask_probs: Tensor) -> Tensor:
    """Concatenate (R, C, S, S) region features with the (R, 1, 2S, 2S) mask probability
    max-pooled 2×2 to S×S."""
    return torch.cat([region_features, F.max_pool2d(mask_probs, kernel_size=2, stride=2)], dim=1)


def clip_polygon_to_box(polygon: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Clip a polygon ((K, 2) or flat [x0, y0, x1, y1, ...]) to an axis-aligned box XYXY
    (Sutherland–Hodgman, vectorised per edge). Returns (K', 2); empty when they do not overlap."""
    points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    for axis, value, keep_greater in (
        (0, box[0], True),
        (0, box[2], False),
        (1, box[1], True),
        (1, box[3], False),
    ):
        if len(points) == 0:
            break
        prev = np.roll(points, 1, axis=0)
        coord, prev_coord = points[:, axis], prev[:, axis]
        inside = coord >= value if keep_greater else coord <= value
        prev_inside = prev_coord >= value if keep_greater else prev_coord <= value
        crossing = inside != prev_inside
        denom = np.where(crossing, coord - prev_coord, 1.0)
        t = np.where(crossing, (value - prev_coord) / denom, 0.0)
        intersections = prev + t[:, None] * (points - prev)
        # For each vertex, in order: the edge's intersection (if it crosses), then the vertex (if in).
        candidates = np.stack([intersections, points], axis=1).reshape(-1, 2)
        keep = np.stack([crossing, inside], axis=1).reshape(-1)
        points = candidates[keep]
    return points


def _polygon_areas_in_boxes(
    polygons: PolygonMasks, gt_index: Tensor, boxes: Tensor
) -> tuple[Tensor, Tensor]:
    full, inside = [], []
    boxes_np = boxes.detach().cpu().numpy().astype(np.float64)
    full_per_gt = polygons.area().to(torch.float64)
    for idx, box in zip(gt_index.tolist(), boxes_np):
        area_in = 0.0
        for poly in polygons.polygons[idx]:
            clipped = clip_polygon_to_box(poly, box)
            if len(clipped) >= 3:
                area_in += float(polygon_area(clipped[:, 0], clipped[:, 1]))
        inside.append(area_in)
        full.append(float(full_per_gt[idx]))
    return torch.tensor(full, dtype=torch.float64), torch.tensor(inside, dtype=torch.float64)


def _bitmask_areas_in_boxes(
    bitmasks: BitMasks, gt_index: Tensor, boxes: Tensor
) -> tuple[Tensor, Tensor]:
    """Exact area of each gt bitmask inside a real-valued box (pixel (i, j) covers
    [j, j+1] × [i, i+1]; partially covered pixels count by their covered fraction)."""
    masks = bitmasks.tensor
    device = masks.device
    height, width = masks.shape[1:]
    boxes = boxes.to(device=device, dtype=torch.float32)
    gt_index = gt_index.to(device)
    xs = torch.arange(width, device=device, dtype=torch.float32)
    ys = torch.arange(height, device=device, dtype=torch.float32)
    # Coverage of each pixel column / row by each box: (R, W), (R, H).
    wx = (torch.minimum(boxes[:, 2:3], xs + 1) - torch.maximum(boxes[:, 0:1], xs)).clamp(0, 1)
    wy = (torch.minimum(boxes[:, 3:4], ys + 1) - torch.maximum(boxes[:, 1:2], ys)).clamp(0, 1)
    full = masks.flatten(1).sum(dim=1).to(torch.float64)[gt_index]
    inside = torch.zeros(len(gt_index), dtype=torch.float64, device=device)
    for g in torch.unique(gt_index).tolist():
        rows = (gt_index == g).nonzero(as_tuple=True)[0]
        m = masks[g].to(torch.float32)
        inside[rows] = ((wy[rows] @ m) * wx[rows]).sum(dim=1).to(torch.float64)
    return full, inside


def gt_area_ratios(gt_masks, gt_index: Tensor, boxes: Tensor) -> Tensor:
    """ratio = (area of gt ``gt_index[r]`` inside ``boxes[r]``) / (full area of that gt),
    clamped to [0, 1], floored at 1e-10; 1 for an empty ground truth. Shape (R,), on boxes' device.
    Exact for polygons (clipping + shoelace) and for bitmasks (pixel coverage)."""
    if boxes.shape[0] == 0:
        return torch.ones(0, dtype=torch.float32, device=boxes.device)
    if isinstance(gt_masks, BitMasks):
        full, inside = _bitmask_areas_in_boxes(gt_masks, gt_index, boxes)
    elif isinstance(gt_masks, PolygonMasks):
        full, inside = _polygon_areas_in_boxes(gt_masks, gt_index, boxes)
    else:
        raise TypeError(f"gt_masks must be PolygonMasks or BitMasks, got {type(gt_masks).__name__}")
    full, inside = full.to(boxes.device), inside.to(boxes.device)
    ratio = torch.where(full > 0, inside / full.clamp(min=1e-12), torch.ones_like(full))
    return ratio.clamp(min=1e-10, max=1.0).to(torch.float32)


def maskiou_targets(pred_mask_logits: Tensor, gt_crops: Tensor, area_ratios: Tensor) -> Tensor:
    """IoU between the binarised predicted masks (logit > 0) and the cropped gt masks, both
    (R, M, M), where the union counts the gt's full area: (gt pixels in the crop) / ratio."""
    pred = pred_mask_logits > 0
    gt = gt_crops.to(torch.bool)
    overlap = (pred & gt).flatten(1).sum(dim=1).to(torch.float32)
    pred_area = pred.flatten(1).sum(dim=1).to(torch.float32)
    gt_full_area = gt.flatten(1).sum(dim=1).to(torch.float32) / area_ratios.to(torch.float32)
    union = pred_area + gt_full_area - overlap
    return torch.where(union > 0, overlap / union.clamp(min=1e-6), torch.zeros_like(union))


def maskiou_loss(pred_iou: Tensor, target: Tensor, loss_weight: float = 1.0) -> Tensor:
    """½·(pred − target)² summed over samples with target > 0, divided by their count, × weight.
    Zero (graph-connected) when no sample qualifies."""
    positive = target > 0
    if not bool(positive.any()):
        return pred_iou.sum() * 0.0
    diff = pred_iou[positive] - target[positive]
    return loss_weight * 0.5 * (diff * diff).sum() / positive.sum()
