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


@torch.no_grad()
def fold_frozen_batchnorm(model: nn.Module) -> int:
    """Fold every `FrozenBatchNorm2d` that is the `norm` of a detectron2 `Conv2d` into that
    convolution, in place. Returns how many were folded."""
    folded = 0
    for module in model.modules():
        if not (isinstance(module, Conv2d) and isinstance(module.norm, FrozenBatchNorm2d)):
            continue
        bn = module.norm
        scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
        shift = bn.bias - bn.running_mean * scale
        bias = shift if module.bias is None else module.bias * scale + shift
        module.weight.mul_(scale.reshape(-1, 1, 1, 1))
        module.bias = nn.Parameter(bias, requires_grad=False)
        module.norm = None
        folded += 1
    return folded
