"""COCO evaluation that ranks masks by ``mask_scores`` (centermask.md §6).

detectron2's COCOEvaluator writes one score per detection and uses it for every task. CenterMask
ranks boxes by the detector's ``scores`` and masks by ``mask_scores`` = scores · predicted mask IoU,
so each prediction here carries both and each task is evaluated with its own.
"""
from __future__ import annotations

import copy
import itertools
import json
import os
from typing import Any, Dict, List

import numpy as np
import pycocotools.mask as mask_util

from detectron2.evaluation import COCOEvaluator
from detectron2.evaluation.coco_evaluation import COCOeval, COCOeval_opt, _evaluate_predictions_on_coco
from detectron2.structures import BoxMode
from detectron2.utils.file_io import PathManager

__all__ = ["MaskScoringCOCOEvaluator", "instances_to_coco_json_with_mask_scores"]


def instances_to_coco_json_with_mask_scores(instances, img_id) -> List[Dict[str, Any]]:
    """COCO result dicts for one image (CPU Instances at the original size). Each has ``score``
    (the box score) and, when masks are present, ``segmentation`` (RLE) and ``mask_score``
    (``mask_scores`` if the instances have it, else ``scores``)."""
    num = len(instances)
    if num == 0:
        return []
    boxes = BoxMode.convert(
        instances.pred_boxes.tensor.numpy(), BoxMode.XYXY_ABS, BoxMode.XYWH_ABS
    ).tolist()
    scores = instances.scores.tolist()
    classes = instances.pred_classes.tolist()
    has_mask = instances.has("pred_masks")
    if has_mask:
        mask_scores = (
            instances.mask_scores.tolist() if instances.has("mask_scores") else list(scores)
        )
        rles = [
            mask_util.encode(np.array(mask[:, :, None], order="F", dtype="uint8"))[0]
            for mask in instances.pred_masks.numpy()
        ]
        for rle in rles:
            rle["counts"] = rle["counts"].decode("utf-8")
    results = []
    for k in range(num):
        result = {
            "image_id": img_id,
            "category_id": classes[k],
            "bbox": boxes[k],
            "score": scores[k],
        }
        if has_mask:
            result["segmentation"] = rles[k]
            result["mask_score"] = float(mask_scores[k])
        results.append(result)
    return results


class MaskScoringCOCOEvaluator(COCOEvaluator):
    """COCOEvaluator whose "bbox" results are ranked by ``scores`` and whose "segm" results are
    ranked by ``mask_scores`` (falling back to ``scores`` when a model does not produce them).

    Same constructor, same distributed behaviour (gather to the main process) and same outputs
    as detectron2's: ``evaluate()`` returns {"bbox": {"AP", "AP50", ..., "AP-<class>"}, "segm": ...}.
    """

    def process(self, inputs, outputs):
        for input, output in zip(inputs, outputs):
            prediction = {"image_id": input["image_id"]}
            if "instances" in output:
                instances = output["instances"].to(self._cpu_device)
                prediction["instances"] = instances_to_coco_json_with_mask_scores(
                    instances, input["image_id"]
                )
            if "proposals" in output:
                prediction["proposals"] = output["proposals"].to(self._cpu_device)
            if len(prediction) > 1:
                self._predictions.append(prediction)

    def reset(self):
        super().reset()
        # COCOeval's precision array per task, [IoU threshold, recall, class, area, max dets] (-1
        # where undefined), for the per-class AP and precision-recall plots of `politeteacher eval`.
        self.precisions: Dict[str, np.ndarray] = {}

    @property
    def class_names(self) -> List[str]:
        return list(self._metadata.get("thing_classes", []))

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        if coco_eval is not None:
            self.precisions[iou_type] = coco_eval.eval["precision"]
        return super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)

    def _eval_predictions(self, predictions, img_ids=None):
        self._logger.info("Preparing results for COCO format ...")
        coco_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        tasks = self._tasks or self._tasks_from_predictions(coco_results)

        # Contiguous ids back to the dataset's category ids.
        if hasattr(self._metadata, "thing_dataset_id_to_contiguous_id"):
            mapping = self._metadata.thing_dataset_id_to_contiguous_id
            num_classes = len(mapping)
            reverse = {v: k for k, v in mapping.items()}
            for result in coco_results:
                category_id = result["category_id"]
                if category_id >= num_classes:
                    raise ValueError(
                        f"a prediction has class {category_id} but the dataset has {num_classes}"
                    )
                result["category_id"] = reverse[category_id]

        if self._output_dir:
            file_path = os.path.join(self._output_dir, "coco_instances_results.json")
            self._logger.info(f"Saving results to {file_path}")
            with PathManager.open(file_path, "w") as f:
                f.write(json.dumps(coco_results))
                f.flush()

        if not self._do_evaluation:
            self._logger.info("Annotations are not available for evaluation.")
            return

        for task in sorted(tasks):
            if task not in {"bbox", "segm"}:
                raise ValueError(f"MaskScoringCOCOEvaluator cannot evaluate task {task!r}")
            task_results = self._results_for_task(coco_results, task)
            coco_eval = (
                _evaluate_predictions_on_coco(
                    self._coco_api,
                    task_results,
                    task,
                    cocoeval_fn=COCOeval_opt if self._use_fast_impl else COCOeval,
                    img_ids=img_ids,
                    max_dets_per_image=self._max_dets_per_image,
                )
                if len(task_results) > 0
                else None  # cocoapi does not handle empty results well
            )
            self._results[task] = self._derive_coco_results(
                coco_eval, task, class_names=self._metadata.get("thing_classes")
            )

    @staticmethod
    def _results_for_task(coco_results: List[Dict[str, Any]], task: str) -> List[Dict[str, Any]]:
        """Results ranked for ``task``: "segm" uses each result's ``mask_score`` as its score."""
        out = []
        for result in coco_results:
            r = copy.copy(result)
            if task == "segm":
                if "segmentation" not in r:
                    continue
                r["score"] = r.get("mask_score", r["score"])
            r.pop("mask_score", None)
            out.append(r)
        return out
