"""SAG-Mask and MaskIoU heads: shapes, targets (full-area rule), losses, validity semantics."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detectron2.layers import ShapeSpec
from detectron2.structures import BitMasks, PolygonMasks
from detectron2.structures.masks import polygons_to_bitmask

from politeteacher.modeling.mask_head import SpatialAttentionMaskHead, crop_gt_masks, mask_loss
from politeteacher.modeling.maskiou_head import (
    MaskIoUHead,
    clip_polygon_to_box,
    gt_area_ratios,
    maskiou_head_input,
    maskiou_loss,
    maskiou_targets,
)


def _square_masks(h=64, w=64):
    """One gt square [10, 30]² (area 400) as polygons and as a bitmask."""
    poly = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]
    bitmask = torch.as_tensor(polygons_to_bitmask([np.array(poly)], h, w))[None]
    return PolygonMasks([[poly]]), BitMasks(bitmask)


def test_mask_head_shapes_and_names():
    head = SpatialAttentionMaskHead(ShapeSpec(channels=8, height=14, width=14), num_classes=3, conv_dims=[8] * 5)
    out = head(torch.randn(5, 8, 14, 14))
    assert out.shape == (5, 3, 28, 28)
    names = {k for k, _ in head.named_parameters()}
    assert {"mask_fcn1.weight", "mask_fcn4.bias", "spatialAtt.conv.weight", "deconv.weight", "predictor.weight"} <= names
    assert "spatialAtt.conv.bias" not in names
    assert head(torch.randn(0, 8, 14, 14)).shape == (0, 3, 28, 28)


def test_maskiou_head_shapes():
    head = MaskIoUHead(ShapeSpec(channels=8, height=14, width=14), num_classes=3, conv_dims=[8] * 4, fc_dim=16)
    assert head.maskiou_fcn1.in_channels == 9 and head.maskiou_fc1.in_features == 8 * 7 * 7
    x = maskiou_head_input(torch.randn(4, 8, 14, 14), torch.rand(4, 1, 28, 28))
    assert x.shape == (4, 9, 14, 14)
    assert head(x).shape == (4, 3)
    # the mask channel is the 2×2 max-pool of the mask
    probs = torch.zeros(1, 1, 28, 28)
    probs[0, 0, 3, 2] = 0.7
    assert maskiou_head_input(torch.zeros(1, 8, 14, 14), probs)[0, 8, 1, 1] == pytest.approx(0.7)


def test_polygon_clipping():
    tri = np.array([0.0, 0.0, 10.0, 0.0, 0.0, 10.0])
    clipped = clip_polygon_to_box(tri, np.array([0.0, 0.0, 5.0, 5.0]))
    x, y = clipped[:, 0], clipped[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    assert area == pytest.approx(25.0)  # the triangle covers the whole 5×5 box
    assert len(clip_polygon_to_box(tri, np.array([20.0, 20.0, 30.0, 30.0]))) == 0


@pytest.mark.parametrize("fmt", ["polygon", "bitmask"])
def test_gt_area_ratio_for_a_box_that_cuts_the_gt(fmt):
    polys, bits = _square_masks()
    masks = polys if fmt == "polygon" else bits
    boxes = torch.tensor([[20.0, 10.0, 40.0, 30.0], [0.0, 0.0, 64.0, 64.0], [20.0, 20.0, 25.0, 25.0]])
    ratios = gt_area_ratios(masks, torch.tensor([0, 0, 0]), boxes)
    assert ratios.tolist() == pytest.approx([0.5, 1.0, 25 / 400], abs=1e-6)


def test_gt_area_ratio_of_empty_gt_is_one():
    empty = BitMasks(torch.zeros(1, 16, 16, dtype=torch.bool))
    assert gt_area_ratios(empty, torch.tensor([0]), torch.tensor([[0.0, 0, 8, 8]])).tolist() == [1.0]


def test_maskiou_target_uses_the_full_gt_area():
    polys, _ = _square_masks()
    box = torch.tensor([[20.0, 10.0, 40.0, 30.0]])  # holds the right half of the gt square
    crop = crop_gt_masks(polys, torch.tensor([0]), box, 28)
    assert crop[0, :, :14].all() and not crop[0, :, 14:].any()
    ratio = gt_area_ratios(polys, torch.tensor([0]), box)

    whole_box = torch.ones(1, 28, 28)  # predicts the whole box: 200 px overlap of 400 pred, 400 gt
    assert maskiou_targets(whole_box, crop, ratio).item() == pytest.approx(1 / 3)
    left_half = torch.full((1, 28, 28), -1.0)
    left_half[:, :, :14] = 1.0  # exactly the visible part: 200 / (200 + 400 − 200)
    assert maskiou_targets(left_half, crop, ratio).item() == pytest.approx(0.5)
    # A crop-only IoU would call this perfect; the full-area rule does not.
    assert maskiou_targets(left_half, crop, torch.ones(1)).item() == pytest.approx(1.0)
    assert maskiou_targets(torch.full((1, 28, 28), -1.0), crop, ratio).item() == 0.0


def test_maskiou_loss_only_on_positive_targets():
    pred = torch.tensor([0.5, 0.2, 0.9], requires_grad=True)
    target = torch.tensor([0.7, 0.0, 0.4])
    loss = maskiou_loss(pred, target, loss_weight=2.0)
    assert loss.item() == pytest.approx(2.0 * 0.5 * (0.2**2 + 0.5**2) / 2)
    loss.backward()
    assert pred.grad[1] == 0
    zero = maskiou_loss(pred, torch.zeros(3))
    assert zero.item() == 0 and zero.requires_grad


def test_mask_loss_validity_and_normalisation():
    torch.manual_seed(0)
    logits = torch.randn(3, 28, 28, requires_grad=True)
    gt = torch.rand(3, 28, 28) > 0.5
    valid = torch.tensor([True, False, True])
    per_region = F.binary_cross_entropy_with_logits(logits, gt.float(), reduction="none").mean(dim=(1, 2))

    loss_all = mask_loss(logits, gt, valid, "all")
    assert loss_all.item() == pytest.approx((per_region[0] + per_region[2]).item() / 3, rel=1e-6)
    loss_valid = mask_loss(logits, gt, valid, "valid")
    assert loss_valid.item() == pytest.approx((per_region[0] + per_region[2]).item() / 2, rel=1e-6)
    assert mask_loss(logits, gt, None, "all").item() == pytest.approx(per_region.mean().item(), rel=1e-6)

    loss_all.backward()
    assert logits.grad[1].abs().sum() == 0  # the invalid region gets no gradient
    assert logits.grad[0].abs().sum() > 0

    none_valid = mask_loss(logits, gt, torch.zeros(3, dtype=torch.bool))
    assert none_valid.item() == 0 and none_valid.requires_grad
    with pytest.raises(ValueError):
        mask_loss(logits, gt, valid, "mean")


def test_crop_gt_masks_polygon_matches_bitmask():
    polys, bits = _square_masks()
    boxes = torch.tensor([[5.0, 5.0, 35.0, 35.0], [20.0, 10.0, 40.0, 30.0]])
    idx = torch.tensor([0, 0])
    a = crop_gt_masks(polys, idx, boxes, 28)
    b = crop_gt_masks(bits, idx, boxes, 28)
    assert a.shape == b.shape == (2, 28, 28)
    assert (a != b).float().mean() < 0.02
    assert crop_gt_masks(bits, idx[:0], boxes[:0], 28).shape == (0, 28, 28)
