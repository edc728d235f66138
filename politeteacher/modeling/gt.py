"""Ground-truth conventions shared by FCOS and the ROI heads."""
from __future__ import annotations

import torch

from detectron2.structures import Boxes, Instances

__all__ = ["with_gt_fields"]


def with_gt_fields(instances: Instances, device=None) -> Instances:
    """``instances`` with ``gt_boxes`` and ``gt_classes``. An image given as a bare
    ``Instances(image_size)`` (e.g. no pseudo-labels) gets empty ones: it is background only."""
    if instances.has("gt_boxes") and instances.has("gt_classes"):
        return instances
    if len(instances.get_fields()):
        raise ValueError(
            "ground truth needs both gt_boxes and gt_classes; got fields "
            f"{sorted(instances.get_fields())}"
        )
    out = Instances(instances.image_size)
    out.gt_boxes = Boxes(torch.zeros(0, 4, device=device))
    out.gt_classes = torch.zeros(0, dtype=torch.int64, device=device)
    return out
