"""MobileNetV2, the backbone of the CenterMask-Lite Mv2 preset (vovnet.md §10).

torchvision's MobileNetV2 nests each conv + BN + ReLU6 in its own Sequential; CenterMask2 checkpoints
name a block's layers flat (``features.4.conv.6.weight``), so the blocks are written out here. There is
no final 1280-channel conv: the features stop at the 320-channel block.
"""
from __future__ import annotations

import math
from typing import Dict, List

from torch import Tensor, nn

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling.backbone import BACKBONE_REGISTRY, Backbone

__all__ = ["InvertedResidual", "MobileNetV2", "build_mobilenetv2_backbone"]

# (expansion t, output channels c, blocks n, first stride s)
_BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
# Outputs are taken after these entries of `features`: (name, index, stride).
_OUTPUTS = [("res2", 3, 4), ("res3", 6, 8), ("res4", 13, 16), ("res5", 17, 32)]


class InvertedResidual(nn.Module):
    """[1×1 expand → FrozenBN → ReLU6 (t ≠ 1)] → dw 3×3 → FrozenBN → ReLU6 → 1×1 project → FrozenBN,
    plus the input when the stride is 1 and the width is kept."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int):
        super().__init__()
        hidden = round(c_in * expansion)
        self.residual = stride == 1 and c_in == c_out
        layers: List[nn.Module] = []
        if expansion != 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), FrozenBatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False),
            FrozenBatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            FrozenBatchNorm2d(c_out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(Backbone):
    """``features[0]`` (conv 3×3/2 → FrozenBN → ReLU6) and 17 inverted-residual blocks; returns
    ``res2`` … ``res5`` (24, 32, 96, 320 channels; strides 4 … 32). FrozenBN throughout.

    ``freeze_at`` k freezes ``features[0 … k-1]`` (entries, not stages)."""

    def __init__(self, freeze_at: int = 0):
        super().__init__()
        features: List[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False), FrozenBatchNorm2d(32),
                          nn.ReLU6(inplace=True))
        ]
        widths = [32]  # output channels of each entry
        for t, c, n, s in _BLOCKS:
            for i in range(n):
                features.append(InvertedResidual(widths[-1], c, s if i == 0 else 1, t))
                widths.append(c)
        self.features = nn.ModuleList(features)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                k = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / k))
        for entry in self.features[: max(freeze_at, 0)]:
            for p in entry.parameters():
                p.requires_grad = False

        self._out_features = [name for name, _, _ in _OUTPUTS]
        self._out_feature_channels = {name: widths[i] for name, i, _ in _OUTPUTS}
        self._out_feature_strides = {name: stride for name, _, stride in _OUTPUTS}

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        outputs = {}
        taps = {index: name for name, index, _ in _OUTPUTS}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in taps:
                outputs[taps[i]] = x
        return outputs


@BACKBONE_REGISTRY.register()
def build_mobilenetv2_backbone(cfg, input_shape: ShapeSpec) -> MobileNetV2:
    """MobileNetV2 with ``cfg.MODEL.BACKBONE.FREEZE_AT``; its norm is always FrozenBN."""
    if input_shape.channels != 3:
        raise ValueError(f"MobileNetV2 takes 3-channel images, got {input_shape.channels} channels")
    return MobileNetV2(freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
