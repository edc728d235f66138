"""VoVNetV2 and MobileNetV2 backbones against the spec (vovnet.md §3-§8, §10, §13): checkpoint names,
sizes, output shapes and the check values of hash-filled backbones."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from detectron2.layers import FrozenBatchNorm2d, ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, build_backbone

import politeteacher.modeling  # noqa: F401  (registers the backbones)
from politeteacher.config import resolve_config
from politeteacher.modeling.vovnet import VOVNET_CONFIGS, DeformableConvUnit

from spec_values import CHECK_VALUES, assert_matches, backbone_keys, fill_state_dict, spec_input

BACKBONE_KEYS = backbone_keys()
PREFIX = "backbone.bottom_up."
ALL_FEATURES = '["stem", "stage2", "stage3", "stage4", "stage5"]'


def build_bottom_up(config: str, *overrides):
    """The bottom-up network of ``config`` (a CONV_BODY, ``V-39-eSE+DCN`` or ``MobileNetV2``) through
    the registered builders, as every preset builds it (FrozenBN, FREEZE_AT 0)."""
    if config == "MobileNetV2":
        cfg = resolve_config("centermask_lite_Mv2_FPN_ms4x", overrides=list(overrides))
        return BACKBONE_REGISTRY.get("build_mobilenetv2_backbone")(cfg, ShapeSpec(channels=3))
    body, _, dcn = config.partition("+")
    extra = ["MODEL.VOVNET.STAGE_WITH_DCN", "[False, True, True, True]", "MODEL.VOVNET.WITH_MODULATED_DCN", "True"]
    cfg = resolve_config("centermask_V39_eSE_FPN_ms3x", overrides=[
        "MODEL.VOVNET.CONV_BODY", body, "MODEL.VOVNET.OUT_FEATURES", ALL_FEATURES, *(extra if dcn else []), *overrides,
    ])
    return BACKBONE_REGISTRY.get("build_vovnet_backbone")(cfg, ShapeSpec(channels=3))


def test_every_named_configuration_is_covered():
    assert set(VOVNET_CONFIGS) == set(BACKBONE_KEYS) - {"V-39-eSE+DCN", "MobileNetV2"}
    assert len(VOVNET_CONFIGS) == 7


@pytest.mark.parametrize("config", list(BACKBONE_KEYS))
def test_backbone_state_dict_matches_reference_keys(config):
    """Names (in order), shapes, parameter vs buffer and trainability as the reference dumps them."""
    model = build_bottom_up(config)
    ref = BACKBONE_KEYS[config]
    sd = model.state_dict()
    assert [PREFIX + k for k in sd] == [name for name, *_ in ref]
    assert [tuple(v.shape) for v in sd.values()] == [shape for _, shape, *_ in ref]
    params = dict(model.named_parameters())
    for name, _, kind, trainable in ref:
        key = name[len(PREFIX):]
        assert (kind == "param") == (key in params), name
        if kind == "param":
            assert str(params[key].requires_grad) == trainable, name
    sizes = CHECK_VALUES["backbones"][
        "V-39-eSE+DCN(stages3-5,modulated)" if config == "V-39-eSE+DCN" else config
    ]
    assert len(sd) == sizes["entries"]
    assert sum(p.numel() for p in model.parameters()) == sizes["parameter_elements"]
    assert sum(b.numel() for b in model.buffers()) == sizes["buffer_elements"]


@pytest.mark.parametrize("config", [c for c, v in CHECK_VALUES["backbones"].items() if v["outputs"]])
def test_backbone_check_values(config):
    """§13.2 (a): hash-filled backbone on the fixed 1×3×320×448 input; also the output shapes and
    what ``output_shape()`` reports."""
    model = build_bottom_up(config).eval()
    model.load_state_dict(fill_state_dict(model, PREFIX))
    with torch.no_grad():
        out = model(spec_input("input", (1, 3, 320, 448)))
    expected = CHECK_VALUES["backbones"][config]["outputs"]
    assert set(expected) <= set(out)
    for feature, values in expected.items():
        assert_matches(out[feature], values, f"{config} {feature}")
    for feature, spec in model.output_shape().items():
        assert out[feature].shape[1] == spec.channels
        assert out[feature].shape[2:] == (320 // spec.stride, 448 // spec.stride), feature


def test_vovnet_output_shapes_for_odd_sizes():
    """Strides 4 … 32 with ceil-mode pooling: ⌈(h − 3)/2⌉ + 1 per pooled stage (vovnet.md §7.1)."""
    model = build_bottom_up("V-19-slim-dw-eSE").eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 97, 130))
    sizes = {f: tuple(t.shape[2:]) for f, t in out.items()}
    assert sizes == {"stem": (25, 33), "stage2": (25, 33), "stage3": (12, 16), "stage4": (6, 8), "stage5": (3, 4)}
    assert model.size_divisibility == 0


@pytest.mark.parametrize("levels, features", [(2, ["p3", "p4", "p5", "p6", "p7"]), (1, ["p3", "p4", "p5", "p6"]),
                                              (0, ["p3", "p4", "p5"])])
def test_fpn_top_levels_come_from_p5(levels, features):
    """MODEL.FCOS.TOP_LEVELS: P6 (and P7) from the FPN's P5 (vovnet.md §7.3); the FPN asks for 32."""
    cfg = resolve_config("centermask_lite_V19_slim_dw_eSE_FPN_ms4x", overrides=["MODEL.FCOS.TOP_LEVELS", str(levels)])
    backbone = build_backbone(cfg).eval()
    assert list(backbone.output_shape()) == features
    assert sorted({k.split(".")[1] for k in backbone.state_dict() if k.startswith("top_block.")}) == features[3:]
    assert backbone.size_divisibility == 32
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, 320, 448))
        if levels:  # P6 = conv3×3/2 of P5 (not of stage5)
            p6 = F.conv2d(out["p5"], backbone.top_block.p6.weight, backbone.top_block.p6.bias, stride=2, padding=1)
            torch.testing.assert_close(out["p6"], p6)
    assert {f: tuple(t.shape[1:]) for f, t in out.items()} == {
        f: s for f, s in {"p3": (128, 40, 56), "p4": (128, 20, 28), "p5": (128, 10, 14), "p6": (128, 5, 7),
                          "p7": (128, 3, 4)}.items() if f in features
    }


