"""The threshold sweep's figures on a hand-made case with known precision and recall."""
import pytest
import torch
from detectron2.structures import BitMasks, Boxes, Instances

from politeteacher.engine.pseudo_labels import make_pseudo_labels, pseudo_label_stats
from politeteacher.engine.threshold_sweep import ImageEvidence, format_table, suggest, sweep_table

SIZE = (40, 50)
A, B, C = [5.0, 5.0, 25.0, 30.0], [30.0, 0.0, 45.0, 10.0], [0.0, 32.0, 10.0, 40.0]


def _ground_truth():
    gt = Instances(SIZE)
    gt.gt_boxes = Boxes(torch.tensor([A, B, C]))
    gt.gt_classes = torch.tensor([0, 0, 1])
    masks = torch.zeros((3, *SIZE), dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate((A, B, C)):
        masks[i, int(y0):int(y1), int(x0):int(x1)] = True
    gt.gt_masks = BitMasks(masks)
    return gt


def _detections():
    """Five teacher detections (masks fill their boxes): right (A), right (B, low mask IoU), a box on
    nothing, the right box of C with the wrong class, and a duplicate of A."""
    det = Instances(SIZE)
    det.pred_boxes = Boxes(torch.tensor([A, B, [0.0, 0.0, 4.0, 4.0], C, A]))
    det.scores = torch.tensor([0.9, 0.8, 0.7, 0.55, 0.5])
    det.maskiou = torch.tensor([0.95, 0.6, 0.85, 0.9, 0.99])
    det.pred_classes = torch.tensor([0, 0, 0, 0, 0])
    det.pred_masks = torch.ones((5, 1, 28, 28))
    return det


def test_sweep_figures_on_a_hand_made_case():
    candidates = make_pseudo_labels([_detections()], 0.4, -float("inf"))[0]
    evidence = [ImageEvidence.from_instances(candidates, _ground_truth())]
    rows = sweep_table(evidence, [0.45, 0.6, 0.75, 0.95], [0.0, 0.7, 0.9])
    cell = {(r["box_threshold"], r["mask_iou_threshold"]): r for r in rows}
    assert len(rows) == 12
    # box 0.45: all five; A and B matched, the wrong-class box and A's duplicate are not
    r = cell[0.45, 0.0]
    assert (r["boxes_per_image"], r["box_precision"], r["box_recall"]) == (5, 2 / 5, 2 / 3)
    # box 0.6: A, B and the box on nothing
    r = cell[0.6, 0.0]
    assert (r["box_precision"], r["box_recall"], r["mask_precision"], r["mask_recall"], r["valid_mask_fraction"]) \
        == (2 / 3, 2 / 3, 2 / 3, 2 / 3, 1.0)
    r = cell[0.6, 0.7]  # B's mask (IoU 0.6) is no longer valid
    assert (r["mask_precision"], r["mask_recall"], r["valid_mask_fraction"]) == (1 / 2, 1 / 3, 2 / 3)
    r = cell[0.6, 0.9]
    assert (r["mask_precision"], r["mask_recall"], r["valid_mask_fraction"]) == (1.0, 1 / 3, 1 / 3)
    r = cell[0.75, 0.0]
    assert (r["box_precision"], r["box_recall"], r["mask_precision"], r["mask_recall"]) == (1.0, 2 / 3, 1.0, 2 / 3)
    # box 0.95: nothing passes; precision and the valid fraction are undefined, recall is 0
    r = cell[0.95, 0.9]
    assert r["boxes_per_image"] == 0 and r["box_recall"] == 0 and r["mask_recall"] == 0
    assert r["box_precision"] is None and r["mask_precision"] is None and r["valid_mask_fraction"] is None
    # the rule: best box F1 (0.75: 0.8), then best mask F1 at that box threshold (0.0: 0.8)
    best = suggest(rows)
    assert (best["box_threshold"], best["mask_iou_threshold"]) == (0.75, 0.0)
    table = format_table(rows, best).splitlines()
    assert len(table) == 13 and table[7].endswith(" *") and table[-1].split()[3:5] == ["-", "0.000"]


def test_the_trainers_statistics_are_the_sweeps_cell():
    labels = make_pseudo_labels([_detections()], 0.6, 0.7)
    stats = pseudo_label_stats(labels, [_ground_truth()])
    evidence = [ImageEvidence.from_instances(make_pseudo_labels([_detections()], 0.4, -1.0)[0], _ground_truth())]
    (cell,) = sweep_table(evidence, [0.6], [0.7])
    for key in ("boxes_per_image", "box_precision", "box_recall", "mask_precision", "mask_recall",
                "valid_mask_fraction"):
        assert stats[f"pseudo/{key}"] == pytest.approx(cell[key]), key


def test_no_suggestion_without_a_match():
    evidence = [ImageEvidence.from_instances(make_pseudo_labels([_detections()], 0.4, 0.0)[0], _ground_truth()[:0])]
    assert suggest(sweep_table(evidence, [0.5], [0.5])) is None
