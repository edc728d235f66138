"""ResNet + FPN with P6/P7 computed from P5 (centermask.md §1).

The output features are ``p3``..``p7`` (strides 8..128). Any ResNet depth detectron2 builds works
(18/34/50/101); the state-dict names are detectron2's (``backbone.bottom_up.*``, ``backbone.fpn_*``,
``backbone.top_block.p6/p7``), which are also CenterMask2's.
"""
from __future__ import annotations

from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7

__all__ = ["build_fcos_resnet_fpn_backbone"]


@BACKBONE_REGISTRY.register()
def build_fcos_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ResNet (``cfg.MODEL.RESNETS``) → FPN on ``cfg.MODEL.FPN.IN_FEATURES`` → P6 = conv(P5),
    P7 = conv(ReLU(P6)); ``LastLevelP6P7(C, C, "p5")`` with C = ``cfg.MODEL.FPN.OUT_CHANNELS``."""
    bottom_up = build_resnet_backbone(cfg, input_shape)
    out_channels = cfg.MODEL.FPN.OUT_CHANNELS
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=out_channels,
        norm=cfg.MODEL.FPN.NORM,
        top_block=LastLevelP6P7(out_channels, out_channels, in_feature="p5"),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )
