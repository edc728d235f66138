"""VoVNetV2: the backbone of the CenterMask-Lite and CenterMask V-39/57/99 presets (vovnet.md §2-§6).

A stem (stride 4) and four stages of OSA modules (one-shot aggregation: a chain of L convs whose
outputs are concatenated once with the module's input, squeezed by a 1×1 conv, reweighted by an
effective squeeze-excitation and, from the second module of a stage on, added to the input).

The module names are part of the checkpoint contract: CenterMask2 checkpoints name every conv unit
with a slash (``stage4.OSA4_2.layers.3.OSA4_2_3/conv.weight``), so the units are Sequentials built
from ``(name, module)`` pairs. PyTorch only forbids dots in module names.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec, get_norm
from detectron2.modeling.backbone import BACKBONE_REGISTRY, Backbone
from torchvision.ops import DeformConv2d

__all__ = [
    "VOVNET_CONFIGS",
    "VoVNetConfig",
    "VoVNet",
    "EffectiveSE",
    "OSAModule",
    "DeformableConvUnit",
    "build_vovnet_backbone",
]


@dataclass(frozen=True)
class VoVNetConfig:
    """One row of vovnet.md §3."""

    stem: Tuple[int, int, int]  # S0, S1, S2
    stage_channels: Tuple[int, int, int, int]  # C_s of stages 2-5
    out_channels: Tuple[int, int, int, int]  # C_out of stages 2-5
    layers_per_block: int  # L
    blocks: Tuple[int, int, int, int]  # B of stages 2-5
    depthwise: bool


_SLIM = dict(stage_channels=(64, 80, 96, 112), out_channels=(112, 256, 384, 512))
_WIDE = dict(stage_channels=(128, 160, 192, 224), out_channels=(256, 512, 768, 1024))

VOVNET_CONFIGS: Dict[str, VoVNetConfig] = {
    "V-19-slim-dw-eSE": VoVNetConfig((64, 64, 64), **_SLIM, layers_per_block=3, blocks=(1, 1, 1, 1), depthwise=True),
    "V-19-dw-eSE": VoVNetConfig((64, 64, 64), **_WIDE, layers_per_block=3, blocks=(1, 1, 1, 1), depthwise=True),
    "V-19-slim-eSE": VoVNetConfig((64, 64, 128), **_SLIM, layers_per_block=3, blocks=(1, 1, 1, 1), depthwise=False),
    "V-19-eSE": VoVNetConfig((64, 64, 128), **_WIDE, layers_per_block=3, blocks=(1, 1, 1, 1), depthwise=False),
    "V-39-eSE": VoVNetConfig((64, 64, 128), **_WIDE, layers_per_block=5, blocks=(1, 1, 2, 2), depthwise=False),
    "V-57-eSE": VoVNetConfig((64, 64, 128), **_WIDE, layers_per_block=5, blocks=(1, 1, 4, 3), depthwise=False),
    "V-99-eSE": VoVNetConfig((64, 64, 128), **_WIDE, layers_per_block=5, blocks=(1, 3, 9, 3), depthwise=False),
}

_NORMS = ("FrozenBN", "BN", "SyncBN", "naiveSyncBN", "GN")


def conv_unit(name: str, c_in: int, c_out: int, norm: str, kernel: int = 3, stride: int = 1):
    """Conv (no bias) → norm → ReLU as the children ``name/conv``, ``name/norm``, ``name/relu``."""
    return [
        (f"{name}/conv", nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False)),
        (f"{name}/norm", get_norm(norm, c_out)),
        (f"{name}/relu", nn.ReLU(inplace=True)),
    ]


def depthwise_unit(name: str, channels: int, norm: str, stride: int = 1):
    """Depthwise 3×3 → pointwise 1×1 → norm → ReLU; no norm or activation between the two convs."""
    return [
        (f"{name}/dw_conv3x3",
         nn.Conv2d(channels, channels, 3, stride=stride, padding=1, groups=channels, bias=False)),
        (f"{name}/pw_conv1x1", nn.Conv2d(channels, channels, 1, bias=False)),
        (f"{name}/pw_norm", get_norm(norm, channels)),
        (f"{name}/pw_relu", nn.ReLU(inplace=True)),
    ]


class DeformableConvUnit(nn.Module):
    """Deformable 3×3 conv (DCNv1, or v2 when modulated) → norm → ReLU, for the ``dcn`` presets
    (vovnet.md §8). Children ``name/conv_offset`` (offsets, then mask logits; zero-initialised, so
    training starts from a plain conv), ``name/conv``, ``name/norm``.

    The deformable conv is torchvision's, which runs on CPU and GPU (detectron2's modulated one has
    no CPU kernel). Its offsets are laid out as detectron2's: detectron2's own DeformConv calls this
    op on CPU. ``name/conv`` holds only ``weight`` (C_out, C_in, 3, 3), as in CenterMask2 checkpoints.
    """

    def __init__(self, name: str, c_in: int, c_out: int, norm: str, *, modulated: bool, deformable_groups: int):
        super().__init__()
        self.unit, self.modulated = name, modulated
        self.offset_channels = 18 * deformable_groups
        mask_channels = 9 * deformable_groups if modulated else 0
        offset = nn.Conv2d(c_in, self.offset_channels + mask_channels, 3, padding=1)
        nn.init.zeros_(offset.weight)
        nn.init.zeros_(offset.bias)
        self.add_module(f"{name}/conv_offset", offset)
        self.add_module(f"{name}/conv", DeformConv2d(c_in, c_out, 3, padding=1, bias=False))
        self.add_module(f"{name}/norm", get_norm(norm, c_out))

    def forward(self, x: Tensor) -> Tensor:
        o = getattr(self, f"{self.unit}/conv_offset")(x)
        offsets = o[:, : self.offset_channels]
        mask = o[:, self.offset_channels:].sigmoid() if self.modulated else None
        y = getattr(self, f"{self.unit}/conv")(x, offsets, mask)
        return F.relu_(getattr(self, f"{self.unit}/norm")(y))


def _sequential(*units) -> nn.Sequential:
    return nn.Sequential(OrderedDict(child for unit in units for child in unit))


class EffectiveSE(nn.Module):
    """eSE: global average pool → one 1×1 conv C → C (with bias, no reduction) → hard sigmoid
    ReLU6(s + 3) / 6 → rescale the input channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = self.fc(x.mean(dim=(2, 3), keepdim=True))
        return x * (F.relu6(s + 3.0) / 6.0)


