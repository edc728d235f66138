import pytest
import torch
from detectron2.structures import BitMasks, Boxes, Instances

from politeteacher.engine.pseudo_labels import as_targets, make_pseudo_labels, pseudo_label_stats


def _teacher_output(scores, maskiou, boxes=None, size=(40, 50)):
    n = len(scores)
    det = Instances(size)
    det.pred_boxes = Boxes(torch.tensor(boxes if boxes is not None else [[5.0, 5.0, 25.0, 30.0]] * n).reshape(-1, 4))
    det.scores = torch.tensor(scores, dtype=torch.float32)
    det.pred_classes = torch.arange(n, dtype=torch.int64)
    det.pred_masks = torch.ones((n, 1, 28, 28))
    det.maskiou = torch.tensor(maskiou, dtype=torch.float32)
    return det


def test_box_threshold_and_mask_validity_are_strict_and_per_region():
    out = make_pseudo_labels(
        [_teacher_output([0.6, 0.61, 0.9, 0.3], [0.95, 0.9, 0.91, 0.99])], box_threshold=0.6, mask_iou_threshold=0.9
    )[0]
    assert len(out) == 2  # 0.6 is not > 0.6; 0.3 is dropped
    assert out.gt_classes.tolist() == [1, 2]
    assert out.gt_mask_valid.tolist() == [False, True]  # 0.9 is not > 0.9
    assert isinstance(out.gt_masks, BitMasks) and out.gt_masks.tensor.shape == (2, 40, 50)
    # the pasted mask fills its box: the teacher mask was all ones
    assert out.gt_masks.tensor[0, 5:30, 5:25].all() and not out.gt_masks.tensor[0, 35:, :].any()


def test_last_image_without_pseudo_labels_does_not_decide_for_the_others():
    first = _teacher_output([0.9, 0.9], [0.95, 0.5])
    last = _teacher_output([0.1], [0.99])
    labels = make_pseudo_labels([first, last], box_threshold=0.6, mask_iou_threshold=0.9)
    assert labels[0].gt_mask_valid.tolist() == [True, False]
    assert len(labels[1]) == 0 and labels[1].gt_masks.tensor.shape == (0, 40, 50)


def test_targets_carry_no_teacher_scores():
    label = make_pseudo_labels([_teacher_output([0.9], [0.95])], 0.6, 0.9)[0]
    assert set(as_targets(label).get_fields()) == {"gt_boxes", "gt_classes", "gt_masks", "gt_mask_valid"}


def test_stats_precision_recall_against_hidden_ground_truth():
    det = _teacher_output([0.9, 0.8], [0.95, 0.2], boxes=[[5.0, 5.0, 25.0, 30.0], [30.0, 0.0, 45.0, 10.0]])
    det.pred_classes = torch.tensor([0, 0])
    labels = make_pseudo_labels([det], 0.6, 0.9)
    hidden = Instances((40, 50))
    hidden.gt_boxes = Boxes(torch.tensor([[5.0, 5.0, 25.0, 30.0], [0.0, 32.0, 10.0, 40.0]]))
    hidden.gt_classes = torch.tensor([0, 0])
    m = torch.zeros((2, 40, 50), dtype=torch.bool)
    m[0, 5:30, 5:25] = True
    m[1, 32:40, 0:10] = True
    hidden.gt_masks = BitMasks(m)
    stats = pseudo_label_stats(labels, [hidden])
    assert stats["pseudo/boxes_per_image"] == 2
    assert stats["pseudo/valid_mask_fraction"] == 0.5
    assert stats["pseudo/mean_score"] == pytest.approx(0.85)
    assert stats["pseudo/box_precision"] == 0.5 and stats["pseudo/box_recall"] == 0.5
    assert stats["pseudo/mask_precision"] == 0.5 and stats["pseudo/mask_recall"] == 0.5
    # without hidden ground truth only the label statistics are reported
    assert "pseudo/box_precision" not in pseudo_label_stats(labels, None)
