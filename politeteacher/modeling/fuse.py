"""Inference-only rewrite: fold frozen batch norm into the convolution before it.

A `FrozenBatchNorm2d` after a convolution is an affine map per output channel, y = x · scale + shift,
so conv + FrozenBN equals one convolution with weights · scale and bias · scale + shift. Folding saves
the separate pass over every feature map (about 7 % of R-50 inference on a CPU). The folded model has
other parameters than a CenterMask checkpoint (conv biases, no `norm.*`): use it to predict, never to
train or save.
"""
from __future__ import annotations

import torch
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import nn

__all__ = ["fold_frozen_batchnorm"]


def _fold(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> None:
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    shift = bn.bias - bn.running_mean * scale
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias, requires_grad=False)


@torch.no_grad()
def fold_frozen_batchnorm(model: nn.Module) -> int:
    """Fold every `FrozenBatchNorm2d` into the convolution before it, in place: the `norm` of a
    detectron2 `Conv2d` (ResNet), or the next child after a conv in an `nn.Sequential` (VoVNet and
    MobileNetV2 units, whose norm becomes an `nn.Identity`). Returns how many were folded."""
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, Conv2d) and isinstance(module.norm, FrozenBatchNorm2d):
            _fold(module, module.norm)
            module.norm = None
            folded += 1
        elif isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (_, conv), (name, bn) in zip(children, children[1:]):
                if isinstance(conv, nn.Conv2d) and isinstance(bn, FrozenBatchNorm2d):
                    _fold(conv, bn)
                    setattr(module, name, nn.Identity())
                    folded += 1
    return folded