class OSAModule(nn.Module):
    """One-shot aggregation (vovnet.md §2.4): concat[x, y_0 … y_{L-1}] → 1×1 conv → eSE (→ + x)."""

    def __init__(
        self,
        name: str,
        in_channels: int,
        stage_channels: int,
        out_channels: int,
        num_layers: int,
        *,
        norm: str,
        identity: bool,
        depthwise: bool,
        deformable: Optional[Tuple[bool, int]] = None,  # (modulated, deformable groups): DCN layers
    ):
        super().__init__()
        self.identity = identity
        layers = []
        c = in_channels
        reduction = None
        if depthwise and in_channels != stage_channels:
            reduction = _sequential(conv_unit(f"{name}_reduction_0", in_channels, stage_channels, norm, kernel=1))
            c = stage_channels
        for i in range(num_layers):
            if depthwise:
                layers.append(_sequential(depthwise_unit(f"{name}_{i}", stage_channels, norm)))
            elif deformable is not None:
                modulated, groups = deformable
                layers.append(DeformableConvUnit(f"{name}_{i}", c, stage_channels, norm,
                                                 modulated=modulated, deformable_groups=groups))
            else:
                layers.append(_sequential(conv_unit(f"{name}_{i}", c, stage_channels, norm)))
            c = stage_channels
        self.layers = nn.ModuleList(layers)
        self.conv_reduction = reduction  # dw only: brings C_in to C_s for the first depthwise layer
        self.concat = _sequential(
            conv_unit(f"{name}_concat", in_channels + num_layers * stage_channels, out_channels, norm, kernel=1)
        )
        self.ese = EffectiveSE(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        t = x if self.conv_reduction is None else self.conv_reduction(x)
        outputs = [x]  # the original input, not the reduced one
        for layer in self.layers:
            t = layer(t)
            outputs.append(t)
        z = self.ese(self.concat(torch.cat(outputs, dim=1)))
        return z + x if self.identity else z


class VoVNet(Backbone):
    """Stem (stride 4) + stages 2-5 (strides 4, 8, 16, 32) of OSA modules; returns the features
    named in ``out_features`` among ``stem``, ``stage2`` … ``stage5``.

    ``freeze_at`` k ≥ 1 freezes the first k of [stem, stage2, …, stage5] as detectron2's ResNet
    does: no gradients, and their BN layers become FrozenBatchNorm2d (the rest keep theirs).
    ``stage_with_dcn`` turns the 3×3 OSA layers of a stage into deformable units (not with dw).
    """

    def __init__(
        self,
        config: VoVNetConfig,
        out_features: Sequence[str],
        *,
        norm: str = "FrozenBN",
        freeze_at: int = 0,
        stage_with_dcn: Sequence[bool] = (False, False, False, False),
        with_modulated_dcn: bool = False,
        deformable_groups: int = 1,
    ):
        super().__init__()
        if norm not in _NORMS:
            raise ValueError(f"MODEL.VOVNET.NORM must be one of {', '.join(_NORMS)}; got {norm!r}")
        if norm == "GN":
            odd = sorted({c for c in (*config.stem, *config.stage_channels, *config.out_channels) if c % 32})
            if odd:
                raise ValueError(f"MODEL.VOVNET.NORM GN needs channel counts divisible by 32; this VoVNet has {odd}")
        names = ["stem", "stage2", "stage3", "stage4", "stage5"]
        unknown = [f for f in out_features if f not in names]
        if unknown or not out_features:
            raise ValueError(f"MODEL.VOVNET.OUT_FEATURES must name some of {names}; got {list(out_features)}")
        if len(stage_with_dcn) != 4:
            raise ValueError(f"MODEL.VOVNET.STAGE_WITH_DCN needs 4 booleans (stages 2-5), got {stage_with_dcn}")
        s0, s1, s2 = config.stem
        stem_units = [conv_unit("stem_1", 3, s0, norm, stride=2)]
        if config.depthwise:  # S0 = S1 = S2 in the dw configurations
            stem_units += [depthwise_unit("stem_2", s1, norm), depthwise_unit("stem_3", s2, norm, stride=2)]
        else:
            stem_units += [conv_unit("stem_2", s0, s1, norm), conv_unit("stem_3", s1, s2, norm, stride=2)]
        self.stem = _sequential(*stem_units)

        channels, strides = {"stem": s2}, {"stem": 4}
        c_in = s2
        for n in range(2, 6):
            k = n - 2
            stage = nn.Sequential()
            if n >= 3:
                stage.add_module("Pooling", nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
            dcn = (with_modulated_dcn, deformable_groups) if stage_with_dcn[k] else None
            for b in range(1, config.blocks[k] + 1):
                name = f"OSA{n}_{b}"
                stage.add_module(name, OSAModule(
                    name, c_in if b == 1 else config.out_channels[k], config.stage_channels[k],
                    config.out_channels[k], config.layers_per_block,
                    norm=norm, identity=b > 1, depthwise=config.depthwise, deformable=dcn,
                ))
            c_in = config.out_channels[k]
            self.add_module(f"stage{n}", stage)
            channels[f"stage{n}"], strides[f"stage{n}"] = c_in, 2**n

        self._out_features = list(out_features)
        self._out_feature_channels = {f: channels[f] for f in out_features}
        self._out_feature_strides = {f: strides[f] for f in out_features}
        self._freeze(freeze_at)

    def _freeze(self, freeze_at: int) -> None:
        units = [self.stem, self.stage2, self.stage3, self.stage4, self.stage5]
        for unit in units[: max(freeze_at, 0)]:
            for p in unit.parameters():
                p.requires_grad = False
            FrozenBatchNorm2d.convert_frozen_batchnorm(unit)

    def forward(self, x: Tensor) -> Dict[str, Tensor]:
        outputs = {}
        x = self.stem(x)
        if "stem" in self._out_features:
            outputs["stem"] = x
        for n in range(2, 6):
            x = getattr(self, f"stage{n}")(x)
            if f"stage{n}" in self._out_features:
                outputs[f"stage{n}"] = x
        return outputs

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            f: ShapeSpec(channels=self._out_feature_channels[f], stride=self._out_feature_strides[f])
            for f in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_vovnet_backbone(cfg, input_shape: ShapeSpec) -> VoVNet:
    """The VoVNet of ``cfg.MODEL.VOVNET`` (CONV_BODY, OUT_FEATURES, NORM, DCN keys), with
    ``cfg.MODEL.BACKBONE.FREEZE_AT``. ``input_shape`` must have 3 channels."""
    v = cfg.MODEL.VOVNET
    if v.CONV_BODY not in VOVNET_CONFIGS:
        raise ValueError(f"MODEL.VOVNET.CONV_BODY must be one of {', '.join(VOVNET_CONFIGS)}; got {v.CONV_BODY!r}")
    if input_shape.channels != 3:
        raise ValueError(f"VoVNet takes 3-channel images, got {input_shape.channels} channels")
    return VoVNet(
        VOVNET_CONFIGS[v.CONV_BODY],
        v.OUT_FEATURES,
        norm=v.NORM,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        stage_with_dcn=tuple(v.STAGE_WITH_DCN),
        with_modulated_dcn=v.WITH_MODULATED_DCN,
        deformable_groups=v.DEFORMABLE_GROUPS,
    )