def test_freeze_at_freezes_leading_units_like_detectron2_resnet():
    """FREEZE_AT 2 with BN: stem and stage2 get no gradient and frozen statistics; later stages train."""
    model = build_bottom_up("V-19-eSE", "MODEL.VOVNET.NORM", "BN", "MODEL.BACKBONE.FREEZE_AT", "2")
    for unit in ("stem", "stage2"):
        part = getattr(model, unit)
        assert not any(p.requires_grad for p in part.parameters()), unit
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in part.modules()), unit
        assert any(isinstance(m, FrozenBatchNorm2d) for m in part.modules()), unit
    for unit in ("stage3", "stage4", "stage5"):
        part = getattr(model, unit)
        assert all(p.requires_grad for p in part.parameters()), unit
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in part.modules()), unit
    frozen_all = build_bottom_up("V-19-slim-eSE", "MODEL.BACKBONE.FREEZE_AT", "5")
    assert not any(p.requires_grad for p in frozen_all.parameters())


def test_mobilenet_freeze_at_counts_feature_entries():
    model = build_bottom_up("MobileNetV2", "MODEL.BACKBONE.FREEZE_AT", "3")
    for i, entry in enumerate(model.features):
        assert all(p.requires_grad == (i >= 3) for p in entry.parameters()), i


def test_norm_choices():
    """GN wherever 32 divides every width; the slim configurations cannot have it; no norm is refused."""
    gn = build_bottom_up("V-19-eSE", "MODEL.VOVNET.NORM", "GN")
    assert isinstance(getattr(gn.stem, "stem_1/norm"), torch.nn.GroupNorm)
    assert "stem.stem_1/norm.weight" in dict(gn.named_parameters())
    with pytest.raises(ValueError, match="divisible by 32.*80"):
        build_bottom_up("V-19-slim-eSE", "MODEL.VOVNET.NORM", "GN")
    with pytest.raises(ValueError, match="MODEL.VOVNET.NORM"):
        build_bottom_up("V-19-eSE", "MODEL.VOVNET.NORM", "")
    with pytest.raises(ValueError, match="CONV_BODY"):
        build_bottom_up("V-27-eSE")


def _unit(modulated: bool):
    torch.manual_seed(0)
    unit = DeformableConvUnit("M_0", 4, 6, "FrozenBN", modulated=modulated, deformable_groups=1).eval()
    return unit, getattr(unit, "M_0/conv").weight, torch.randn(2, 4, 9, 11)


@pytest.mark.parametrize("modulated", [False, True])
def test_deformable_unit_starts_as_a_plain_conv(modulated):
    """Zero-initialised offsets: a plain 3×3 conv, times sigmoid(0) = 0.5 when modulated."""
    unit, weight, x = _unit(modulated)
    assert getattr(unit, "M_0/conv_offset").weight.shape == (27 if modulated else 18, 4, 3, 3)
    with torch.no_grad():
        expected = F.relu(F.conv2d(x, weight, padding=1) * (0.5 if modulated else 1.0))
        torch.testing.assert_close(unit(x), expected)


def test_deformable_unit_reads_offsets_as_dy_dx_pairs_then_mask():
    """Offset channels 2k, 2k+1 move tap k by (dy, dx); the last 9 channels are mask logits. With
    dx = 1 everywhere and mask ≈ 1 the unit is a conv of the input shifted one column left."""
    unit, weight, x = _unit(modulated=True)
    bias = torch.zeros(27)
    bias[1:18:2] = 1.0  # dx of every tap
    bias[18:] = 30.0  # mask logits: sigmoid ≈ 1
    with torch.no_grad():
        getattr(unit, "M_0/conv_offset").bias.copy_(bias)
        shifted = F.pad(x, (1, 2, 1, 1))[:, :, :, 1:]  # column j of `shifted` (after the pad) is x[..., j]
        torch.testing.assert_close(unit(x), F.relu(F.conv2d(shifted, weight)))


def test_dcn_backbone_runs_on_cpu():
    model = build_bottom_up("V-39-eSE+DCN").eval()
    assert isinstance(model.stage3.OSA3_1.layers[0], DeformableConvUnit)
    assert not isinstance(model.stage2.OSA2_1.layers[0], DeformableConvUnit)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96))
    assert tuple(out["stage5"].shape) == (1, 1024, 2, 3)


@pytest.mark.parametrize("config", ["V-19-slim-dw-eSE", "V-39-eSE", "MobileNetV2"])
def test_frozen_batchnorm_folds_into_the_units_convs(config):
    """eval / predict fold FrozenBN (modeling.build.build_inference_model): the units' norms too."""
    from politeteacher.modeling import fold_frozen_batchnorm

    model = build_bottom_up(config).eval()
    model.load_state_dict(fill_state_dict(model, PREFIX))  # statistics far from the identity
    x = spec_input("input", (1, 3, 64, 96))
    norms = sum(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    with torch.no_grad():
        before = model(x)
        assert fold_frozen_batchnorm(model) == norms > 0
        assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
        after = model(x)
    for feature in before:  # float32 rounding of the folded weights: measured ≤ 2.2e-6 of the largest value
        bound = 1e-5 * before[feature].abs().max().item()
        torch.testing.assert_close(after[feature], before[feature], rtol=0.0, atol=bound)
