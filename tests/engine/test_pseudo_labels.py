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
    # mask figures count the valid masks (those that train): the first one, right
    assert stats["pseudo/mask_precision"] == 1.0 and stats["pseudo/mask_recall"] == 0.5
    # without hidden ground truth only the label statistics are reported
    assert "pseudo/box_precision" not in pseudo_label_stats(labels, None)


def _hidden(boxes, size=(40, 50)):
    hidden = Instances(size)
    hidden.gt_boxes = Boxes(torch.tensor(boxes).reshape(-1, 4))
    hidden.gt_classes = torch.zeros(len(boxes), dtype=torch.int64)
    m = torch.zeros((len(boxes), *size), dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        m[i, int(y0):int(y1), int(x0):int(x1)] = True
    hidden.gt_masks = BitMasks(m)
    return hidden


def test_precision_and_recall_are_undefined_not_zero_when_there_is_nothing_to_measure():
    none_passed = make_pseudo_labels([_teacher_output([0.1], [0.95])], 0.6, 0.9)
    stats = pseudo_label_stats(none_passed, [_hidden([[5.0, 5.0, 25.0, 30.0]])])
    assert "pseudo/box_precision" not in stats and "pseudo/mask_precision" not in stats
    assert stats["pseudo/box_recall"] == 0.0 and stats["pseudo/mask_recall"] == 0.0
    # a box passed but no mask is valid: mask precision undefined, box precision measured
    no_valid_mask = make_pseudo_labels([_teacher_output([0.9], [0.5])], 0.6, 0.9)
    no_valid_mask[0].gt_classes[:] = 0
    stats = pseudo_label_stats(no_valid_mask, [_hidden([[5.0, 5.0, 25.0, 30.0]])])
    assert stats["pseudo/box_precision"] == 1.0 and "pseudo/mask_precision" not in stats
    # an image without objects: no recall to measure
    stats = pseudo_label_stats(no_valid_mask, [_hidden([])])
    assert stats["pseudo/box_precision"] == 0.0 and "pseudo/box_recall" not in stats


def test_a_raw_image_in_the_batch_leaves_the_others_measured():
    labels = make_pseudo_labels([_teacher_output([0.9], [0.95]), _teacher_output([0.9], [0.95])], 0.6, 0.9)
    for label in labels:
        label.gt_classes[:] = 0
    # the second image is raw (no hidden ground truth): the first still gives the figures
    stats = pseudo_label_stats(labels, [_hidden([[5.0, 5.0, 25.0, 30.0]]), None])
    assert stats["pseudo/box_precision"] == 1.0 and stats["pseudo/mask_recall"] == 1.0
    assert stats["pseudo/boxes_per_image"] == 1.0
    assert "pseudo/box_precision" not in pseudo_label_stats(labels, [None, None])
