"""A small CenterMask learns a handful of generated images by heart (segm AP ≥ 80 on them)."""
from __future__ import annotations

import json
import uuid

import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.data import MetadataCatalog

from centermask_testutils import build_small_model, make_shapes, to_model_input
from politeteacher.evaluation import MaskScoringCOCOEvaluator

CATEGORY_IDS = (3, 7)  # dataset ids of class 0 (rectangle) and class 1 (circle)


def _coco_json(records, path):
    images, annotations = [], []
    for r in records:
        h, w = r["image"].shape[:2]
        images.append({"id": r["id"], "height": h, "width": w, "file_name": f"{r['id']}.png"})
        for a in r["annos"]:
            area = float(mask_util.area(mask_util.merge(mask_util.frPyObjects([a["poly"]], h, w))))
            x0, y0, x1, y1 = a["bbox"]
            annotations.append({
                "id": len(annotations) + 1, "image_id": r["id"], "category_id": CATEGORY_IDS[a["cls"]],
                "segmentation": [a["poly"]], "area": area, "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 0,
            })
    categories = [{"id": c, "name": f"shape{c}"} for c in CATEGORY_IDS]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))


@pytest.mark.slow
def test_overfit_generated_shapes(tmp_path):
    records = make_shapes(num_images=3, size=128, seed=0)
    inputs = [to_model_input(r) for r in records]
    # The demo preset (R-18, GN) with 64-channel FPN and heads and 8 foreground regions per image,
    # so that 100 iterations fit in about a minute on one CPU thread.
    model = build_small_model(
        num_classes=2,
        extra=[
            "MODEL.FPN.OUT_CHANNELS", "64",
            "MODEL.ROI_MASK_HEAD.CONV_DIM", "64",
            "MODEL.ROI_MASKIOU_HEAD.CONV_DIM", "64",
            "MODEL.ROI_MASKIOU_HEAD.FC_DIM", "128",
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
        ],
        seed=0,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    iters, warmup = 100, 20
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI machine's 2 cores are shared; 1 thread avoids oversubscription
    try:
        model.train()
        for it in range(iters):
            lr = 1e-3 * min(1.0, (it + 1) / warmup) * (0.1 if it >= 80 else 1.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            losses = model(inputs)
            assert all(torch.isfinite(v) for v in losses.values()), losses
            optimizer.zero_grad()
            sum(losses.values()).backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            optimizer.step()

        _coco_json(records, tmp_path / "gt.json")
        name = f"pt_overfit_{uuid.uuid4().hex[:8]}"
        MetadataCatalog.get(name).set(
            json_file=str(tmp_path / "gt.json"),
            thing_classes=["rectangle", "circle"],
            thing_dataset_id_to_contiguous_id={c: i for i, c in enumerate(CATEGORY_IDS)},
        )
        evaluator = MaskScoringCOCOEvaluator(name, distributed=False, output_dir=str(tmp_path))
        evaluator.reset()
        model.eval()
        with torch.no_grad():
            for inp in inputs:
                evaluator.process([inp], model([inp]))
        results = evaluator.evaluate()
    finally:
        torch.set_num_threads(threads)
    assert results["bbox"]["AP"] >= 80, results["bbox"]
    assert results["segm"]["AP"] >= 80, results["segm"]
