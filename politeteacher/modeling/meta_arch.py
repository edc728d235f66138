"""CenterMask: backbone → FCOS detections → mask + MaskIoU heads (centermask.md §1)."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch

from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN

__all__ = ["CenterMask"]


@META_ARCH_REGISTRY.register()
class CenterMask(GeneralizedRCNN):
    """detectron2's GeneralizedRCNN with FCOS as the proposal generator and CenterMask ROI heads.

    - training ``forward`` → {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask",
      "loss_maskiou"}; every input needs ``"instances"`` (which may be empty).
    - eval ``forward`` → [{"instances": Instances}] at the original image size with
      ``pred_boxes, scores, pred_classes, pred_masks, maskiou, mask_scores``.
    - :meth:`predict_for_pseudo_labels` → raw detections at the input (resized) image size.
    """

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]], box_grad: bool = True):
        """Training: the loss dict; ``box_grad=False`` computes ``loss_fcos_loc`` / ``loss_fcos_ctr``
        without gradient (for losses that weight them 0, e.g. on pseudo-labels). Eval: detections."""
        if not self.training:
            return self.inference(batched_inputs)
        missing = [i for i, x in enumerate(batched_inputs) if "instances" not in x]
        if missing:
            raise ValueError(
                f"CenterMask training needs 'instances' in every input; inputs {missing} have none"
                " (use an empty Instances for an image without objects)"
            )
        images = self.preprocess_image(batched_inputs)
        gt_instances = [x["instances"].to(self.device) for x in batched_inputs]
        features = self.backbone(images.tensor)
        proposals, proposal_losses = self.proposal_generator(images, features, gt_instances, box_grad)
        _, detector_losses = self.roi_heads(images, features, proposals, gt_instances)
        losses = {}
        losses.update(proposal_losses)
        losses.update(detector_losses)
        return losses

    @torch.no_grad()
    def predict_for_pseudo_labels(
        self,
        batched_inputs: List[Dict[str, torch.Tensor]],
        postprocess: str = "train",
        score_threshold: Optional[float] = None,
        return_all: bool = False,
    ):
        """Detections for making pseudo-labels, without gradients or losses.

        Args:
            postprocess: "train" (FCOS training post-processing: top POST_NMS_TOPK_TRAIN) or "test".
            score_threshold: if given, detections with ``scores <= score_threshold`` are dropped
                before the mask and MaskIoU heads run.
            return_all: also return every detection before that threshold (``pred_boxes``,
                ``scores``, ``pred_classes``; no masks), e.g. to show what the threshold rejected.
        Returns:
            per image, Instances at the input (resized, unpadded) image size with ``pred_boxes``,
            ``scores``, ``pred_classes``, ``pred_masks`` (R, 1, 28, 28 probabilities of the
            predicted class), ``maskiou`` (raw) and ``mask_scores``. The module's train/eval mode is
            left as it is. With ``return_all``: (those detections, every detection).
        """
        if postprocess not in ("train", "test"):
            raise ValueError(f"postprocess must be 'train' or 'test', got {postprocess!r}")
        images = self.preprocess_image(batched_inputs)
        features = self.backbone(images.tensor)
        everything = self.proposal_generator.detect(images, features, postprocess)
        detections = everything
        if score_threshold is not None:
            detections = [d[d.scores > score_threshold] for d in everything]
        detections = self.roi_heads.forward_with_given_boxes(features, detections)
        return (detections, everything) if return_all else detections
