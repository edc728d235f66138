"""CenterMask on detectron2 (centermask.md), with ResNet, VoVNetV2 or MobileNetV2 backbones (vovnet.md).

Importing this package registers the components with detectron2's registries, so
``detectron2.modeling.build_model(cfg)`` builds a CenterMask from a politeteacher config.
"""
from .backbone import (
    build_fcos_mobilenetv2_fpn_backbone,
    build_fcos_resnet_fpn_backbone,
    build_fcos_vovnet_fpn_backbone,
)
from .fcos import FCOS, FCOSHead, Scale
from .fuse import fold_frozen_batchnorm
from .mask_head import SpatialAttentionMaskHead
from .maskiou_head import ROI_MASKIOU_HEAD_REGISTRY, MaskIoUHead, build_maskiou_head
from .meta_arch import CenterMask
from .mobilenet import MobileNetV2, build_mobilenetv2_backbone
from .roi_heads import AdaptiveLevelROIPooler, CenterMaskROIHeads
from .vovnet import VOVNET_CONFIGS, VoVNet, build_vovnet_backbone
from .weights import (
    extract_model_state_dict,
    load_backbone_weights,
    load_centermask_weights,
    load_pretrained_weights,
)
from .build import build_centermask, build_inference_model

__all__ = [
    "build_centermask",
    "build_inference_model",
    "build_fcos_resnet_fpn_backbone",
    "build_fcos_vovnet_fpn_backbone",
    "build_fcos_mobilenetv2_fpn_backbone",
    "build_vovnet_backbone",
    "build_mobilenetv2_backbone",
    "VOVNET_CONFIGS",
    "VoVNet",
    "MobileNetV2",
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
    "load_backbone_weights",
    "load_pretrained_weights",
]
