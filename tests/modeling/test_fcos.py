"""FCOS: locations, targets, losses and post-processing, checked against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch
from fvcore.nn import sigmoid_focal_loss

from detectron2.layers import ShapeSpec
from detectron2.structures import Boxes, ImageList, Instances

from politeteacher.modeling.fcos import (
    FCOS,
    INF,
    FCOSHead,
    centerness_target,
    compute_locations,
    fcos_losses,
    fcos_targets_single_image,
    giou_loss,
)


def test_locations_are_cell_centres():
    loc = compute_locations(2, 3, 8)
    expected = torch.tensor([[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]], dtype=torch.float32)
    assert torch.equal(loc, expected)
    assert torch.equal(compute_locations(1, 1, 128), torch.tensor([[64.0, 64.0]]))


def _two_level_targets():
    """64×64 image, levels P3 (stride 8, max-reg range [-1, 32]) and P4 (stride 16, [32, INF]).

    Box A [0, 0, 48, 48] (class 0, area 2304) and box B [4, 4, 28, 28] (class 1, area 576) overlap.
    """
    p3, p4 = compute_locations(8, 8, 8), compute_locations(4, 4, 16)
    locations = torch.cat([p3, p4])
    strides = torch.cat([torch.full((64,), 8), torch.full((16,), 16)])
    ranges = torch.cat([torch.tensor([[-1.0, 32.0]]).expand(64, 2), torch.tensor([[32.0, INF]]).expand(16, 2)])
    boxes = torch.tensor([[0.0, 0.0, 48.0, 48.0], [4.0, 4.0, 28.0, 28.0]])
    classes = torch.tensor([0, 1])
    labels, reg = fcos_targets_single_image(locations, strides, ranges, boxes, classes, num_classes=2)
    return locations, strides, labels, reg


def test_targets_center_sampling_size_ranges_and_tie_break():
    locations, strides, labels, reg = _two_level_targets()
    key = lambda i: (int(strides[i]), int(locations[i, 0]), int(locations[i, 1]))  # noqa: E731
    positives = {key(i): (int(labels[i]), reg[i].tolist()) for i in range(len(labels)) if labels[i] != 2}

    expected = {}
    # P3, box B: centre square (half-side 12) clipped to B = [4, 28]²: x, y in {12, 20}.
    for x in (12, 20):
        for y in (12, 20):
            expected[(8, x, y)] = (1, [(x - 4) / 8, (y - 4) / 8, (28 - x) / 8, (28 - y) / 8])
    # P3, box A: centre square [12, 36]²: x, y in {20, 28}; (20, 20) fits both, B (smaller) wins.
    for x in (20, 28):
        for y in (20, 28):
            if (x, y) != (20, 20):
                expected[(8, x, y)] = (0, [x / 8, y / 8, (48 - x) / 8, (48 - y) / 8])
    # P4, box A: square [0, 48]²: x, y in {8, 24, 40}, except (24, 24) whose max distance 24 < 32.
    # Box B never on P4: its max distance is at most 20 there.
    for x in (8, 24, 40):
        for y in (8, 24, 40):
            if (x, y) != (24, 24):
                expected[(16, x, y)] = (0, [x / 16, y / 16, (48 - x) / 16, (48 - y) / 16])

    assert set(positives) == set(expected)
    for k, (label, target) in expected.items():
        assert positives[k][0] == label, k
        assert positives[k][1] == pytest.approx(target), k
    # Inside box A but outside its centre square: background.
    assert (8, 44, 44) not in positives and (8, 4, 4) not in positives


def test_targets_of_image_without_boxes_are_background():
    locations = compute_locations(4, 4, 8)
    labels, reg = fcos_targets_single_image(
        locations, torch.full((16,), 8), torch.tensor([[-1.0, INF]]).expand(16, 2),
        torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), num_classes=3,
    )
    assert labels.tolist() == [3] * 16 and reg.shape == (16, 4)


def test_size_ranges_from_sizes_of_interest():
    head = FCOSHead(in_channels=32, num_classes=2, num_levels=5)
    fcos = FCOS(in_features=["p3", "p4", "p5", "p6", "p7"], strides=[8, 16, 32, 64, 128], head=head, num_classes=2)
    assert fcos.size_ranges == [(-1, 64), (64, 128), (128, 256), (256, 512), (512, INF)]


def test_centerness_and_giou_values():
    assert centerness_target(torch.tensor([[1.0, 2.0, 3.0, 4.0]])).item() == pytest.approx(math.sqrt(1 / 6))
    assert centerness_target(torch.tensor([[2.0, 5.0, 2.0, 5.0]])).item() == pytest.approx(1.0)
    pred = torch.tensor([[1.0, 1, 1, 1], [1, 1, 1, 1], [2, 1, 0, 1], [1, 1, 0, 0]])
    target = torch.tensor([[1.0, 1, 1, 1], [2, 2, 2, 2], [0, 1, 2, 1], [0, 0, 1, 1]])
    # identical; nested (I 4, U 16); side by side (I 0, U 8, hull 8); diagonal (I 0, U 2, hull 4)
    expected = [0.0, 1 - 5 / 17, 1 - 1 / 9, 1 - (1 / 3 - 2 / 4)]
    assert giou_loss(pred, target).tolist() == pytest.approx(expected, abs=1e-6)


def test_loss_normalisation_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(6, 3, requires_grad=True)
    box_reg = torch.rand(6, 4) + 0.5
    ctr = torch.randn(6)
    labels = torch.tensor([3, 0, 3, 2, 3, 3])  # two positives, 3 = background
    reg_targets = torch.rand(6, 4) + 0.5
    losses = fcos_losses(logits, box_reg, ctr, labels, reg_targets, num_classes=3)

    onehot = torch.zeros(6, 3)
    onehot[1, 0] = onehot[3, 2] = 1
    focal = sigmoid_focal_loss(logits, onehot, alpha=0.25, gamma=2.0, reduction="sum")
    assert losses["loss_fcos_cls"].item() == pytest.approx(focal.item() / 2, rel=1e-5)
    pos = torch.tensor([1, 3])
    w = centerness_target(reg_targets[pos])
    loc = (giou_loss(box_reg[pos], reg_targets[pos]) * w).sum() / w.sum()
    assert losses["loss_fcos_loc"].item() == pytest.approx(loc.item(), rel=1e-5)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(ctr[pos], w, reduction="sum") / 2
    assert losses["loss_fcos_ctr"].item() == pytest.approx(bce.item(), rel=1e-5)


def test_losses_without_positives_are_zero_and_connected():
    logits = torch.randn(5, 2, requires_grad=True)
    box_reg = torch.rand(5, 4, requires_grad=True)
    ctr = torch.randn(5, requires_grad=True)
    losses = fcos_losses(logits, box_reg, ctr, torch.full((5,), 2), torch.zeros(5, 4), num_classes=2)
    assert losses["loss_fcos_loc"].item() == 0 and losses["loss_fcos_ctr"].item() == 0
    assert losses["loss_fcos_cls"].item() > 0  # background-only classification still trains
    sum(losses.values()).backward()
    assert box_reg.grad is not None and ctr.grad is not None and logits.grad.abs().sum() > 0


def _fcos_with_controlled_outputs(num_classes=2):
    head = FCOSHead(in_channels=16, num_classes=num_classes, num_levels=2, norm="")
    fcos = FCOS(
        in_features=["p3", "p4"], strides=[8, 16], head=head, num_classes=num_classes,
        sizes_of_interest=[64], post_nms_topk_train=7, post_nms_topk_test=3,
    )
    return fcos.eval()


def test_post_processing_decodes_scores_and_boxes():
    fcos = _fcos_with_controlled_outputs()
    # Hand-made head outputs: one confident cell on P3 (row 1, col 2 → location (20, 12)).
    logits = [torch.full((1, 2, 2, 4), -10.0), torch.full((1, 2, 1, 2), -10.0)]
    logits[0][0, 1, 1, 2] = math.log(0.64 / 0.36)  # cls prob 0.64, class 1
    ctr = [torch.full((1, 1, 2, 4), 0.0), torch.full((1, 1, 1, 2), 0.0)]  # sigmoid = 0.5
    reg = [torch.ones(1, 4, 2, 4), torch.ones(1, 4, 1, 2)]
    reg[0][0, :, 1, 2] = torch.tensor([1.0, 0.5, 2.0, 1.0])  # × stride 8
    locations = [compute_locations(2, 4, 8), compute_locations(1, 2, 16)]
    (det,) = fcos.predict(locations, logits, reg, ctr, [(16, 32)], "test")
    assert len(det) == 1
    assert det.pred_classes.tolist() == [1]
    assert det.scores.item() == pytest.approx(math.sqrt(0.64 * 0.5))
    # (20 - 8, 12 - 4, 20 + 16, 12 + 8), not clipped to the 32 × 16 image (centermask.md §2).
    assert det.pred_boxes.tensor.tolist() == [[12.0, 8.0, 36.0, 20.0]]


def test_nms_and_topk_see_the_boxes_unclipped():
    fcos = _fcos_with_controlled_outputs()
    # Two class-0 detections on a 16 × 16 image, both at location (4, 4) of P3 and P4's (8, 8):
    # A = [0, 0, 16, 16] (score √0.64) and B = [0, 0, 48, 16] (score √0.36), which reaches past the
    # right edge. Unclipped their IoU is 1/3 and NMS at 0.6 keeps both; clipped to the image B
    # would equal A and be suppressed.
    logits = [torch.full((1, 2, 1, 1), -10.0), torch.full((1, 2, 1, 1), -10.0)]
    logits[0][0, 0] = math.log(0.64 / 0.36)
    logits[1][0, 0] = math.log(0.36 / 0.64)
    ctr = [torch.full((1, 1, 1, 1), 20.0), torch.full((1, 1, 1, 1), 20.0)]  # sigmoid ≈ 1
    reg = [torch.tensor([0.5, 0.5, 1.5, 1.5]).view(1, 4, 1, 1), torch.tensor([0.5, 0.5, 2.5, 0.5]).view(1, 4, 1, 1)]
    locations = [torch.tensor([[4.0, 4.0]]), torch.tensor([[8.0, 8.0]])]
    (det,) = fcos.predict(locations, logits, reg, ctr, [(16, 16)], "test")
    assert det.pred_boxes.tensor.tolist() == [[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 48.0, 16.0]]
    assert det.scores.tolist() == pytest.approx([0.8, 0.6], abs=1e-5)


def test_post_processing_nms_and_topk_per_mode():
    fcos = _fcos_with_controlled_outputs()
    # Every cell confident for class 0, boxes 2 strides wide: neighbours overlap with IoU 1/3 < 0.6.
    logits = [torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 2)]
    logits[0][:, 1] = -10
    logits[1][:, 1] = -10
    ctr = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    reg = [torch.ones(1, 4, 4, 4), torch.ones(1, 4, 2, 2)]
    locations = [compute_locations(4, 4, 8), compute_locations(2, 2, 16)]
    train = fcos.predict(locations, logits, reg, ctr, [(32, 32)], "train")[0]
    test = fcos.predict(locations, logits, reg, ctr, [(32, 32)], "test")[0]
    assert len(train) == 7 and len(test) == 3
    # Duplicated detections of the same class are suppressed; of another class they are not.
    logits2 = [torch.full((1, 2, 1, 1), 0.0), torch.full((1, 2, 1, 1), -10.0)]
    ctr2 = [torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1)]
    reg2 = [torch.ones(1, 4, 1, 1), torch.ones(1, 4, 1, 1)]
    locations2 = [compute_locations(1, 1, 8), compute_locations(1, 1, 16)]
    det = fcos.predict(locations2, logits2, reg2, ctr2, [(16, 16)], "test")[0]
    assert sorted(det.pred_classes.tolist()) == [0, 1]


def test_forward_train_and_eval_on_feature_maps():
    torch.manual_seed(0)
    fcos = _fcos_with_controlled_outputs()
    features = {"p3": torch.randn(2, 16, 8, 8), "p4": torch.randn(2, 16, 4, 4)}
    images = ImageList(torch.zeros(2, 3, 64, 64), [(64, 64), (60, 50)])
    gt = []
    for boxes in ([[4.0, 4.0, 40.0, 30.0]], []):
        inst = Instances((64, 64))
        inst.gt_boxes = Boxes(torch.tensor(boxes).reshape(-1, 4))
        inst.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
        gt.append(inst)
    fcos.train()
    detections, losses = fcos(images, features, gt)
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
    assert all(torch.isfinite(v) and v.requires_grad for v in losses.values())
    assert len(detections) == 2 and all(d.has("scores") for d in detections)
    fcos.eval()
    detections, losses = fcos(images, features)
    assert losses == {}
    assert detections[1].image_size == (60, 50)


def test_from_config_checks_backbone_strides():
    from centermask_testutils import small_cfg

    cfg = small_cfg()
    shapes = {f"p{k}": ShapeSpec(channels=32, stride=2**k) for k in range(3, 8)}
    fcos = FCOS(cfg, shapes)
    assert fcos.strides == [8, 16, 32, 64, 128] and fcos.fcos_head.cls_logits.out_channels == 2
    shapes["p7"] = ShapeSpec(channels=32, stride=256)
    with pytest.raises(ValueError, match="FPN_STRIDES"):
        FCOS(cfg, shapes)
