"""CenterMask ROI heads: FCOS detections → mask regions → SAG-Mask + MaskIoU (centermask.md §3–§5).

There is no box head: final boxes, classes and scores are FCOS's. In training the FCOS detections
(plus the ground-truth boxes) are matched to ground truth (IoU ≥ 0.5), sampled (512 / 0.25) and the
mask heads train on the foreground regions only.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat, nonzero_tuple
from detectron2.modeling.poolers import ROIPooler, convert_boxes_to_pooler_format
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, ROIHeads
from detectron2.modeling.roi_heads.mask_head import build_mask_head
from detectron2.structures import Boxes, ImageList, Instances, pairwise_iou
from detectron2.utils.events import get_event_storage

from .gt import with_gt_fields
from .mask_head import crop_gt_masks, mask_inference, mask_loss
from .maskiou_head import (
    build_maskiou_head,
    gt_area_ratios,
    maskiou_head_input,
    maskiou_loss,
    maskiou_targets,
)

__all__ = [
    "CenterMaskROIHeads",
    "AdaptiveLevelROIPooler",
    "assign_boxes_to_levels_by_ratio",
]


def assign_boxes_to_levels_by_ratio(
    box_lists: List[Boxes],
    image_sizes: Sequence[Tuple[int, int]],
    min_level: int,
    max_level: int,
) -> Tensor:
    """CenterMask Eq. 2: k = ⌈k_max − log2(A_image / A_box)⌉ with k_max = max_level, clamped to
    [min_level, max_level]; A_image = h·w of the unpadded input image. Returns k − min_level for
    the concatenated boxes."""
    image_areas = cat(
        [
            torch.full((len(b),), float(h * w), device=b.tensor.device, dtype=torch.float32)
            for b, (h, w) in zip(box_lists, image_sizes)
        ]
    )
    box_areas = cat([b.area() for b in box_lists]).to(torch.float32)
    levels = torch.ceil(max_level - torch.log2(image_areas / box_areas))
    levels = torch.clamp(levels, min=min_level, max=max_level)
    return levels.to(torch.int64) - min_level


class AdaptiveLevelROIPooler(ROIPooler):
    """detectron2's ROIPooler with a choice of level rule: "ratio" (CenterMask's box-to-image area
    ratio, needs the image sizes) or "area" (detectron2's canonical-size rule)."""

    def __init__(self, *args, assign_criterion: str = "ratio", **kwargs):
        super().__init__(*args, **kwargs)
        if assign_criterion not in ("ratio", "area"):
            raise ValueError(f"ASSIGN_CRITERION must be 'ratio' or 'area', got {assign_criterion!r}")
        self.assign_criterion = assign_criterion

    def forward(
        self,
        x: List[Tensor],
        box_lists: List[Boxes],
        image_sizes: Optional[Sequence[Tuple[int, int]]] = None,
    ) -> Tensor:
        if self.assign_criterion == "area":
            return super().forward(x, box_lists)
        if image_sizes is None:
            raise ValueError("the 'ratio' level rule needs the image sizes")
        if len(box_lists) != x[0].shape[0]:
            raise ValueError(f"{len(box_lists)} box lists for a batch of {x[0].shape[0]} images")
        pooler_fmt_boxes = convert_boxes_to_pooler_format(box_lists)
        if len(self.level_poolers) == 1:
            return self.level_poolers[0](x[0], pooler_fmt_boxes)
        levels = assign_boxes_to_levels_by_ratio(
            box_lists, image_sizes, self.min_level, self.max_level
        )
        out_h, out_w = self.output_size
        output = x[0].new_zeros((pooler_fmt_boxes.shape[0], x[0].shape[1], out_h, out_w))
        for level, pooler in enumerate(self.level_poolers):
            inds = nonzero_tuple(levels == level)[0]
            output.index_put_((inds,), pooler(x[level], pooler_fmt_boxes[inds]))
        return output


@ROI_HEADS_REGISTRY.register()
class CenterMaskROIHeads(ROIHeads):
    """Mask and MaskIoU heads on FCOS detections.

    ``forward(images, features, proposals, targets)``:
      training → ([], {"loss_mask", "loss_maskiou"}), proposals = FCOS detections (``pred_boxes``);
      inference → (detections with ``pred_masks`` (R, 1, 28, 28), ``maskiou``, ``mask_scores``), {}.
    Ground truth may carry BitMasks or PolygonMasks ``gt_masks`` and an optional bool
    ``gt_mask_valid``; only valid masks contribute to ``loss_mask`` (normalised per
    ``mask_loss_norm``), all foreground regions to ``loss_maskiou``.
    """

    @configurable
    def __init__(
        self,
        *,
        mask_in_features: List[str],
        mask_pooler: AdaptiveLevelROIPooler,
        mask_head: nn.Module,
        maskiou_head: Optional[nn.Module] = None,
        maskiou_loss_weight: float = 1.0,
        mask_loss_norm: str = "all",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if mask_loss_norm not in ("all", "valid"):
            raise ValueError(f"MASK_LOSS_NORM must be 'all' or 'valid', got {mask_loss_norm!r}")
        self.mask_in_features = list(mask_in_features)
        self.mask_pooler = mask_pooler
        self.mask_head = mask_head
        self.maskiou_on = maskiou_head is not None
        if maskiou_head is not None:
            self.maskiou_head = maskiou_head
        self.maskiou_loss_weight = maskiou_loss_weight
        self.mask_loss_norm = mask_loss_norm

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = super().from_config(cfg)  # matcher (IoU ≥ 0.5, no low-quality), 512 / 0.25, append gt
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError(f"mask features {in_features} must have equal channels, got {channels}")
        channels = channels.pop()
        resolution = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION
        pooler = AdaptiveLevelROIPooler(
            output_size=resolution,
            scales=tuple(1.0 / input_shape[f].stride for f in in_features),
            sampling_ratio=cfg.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO,
            pooler_type=cfg.MODEL.ROI_MASK_HEAD.POOLER_TYPE,
            assign_criterion=cfg.MODEL.ROI_MASK_HEAD.ASSIGN_CRITERION,
        )
        pooled_shape = ShapeSpec(channels=channels, height=resolution, width=resolution)
        ret.update(
            mask_in_features=in_features,
            mask_pooler=pooler,
            mask_head=build_mask_head(cfg, pooled_shape),
            maskiou_head=build_maskiou_head(cfg, pooled_shape) if cfg.MODEL.MASKIOU_ON else None,
            maskiou_loss_weight=cfg.MODEL.ROI_MASKIOU_HEAD.LOSS_WEIGHT,
            mask_loss_norm=cfg.MODEL.ROI_MASK_HEAD.MASK_LOSS_NORM,
        )
        return ret

    # ---- matching ----
    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: List[Instances], targets: List[Instances]
    ) -> List[Instances]:
        """Match detections (+ gt boxes) to ground truth, sample 512 at 25 % foreground, and return
        the foreground regions only, with fields ``proposal_boxes``, ``gt_classes``, ``gt_boxes``
        and ``gt_index`` (index into the image's ground truth)."""
        foreground = []
        for props, tgt in zip(proposals, targets):
            boxes = props.pred_boxes if props.has("pred_boxes") else props.proposal_boxes
            tgt = with_gt_fields(tgt, boxes.device)
            if self.proposal_append_gt:
                boxes = Boxes.cat([boxes, tgt.gt_boxes.to(boxes.device)])
            iou = pairwise_iou(tgt.gt_boxes, boxes)
            matched_idxs, matched_labels = self.proposal_matcher(iou)
            sampled, classes = self._sample_proposals(matched_idxs, matched_labels, tgt.gt_classes)
            fg = sampled[(classes >= 0) & (classes != self.num_classes)]
            regions = Instances(tgt.image_size)
            regions.proposal_boxes = boxes[fg]
            gt_index = matched_idxs[fg]
            regions.gt_index = gt_index
            regions.gt_classes = tgt.gt_classes[gt_index]
            regions.gt_boxes = tgt.gt_boxes[gt_index]
            foreground.append(regions)
        try:
            storage = get_event_storage()
        except AssertionError:  # no EventStorage outside a trainer
            storage = None
        if storage is not None:
            storage.put_scalar("roi_head/num_fg_samples", np.mean([len(r) for r in foreground]))
        return foreground

    # ---- forward ----
    def forward(
        self,
        images: ImageList,
        features: Dict[str, Tensor],
        proposals: List[Instances],
        targets: Optional[List[Instances]] = None,
    ) -> Tuple[List[Instances], Dict[str, Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("CenterMaskROIHeads in training mode needs targets")
            regions = self.label_and_sample_proposals(proposals, targets)
            return [], self._forward_mask_train(features, regions, targets)
        return self.forward_with_given_boxes(features, proposals), {}

    def _pool(self, features: Dict[str, Tensor], boxes: List[Boxes], sizes) -> Tensor:
        return self.mask_pooler([features[f] for f in self.mask_in_features], boxes, sizes)

    def _forward_mask_train(
        self, features: Dict[str, Tensor], regions: List[Instances], targets: List[Instances]
    ) -> Dict[str, Tensor]:
        boxes = [r.proposal_boxes for r in regions]
        region_features = self._pool(features, boxes, [r.image_size for r in regions])
        logits = self.mask_head(region_features)
        mask_size = logits.shape[-1]

        gt_classes, gt_crops, valid, ratios = [], [], [], []
        for r, tgt in zip(regions, targets):
            if len(r) == 0:
                continue
            box_tensor = r.proposal_boxes.tensor
            device = box_tensor.device
            gt_classes.append(r.gt_classes.to(torch.int64))
            if not tgt.has("gt_masks"):
                # Box-only ground truth: no mask supervision. An empty crop makes the MaskIoU
                # target 0, which also leaves these regions out of loss_maskiou.
                gt_crops.append(torch.zeros(len(r), mask_size, mask_size, dtype=torch.bool, device=device))
                valid.append(torch.zeros(len(r), dtype=torch.bool, device=device))
                ratios.append(torch.ones(len(r), device=device))
                continue
            gt_crops.append(crop_gt_masks(tgt.gt_masks, r.gt_index, box_tensor, mask_size))
            if tgt.has("gt_mask_valid"):
                valid.append(tgt.gt_mask_valid.to(device, torch.bool)[r.gt_index])
            else:
                valid.append(torch.ones(len(r), dtype=torch.bool, device=device))
            if self.maskiou_on:
                ratios.append(gt_area_ratios(tgt.gt_masks, r.gt_index, box_tensor))

        if not gt_classes:  # no foreground region in the batch: zero losses on the graph
            losses = {"loss_mask": logits.sum() * 0.0}
            if self.maskiou_on:
                probs = logits.new_zeros((0, 1) + tuple(logits.shape[2:]))
                pred = self.maskiou_head(maskiou_head_input(region_features, probs))
                losses["loss_maskiou"] = pred.sum() * 0.0
            return losses

        gt_classes, gt_crops, valid = cat(gt_classes), cat(gt_crops), cat(valid)
        index = torch.arange(logits.shape[0], device=logits.device)
        gt_class_logits = logits[index, gt_classes]
        losses = {"loss_mask": mask_loss(gt_class_logits, gt_crops, valid, self.mask_loss_norm)}
        if self.maskiou_on:
            # Not detached (centermask.md §5): loss_maskiou also trains the mask head through
            # the predicted mask, as the reference does.
            probs = gt_class_logits.sigmoid()[:, None]
            pred_iou = self.maskiou_head(maskiou_head_input(region_features, probs))
            target = maskiou_targets(gt_class_logits.detach(), gt_crops, cat(ratios))
            losses["loss_maskiou"] = maskiou_loss(
                pred_iou[index, gt_classes], target, self.maskiou_loss_weight
            )
        return losses

    def forward_with_given_boxes(
        self, features: Dict[str, Tensor], instances: List[Instances]
    ) -> List[Instances]:
        """Add ``pred_masks`` (R, 1, M, M probabilities of the predicted class), ``maskiou`` (raw
        predicted IoU of the predicted class) and ``mask_scores`` = scores · maskiou to
        detections with ``pred_boxes``, ``pred_classes`` (and ``scores``)."""
        boxes = [inst.pred_boxes for inst in instances]
        region_features = self._pool(features, boxes, [inst.image_size for inst in instances])
        logits = self.mask_head(region_features)
        probs = mask_inference(logits, instances)
        counts = [len(inst) for inst in instances]
        for inst, p in zip(instances, probs.split(counts)):
            inst.pred_masks = p
        if self.maskiou_on:
            pred_iou = self.maskiou_head(maskiou_head_input(region_features, probs))
            classes = cat([inst.pred_classes for inst in instances])
            maskiou = pred_iou[torch.arange(len(classes), device=pred_iou.device), classes]
            for inst, m in zip(instances, maskiou.split(counts)):
                inst.maskiou = m
                inst.mask_scores = inst.scores * m if inst.has("scores") else m
        return instances
