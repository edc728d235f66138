"""Dataset dict -> model input. The weak view (resize + flip) and the weak + strong pair.

Both views of a pair come from one geometric transform (the same resize and the same flip), so the
boxes and masks of one hold for the other; the strong view only adds photometric noise and cutouts
(:mod:`.augment`). Unlabelled images never carry ``instances``: their annotations, if a dataset has
them, only travel as ``hidden_instances`` for pseudo-label statistics.
"""
from __future__ import annotations

import copy
from typing import List, Tuple

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import Instances

from .augment import StrongAugmentation

__all__ = ["WeakMapper", "TwoViewMapper"]


class WeakMapper(DatasetMapper):
    """detectron2's DatasetMapper with the weak augmentation only: ResizeShortestEdge
    (INPUT.MIN_SIZE_TRAIN / MAX_SIZE_TRAIN / MIN_SIZE_TRAIN_SAMPLING) + random horizontal flip in
    training, ResizeShortestEdge(MIN_SIZE_TEST, MAX_SIZE_TEST) otherwise; no cropping. Masks follow
    INPUT.MASK_FORMAT ("polygon" or "bitmask"); with INPUT.BOXES_ONLY they are dropped (the model
    then gives no mask loss on these images). A dict's ``hidden_annotations`` become
    ``hidden_instances`` (same geometry), never ``instances``."""

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["augmentations"] = utils.build_augmentation(cfg, is_train)  # resize (+ flip): no crop
        ret["recompute_boxes"] = False
        ret["use_instance_mask"] = cfg.MODEL.MASK_ON and not cfg.INPUT.BOXES_ONLY
        return ret

    def _instances(self, annotations: List[dict], transforms, image_shape) -> Instances:
        annos = []
        for obj in annotations:
            if obj.get("iscrowd", 0):
                continue
            obj = dict(obj)
            if not self.use_instance_mask:
                obj.pop("segmentation", None)
            if not self.use_keypoint:
                obj.pop("keypoints", None)
            annos.append(utils.transform_instance_annotations(
                obj, transforms, image_shape, keypoint_hflip_indices=self.keypoint_hflip_indices
            ))
        instances = utils.annotations_to_instances(annos, image_shape, mask_format=self.instance_mask_format)
        return utils.filter_empty_instances(instances)

    def _load(self, dataset_dict: dict) -> Tuple[dict, np.ndarray, T.TransformList]:
        """Copy the dict, read its image and apply the (random) weak geometry. The returned dict
        has no image yet; annotations are transformed into (hidden_)instances in training."""
        d = copy.deepcopy(dataset_dict)
        image = utils.read_image(d["file_name"], format=self.image_format)
        utils.check_image_size(d, image)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        annotations, hidden = d.pop("annotations", None), d.pop("hidden_annotations", None)
        if self.is_train:
            if annotations is not None:
                d["instances"] = self._instances(annotations, transforms, image.shape[:2])
            # Pseudo-label statistics compare masks too: hidden ground truth without them is left out.
            if hidden is not None and self.use_instance_mask:
                d["hidden_instances"] = self._instances(hidden, transforms, image.shape[:2])
        return d, image, transforms

    @staticmethod
    def _to_tensor(image: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def __call__(self, dataset_dict: dict) -> dict:
        d, image, _ = self._load(dataset_dict)
        d["image"] = self._to_tensor(image)
        return d


def _shallow_copy(instances: Instances) -> Instances:
    return Instances(instances.image_size, **instances.get_fields())


class TwoViewMapper(WeakMapper):
    """One image -> ``(weak_dict, strong_dict)`` with identical geometry.

    ``labeled=True``: both views carry the same ``instances``. ``labeled=False``: any
    ``annotations`` are dropped and neither view has ``instances``; ``hidden_annotations`` (kept by
    :func:`~politeteacher.data.splits.labeled_and_unlabeled` for statistics) become
    ``hidden_instances``."""

    @configurable
    def __init__(self, is_train: bool = True, *, labeled: bool, strong_augmentation, **kwargs):
        super().__init__(is_train, **kwargs)
        self.labeled = labeled
        self.strong_augmentation = strong_augmentation

    @classmethod
    def from_config(cls, cfg, is_train: bool = True, labeled: bool = True):
        ret = super().from_config(cfg, is_train)
        ret["labeled"] = labeled
        ret["strong_augmentation"] = StrongAugmentation(cfg)
        return ret

    def __call__(self, dataset_dict: dict) -> Tuple[dict, dict]:
        if not self.labeled:
            dataset_dict = {k: v for k, v in dataset_dict.items() if k != "annotations"}
        weak, image, _ = self._load(dataset_dict)
        strong = dict(weak)
        weak["image"] = self._to_tensor(image)
        strong["image"] = self._to_tensor(self.strong_augmentation(image))
        for key in ("instances", "hidden_instances"):
            if key in weak:
                strong[key] = _shallow_copy(weak[key])
        return weak, strong
