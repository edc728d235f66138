"""Evaluation: COCO bbox/segm AP with masks ranked by the MaskIoU head's mask scores."""
from .coco import MaskScoringCOCOEvaluator, instances_to_coco_json_with_mask_scores

__all__ = ["MaskScoringCOCOEvaluator", "instances_to_coco_json_with_mask_scores"]
