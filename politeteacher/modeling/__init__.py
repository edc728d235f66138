"""CenterMask R-50-FPN on detectron2 (centermask.md).

Importing this package registers the components with detectron2's registries, so
``detectron2.modeling.build_model(cfg)`` builds a CenterMask from a politeteacher config.
"""
from .backbone import build_fcos_resnet_fpn_backbone
from .fcos import FCOS, FCOSHead, Scale
from .fuse import fold_frozen_batchnorm
from .mask_head import SpatialAttentionMaskHead
from .maskiou_head import ROI_MASKIOU_HEAD_REGISTRY, MaskIoUHead, build_maskiou_head
from .meta_arch import CenterMask
from .roi_heads import AdaptiveLevelROIPooler, CenterMaskROIHeads
from .weights import extract_model_state_dict, load_centermask_weights

__all__ = [
    "build_fcos_resnet_fpn_backbone",
    "FCOS",
    "FCOSHead",
    "Scale",
    "fold_frozen_batchnorm",
    "SpatialAttentionMaskHead",
    "ROI_MASKIOU_HEAD_REGISTRY",
    "MaskIoUHead",
    "build_maskiou_head",
    "CenterMask",
    "CenterMaskROIHeads",
    "AdaptiveLevelROIPooler",
    "extract_model_state_dict",
    "load_centermask_weights",
]
