"""CenterMask ROI heads: adaptive level assignment, matching, mask-validity semantics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detectron2.layers import ShapeSpec
from detectron2.modeling.matcher import Matcher
from detectron2.structures import BitMasks, Boxes, ImageList, Instances, PolygonMasks
from detectron2.structures.masks import polygons_to_bitmask

from politeteacher.modeling.mask_head import SpatialAttentionMaskHead
from politeteacher.modeling.maskiou_head import MaskIoUHead
from politeteacher.modeling.roi_heads import (
    AdaptiveLevelROIPooler,
    CenterMaskROIHeads,
    assign_boxes_to_levels_by_ratio,
)


def test_level_assignment_at_quarter_and_half_of_the_image():
    # 100 × 100 image (area 10000): ≤ ¼ → P3, ≤ ½ → P4, larger → P5.
    boxes = Boxes(torch.tensor([
        [0.0, 0.0, 1.0, 1.0],     # tiny
        [0.0, 0.0, 50.0, 50.0],   # exactly ¼
        [0.0, 0.0, 50.0, 51.0],   # just above ¼
        [0.0, 0.0, 50.0, 100.0],  # exactly ½
        [0.0, 0.0, 50.5, 100.0],  # just above ½
        [0.0, 0.0, 100.0, 100.0],  # the whole image
    ]))
    levels = assign_boxes_to_levels_by_ratio([boxes], [(100, 100)], min_level=3, max_level=5)
    assert levels.tolist() == [0, 0, 1, 1, 2, 2]
    # The image size matters, not the box size alone: the same box is "small" in a larger image.
    levels = assign_boxes_to_levels_by_ratio([boxes[4:5]], [(200, 200)], 3, 5)
    assert levels.tolist() == [0]


def test_pooler_reads_the_assigned_level():
    pooler = AdaptiveLevelROIPooler(4, (1 / 8, 1 / 16, 1 / 32), 0, "ROIAlignV2", assign_criterion="ratio")
    feats = [torch.full((1, 2, 32, 32), 3.0), torch.full((1, 2, 16, 16), 4.0), torch.full((1, 2, 8, 8), 5.0)]
    boxes = Boxes(torch.tensor([[10.0, 10.0, 40.0, 40.0], [0.0, 0.0, 200.0, 100.0], [0.0, 0.0, 256.0, 256.0]]))
    out = pooler(feats, [boxes], [(256, 256)])
    assert out.shape == (3, 2, 4, 4)
    assert [round(v) for v in out[:, 0, 2, 2].tolist()] == [3, 4, 5]
    with pytest.raises(ValueError):
        pooler(feats, [boxes])  # the ratio rule needs the image sizes
    stock = AdaptiveLevelROIPooler(4, (1 / 8, 1 / 16, 1 / 32), 0, "ROIAlignV2", assign_criterion="area")
    assert stock(feats, [boxes]).shape == (3, 2, 4, 4)


def _heads(norm="all", channels=8, num_classes=2):
    torch.manual_seed(0)
    shape = ShapeSpec(channels=channels, height=14, width=14)
    heads = CenterMaskROIHeads(
        num_classes=num_classes,
        batch_size_per_image=512,
        positive_fraction=0.25,
        proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False),
        mask_in_features=["p3", "p4", "p5"],
        mask_pooler=AdaptiveLevelROIPooler(14, (1 / 8, 1 / 16, 1 / 32), 0, "ROIAlignV2"),
        mask_head=SpatialAttentionMaskHead(shape, num_classes=num_classes, conv_dims=[channels] * 3),
        maskiou_head=MaskIoUHead(shape, num_classes=num_classes, conv_dims=[channels] * 2, fc_dim=16),
        mask_loss_norm=norm,
    )
    torch.nn.init.normal_(heads.mask_head.predictor.weight, std=0.3)  # non-trivial mask logits
    return heads


def _features(seed=0, channels=8):
    g = torch.Generator().manual_seed(seed)
    return {f"p{k}": torch.randn(1, channels, 128 // 2**k, 128 // 2**k, generator=g) for k in (3, 4, 5)}


def _targets(valid=None, masks="polygon", second_mask=None):
    polys = [[10.0, 10.0, 50.0, 10.0, 50.0, 40.0, 10.0, 40.0], [60.0, 60.0, 100.0, 60.0, 80.0, 110.0]]
    if second_mask is not None:
        polys[1] = second_mask
    inst = Instances((128, 128))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 10.0, 50.0, 40.0], [60.0, 60.0, 100.0, 110.0]]))
    inst.gt_classes = torch.tensor([0, 1])
    if masks == "polygon":
        inst.gt_masks = PolygonMasks([[p] for p in polys])
    else:
        inst.gt_masks = BitMasks(torch.as_tensor(np.stack([polygons_to_bitmask([np.array(p)], 128, 128) for p in polys])))
    if valid is not None:
        inst.gt_mask_valid = torch.tensor(valid)
    return inst


def _detections():
    det = Instances((128, 128))
    det.pred_boxes = Boxes(torch.tensor([[12.0, 11.0, 49.0, 41.0], [61.0, 58.0, 99.0, 108.0], [0.0, 90.0, 20.0, 120.0]]))
    det.scores = torch.tensor([0.9, 0.8, 0.7])
    det.pred_classes = torch.tensor([0, 1, 1])
    return det


def _train_losses(heads, targets, feats=None):
    heads.train()
    feats = feats or _features()
    images = ImageList(torch.zeros(1, 3, 128, 128), [(128, 128)])
    torch.manual_seed(1)
    _, losses = heads(images, feats, [_detections()], [targets])
    return losses


def test_matching_uses_detections_and_gt_foreground_only():
    heads = _heads()
    (regions,) = heads.label_and_sample_proposals([_detections()], [_targets()])
    # 2 matched detections + 2 gt boxes; the detection that overlaps nothing is dropped.
    assert len(regions) == 4
    assert sorted(regions.gt_index.tolist()) == [0, 0, 1, 1]
    assert sorted(regions.gt_classes.tolist()) == [0, 0, 1, 1]


def test_invalid_masks_contribute_nothing_to_loss_mask():
    heads = _heads("all")
    small = [60.0, 60.0, 70.0, 60.0, 70.0, 70.0]

    def mask_grad(losses):
        heads.zero_grad()
        losses["loss_mask"].backward()
        return heads.mask_head.predictor.weight.grad.clone()

    base = _train_losses(heads, _targets(valid=[True, False]))
    other = _train_losses(heads, _targets(valid=[True, False], second_mask=small))
    # Changing the invalid gt's mask changes nothing in loss_mask or its gradients ...
    assert base["loss_mask"].item() == pytest.approx(other["loss_mask"].item(), abs=1e-7)
    assert torch.allclose(mask_grad(base), mask_grad(other), atol=1e-8)
    # ... but does change it when that mask is valid, and loss_maskiou uses every region.
    v1 = _train_losses(heads, _targets(valid=[True, True]))
    v2 = _train_losses(heads, _targets(valid=[True, True], second_mask=small))
    assert abs(v1["loss_mask"].item() - v2["loss_mask"].item()) > 1e-4
    assert abs(base["loss_maskiou"].item() - other["loss_maskiou"].item()) > 1e-6


def test_all_versus_valid_normalisation():
    all_norm = _train_losses(_heads("all"), _targets(valid=[True, False]))["loss_mask"]
    valid_norm = _train_losses(_heads("valid"), _targets(valid=[True, False]))["loss_mask"]
    # 4 foreground regions, 2 of them (gt 0) valid: "all" divides by 4, "valid" by 2.
    assert all_norm.item() == pytest.approx(valid_norm.item() / 2, rel=1e-5)
    no_flag = _train_losses(_heads("all"), _targets())["loss_mask"]
    assert no_flag.item() > all_norm.item()  # without the field every region counts


def test_no_valid_mask_gives_connected_zero_loss():
    heads = _heads()
    losses = _train_losses(heads, _targets(valid=[False, False]))
    assert losses["loss_mask"].item() == 0 and losses["loss_mask"].requires_grad
    assert losses["loss_maskiou"].requires_grad
    sum(losses.values()).backward()
    assert heads.mask_head.predictor.weight.grad is not None


def test_loss_maskiou_trains_the_mask_head_through_the_predicted_mask():
    # centermask.md §5: the MaskIoU head's mask input is not detached in training.
    heads = _heads()
    losses = _train_losses(heads, _targets())
    heads.zero_grad()
    losses["loss_maskiou"].backward()
    grad = heads.mask_head.predictor.weight.grad
    assert grad is not None and grad.abs().sum().item() > 0


def test_polygon_and_bitmask_gt_give_equal_losses():
    heads = _heads()
    poly = _train_losses(heads, _targets(masks="polygon"))
    bits = _train_losses(heads, _targets(masks="bitmask"))
    for k in ("loss_mask", "loss_maskiou"):
        assert poly[k].item() == pytest.approx(bits[k].item(), abs=1e-3), k


def test_inference_fields_and_empty_detections():
    heads = _heads().eval()
    with torch.no_grad():
        (out,) = heads.forward_with_given_boxes(_features(), [_detections()])
    assert out.pred_masks.shape == (3, 1, 28, 28)
    assert ((out.pred_masks >= 0) & (out.pred_masks <= 1)).all()
    assert out.maskiou.shape == (3,)
    assert torch.allclose(out.mask_scores, out.scores * out.maskiou)
    empty = _detections()[:0]
    with torch.no_grad():
        (out,) = heads.forward_with_given_boxes(_features(), [empty])
    assert out.pred_masks.shape == (0, 1, 28, 28) and out.maskiou.shape == (0,) and out.mask_scores.shape == (0,)
