"""MaskScoringCOCOEvaluator: boxes ranked by scores, masks ranked by mask_scores."""
from __future__ import annotations

import json
import uuid

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.data import MetadataCatalog
from detectron2.structures import Boxes, Instances

from politeteacher.evaluation import MaskScoringCOCOEvaluator

H = W = 64
GT_BOX = [10, 10, 30, 30]  # XYXY; the one object, dataset category id 7


def _register(tmp_path):
    """A one-image COCO json whose category id (7) differs from the contiguous id (0)."""
    mask = np.zeros((H, W), np.uint8)
    mask[10:30, 10:30] = 1
    rle = mask_util.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode()
    gt = {
        "images": [{"id": 42, "height": H, "width": W, "file_name": "a.png"}],
        "annotations": [{"id": 1, "image_id": 42, "category_id": 7, "segmentation": rle,
                         "area": 400.0, "bbox": [10, 10, 20, 20], "iscrowd": 0}],
        "categories": [{"id": 3, "name": "other"}, {"id": 7, "name": "square"}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    name = f"pt_eval_test_{uuid.uuid4().hex[:8]}"
    MetadataCatalog.get(name).set(
        json_file=str(path), thing_classes=["other", "square"],
        thing_dataset_id_to_contiguous_id={3: 0, 7: 1},
    )
    return name


def _predictions(mask_scores=None):
    """P1: exact box, wrong mask (score .9). P2: wrong box, exact mask (score .8)."""
    inst = Instances((H, W))
    inst.pred_boxes = Boxes(torch.tensor([GT_BOX, [40.0, 40.0, 60.0, 60.0]], dtype=torch.float32))
    inst.scores = torch.tensor([0.9, 0.8])
    inst.pred_classes = torch.tensor([1, 1])
    masks = torch.zeros(2, H, W, dtype=torch.bool)
    masks[0, 40:60, 40:60] = True
    masks[1, 10:30, 10:30] = True
    inst.pred_masks = masks
    if mask_scores is not None:
        inst.mask_scores = torch.tensor(mask_scores)
    return inst


def _evaluate(name, tmp_path, instances):
    ev = MaskScoringCOCOEvaluator(name, tasks=("bbox", "segm"), distributed=False, output_dir=str(tmp_path))
    ev.reset()
    ev.process([{"image_id": 42, "height": H, "width": W}], [{"instances": instances}])
    return ev.evaluate()


def test_segm_is_ranked_by_mask_scores_and_bbox_by_scores(tmp_path):
    name = _register(tmp_path)
    good = _evaluate(name, tmp_path, _predictions(mask_scores=[0.1, 0.7]))
    swapped = _evaluate(name, tmp_path, _predictions(mask_scores=[0.7, 0.1]))
    # Boxes: P1 (right box) is first by score in both cases.
    assert good["bbox"]["AP"] == pytest.approx(100.0)
    assert swapped["bbox"]["AP"] == pytest.approx(100.0)
    # Masks: the right mask (P2) first → 100; second behind a false positive → 50.
    assert good["segm"]["AP"] == pytest.approx(100.0)
    assert swapped["segm"]["AP"] == pytest.approx(50.0)
    # Category ids are mapped back: per-category AP is on "square", nothing on "other".
    assert good["segm"]["AP-square"] == pytest.approx(100.0)
    assert set(good["bbox"]) >= {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-square", "AP-other"}

    written = json.loads((tmp_path / "coco_instances_results.json").read_text())
    assert {r["category_id"] for r in written} == {7}
    assert sorted(r["mask_score"] for r in written) == pytest.approx([0.1, 0.7])


def test_segm_falls_back_to_scores_without_mask_scores(tmp_path):
    name = _register(tmp_path)
    res = _evaluate(name, tmp_path, _predictions(mask_scores=None))
    assert res["bbox"]["AP"] == pytest.approx(100.0)
    assert res["segm"]["AP"] == pytest.approx(50.0)  # ranked like the boxes: wrong mask first


def test_empty_predictions(tmp_path):
    name = _register(tmp_path)
    res = _evaluate(name, tmp_path, _predictions()[:0])
    # detectron2's convention for "no predictions": every metric is NaN, nothing crashes
    assert set(res) == {"bbox", "segm"}
    assert all(np.isnan(v["AP"]) for v in res.values())
