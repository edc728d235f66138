"""Bottom-up network + FPN + P6/P7 computed from P5 (centermask.md §1, vovnet.md §7).

One builder per bottom-up family, all registered in detectron2's BACKBONE_REGISTRY under CenterMask2's
names: ResNet (any depth detectron2 builds: 18/34/50/101), VoVNetV2 and MobileNetV2. The output
features are ``p3``..``p7`` (strides 8..128); the state-dict names are detectron2's
(``backbone.bottom_up.*``, ``backbone.fpn_*``, ``backbone.top_block.p6/p7``), which are also CenterMask2's.
"""
from __future__ import annotations

import fvcore.nn.weight_init as weight_init
from detectron2.layers import ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, FPN, Backbone, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelP6P7
from torch import nn

from .mobilenet import build_mobilenetv2_backbone
from .vovnet import build_vovnet_backbone

__all__ = [
    "LastLevelP6",
    "build_fcos_resnet_fpn_backbone",
    "build_fcos_vovnet_fpn_backbone",
    "build_fcos_mobilenetv2_fpn_backbone",
]


class LastLevelP6(nn.Module):
    """P6 = conv3×3/2 of P5 alone (MODEL.FCOS.TOP_LEVELS 1); the same conv as LastLevelP6P7's."""

    def __init__(self, in_channels: int, out_channels: int, in_feature: str = "p5"):
        super().__init__()
        self.num_levels = 1
        self.in_feature = in_feature
        self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
        weight_init.c2_xavier_fill(self.p6)

    def forward(self, x):
        return [self.p6(x)]


def _top_block(cfg):
    """The extra levels above P5, read from the FPN's P5 (not from the bottom-up's last stage)."""
    levels, channels = cfg.MODEL.FCOS.TOP_LEVELS, cfg.MODEL.FPN.OUT_CHANNELS
    if levels == 2:
        return LastLevelP6P7(channels, channels, in_feature="p5")
    if levels == 1:
        return LastLevelP6(channels, channels, in_feature="p5")
    if levels == 0:
        return None
    raise ValueError(f"MODEL.FCOS.TOP_LEVELS must be 0, 1 or 2; got {levels}")


def _fpn(cfg, bottom_up: Backbone) -> FPN:
    """detectron2's FPN on ``cfg.MODEL.FPN.IN_FEATURES`` of ``bottom_up`` with the FCOS top levels."""
    return FPN(
        bottom_up=bottom_up,
        in_features=cfg.MODEL.FPN.IN_FEATURES,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        norm=cfg.MODEL.FPN.NORM,
        top_block=_top_block(cfg),
        fuse_type=cfg.MODEL.FPN.FUSE_TYPE,
    )


@BACKBONE_REGISTRY.register()
def build_fcos_resnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """ResNet (``cfg.MODEL.RESNETS``) → FPN → P6 = conv(P5), P7 = conv(ReLU(P6))."""
    return _fpn(cfg, build_resnet_backbone(cfg, input_shape))


@BACKBONE_REGISTRY.register()
def build_fcos_vovnet_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """VoVNetV2 (``cfg.MODEL.VOVNET``) → FPN on stage3-stage5 → P6, P7 from P5."""
    return _fpn(cfg, build_vovnet_backbone(cfg, input_shape))


@BACKBONE_REGISTRY.register()
def build_fcos_mobilenetv2_fpn_backbone(cfg, input_shape: ShapeSpec) -> FPN:
    """MobileNetV2 → FPN on res3-res5 → P6, P7 from P5."""
    return _fpn(cfg, build_mobilenetv2_backbone(cfg, input_shape))
