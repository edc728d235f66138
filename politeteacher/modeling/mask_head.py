"""SAG-Mask: the spatial-attention-guided mask head and its loss (centermask.md §4).

The mask loss supports pseudo-label training (polite_teacher.md §3): when the matched ground truth
carries ``gt_mask_valid``, only regions with a valid mask contribute, normalised either by all
foreground regions ("all", the paper's) or by the valid ones ("valid").
"""
from __future__ import annotations

from typing import List, Optional

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detectron2.config import configurable
from detectron2.layers import Conv2d, ConvTranspose2d, ROIAlign, ShapeSpec, cat
from detectron2.modeling.roi_heads.mask_head import ROI_MASK_HEAD_REGISTRY
from detectron2.structures import BitMasks, Instances

__all__ = [
    "SpatialAttention",
    "SpatialAttentionMaskHead",
    "crop_gt_masks",
    "mask_loss",
    "mask_inference",
]


class SpatialAttention(nn.Module):
    """Channel-wise mean and max (2 maps) → conv3×3 2→1 without bias → sigmoid → rescale input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size=3, padding=1, bias=False)
        weight_init.c2_msra_fill(self.conv)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.max(dim=1, keepdim=True).values], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


@ROI_MASK_HEAD_REGISTRY.register()
class SpatialAttentionMaskHead(nn.Module):
    """4 × [conv3×3 + ReLU] → spatial attention → deconv 2×2/2 + ReLU → 1×1 predictor.

    ``forward(x)`` maps pooled region features (R, C_in, 14, 14) to class-specific mask logits
    (R, num_classes, 28, 28); losses live in :func:`mask_loss`.
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, num_classes: int, conv_dims: List[int]):
        super().__init__()
        if not conv_dims:
            raise ValueError("SpatialAttentionMaskHead needs at least one conv dimension")
        channels = input_shape.channels
        self.conv_norm_relus = []
        for k, dim in enumerate(conv_dims[:-1]):
            conv = Conv2d(channels, dim, 3, padding=1, bias=True, activation=nn.ReLU(inplace=True))
            self.add_module(f"mask_fcn{k + 1}", conv)
            self.conv_norm_relus.append(conv)
            channels = dim
        self.spatialAtt = SpatialAttention()
        self.deconv = ConvTranspose2d(channels, conv_dims[-1], kernel_size=2, stride=2)
        self.predictor = Conv2d(conv_dims[-1], num_classes, kernel_size=1)

        for layer in self.conv_norm_relus + [self.deconv]:
            weight_init.c2_msra_fill(layer)
        nn.init.normal_(self.predictor.weight, std=0.001)
        nn.init.constant_(self.predictor.bias, 0.0)

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec):
        conv_dim = cfg.MODEL.ROI_MASK_HEAD.CONV_DIM
        return {
            "input_shape": input_shape,
            "num_classes": cfg.MODEL.ROI_HEADS.NUM_CLASSES,
            "conv_dims": [conv_dim] * (cfg.MODEL.ROI_MASK_HEAD.NUM_CONV + 1),
        }

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.conv_norm_relus:
            x = layer(x)
        x = self.spatialAtt(x)
        x = F.relu_(self.deconv(x))
        return self.predictor(x)


def crop_gt_masks(gt_masks, gt_index: Tensor, boxes: Tensor, mask_size: int) -> Tensor:
    """Crop ground-truth mask ``gt_index[r]`` to ``boxes[r]`` and resize it to mask_size² (bool).

    ``gt_masks`` are the masks of one image (PolygonMasks or BitMasks, one per gt instance). For
    BitMasks the crop is ROIAlign (aligned) of the full masks, as ``BitMasks.crop_and_resize`` does,
    without materialising one full-image mask per region.
    """
    if boxes.shape[0] == 0:
        return torch.zeros(0, mask_size, mask_size, dtype=torch.bool, device=boxes.device)
    if isinstance(gt_masks, BitMasks):
        masks = gt_masks.tensor
        rois = torch.cat([gt_index.to(device=masks.device, dtype=boxes.dtype)[:, None],
                          boxes.to(masks.device)], dim=1)
        crops = ROIAlign((mask_size, mask_size), 1.0, 0, aligned=True).forward(
            masks[:, None].to(dtype=torch.float32), rois.to(torch.float32)
        )
        return (crops[:, 0] >= 0.5).to(device=boxes.device)
    selected = gt_masks[gt_index.cpu()]
    return selected.crop_and_resize(boxes, mask_size).to(device=boxes.device)


def mask_loss(
    logits: Tensor, gt_masks: Tensor, valid: Optional[Tensor] = None, norm: str = "all"
) -> Tensor:
    """Per-pixel BCE-with-logits, averaged per region, over regions with a valid mask.

    Args:
        logits: (R, M, M) mask logits of each region's ground-truth class.
        gt_masks: (R, M, M) cropped ground-truth masks (bool or 0/1).
        valid: (R,) bool; None = all valid.
        norm: "all" → Σ_valid region loss / R (all foreground regions);
              "valid" → mean over the valid regions.
    With no valid region the loss is 0 and stays connected to the graph.
    """
    if norm not in ("all", "valid"):
        raise ValueError(f"mask loss normalisation must be 'all' or 'valid', got {norm!r}")
    if valid is None:
        valid = torch.ones(logits.shape[0], dtype=torch.bool, device=logits.device)
    valid = valid.to(device=logits.device, dtype=torch.bool)
    if logits.shape[0] == 0 or not bool(valid.any()):
        return logits.sum() * 0.0
    per_region = F.binary_cross_entropy_with_logits(
        logits[valid], gt_masks[valid].to(dtype=logits.dtype), reduction="none"
    ).mean(dim=(1, 2))
    if norm == "all":
        return per_region.sum() / logits.shape[0]
    return per_region.mean()


def mask_inference(logits: Tensor, instances: List[Instances]) -> Tensor:
    """Sigmoid of each detection's predicted-class channel: (R, 1, M, M), in concatenation order."""
    classes = cat([inst.pred_classes for inst in instances]) if instances else None
    if classes is None or classes.numel() == 0:
        return logits.new_zeros((0, 1) + tuple(logits.shape[2:])).sigmoid()
    index = torch.arange(logits.shape[0], device=logits.device)
    return logits[index, classes][:, None].sigmoid()
