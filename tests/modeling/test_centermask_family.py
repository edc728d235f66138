"""Whole CenterMask models of the family presets against the spec (vovnet.md §11-§13): checkpoint
names, sizes, and the check values of hash-filled models (FPN, FCOS head, mask and MaskIoU heads)."""
from __future__ import annotations

import pytest
import torch

from detectron2.modeling import build_model

import politeteacher.modeling  # noqa: F401  (registers CenterMask)
from politeteacher.config import resolve_config
from politeteacher.modeling import load_centermask_weights
from politeteacher.modeling.maskiou_head import maskiou_head_input

from spec_values import CHECK_VALUES, assert_matches, fill_state_dict, model_keys, spec_input

# Every model of vovnet_check_values.json and the preset that builds it.
PRESETS = {
    "lite_V_19_slim_eSE": "centermask_lite_V19_slim_eSE_FPN_ms4x",
    "lite_V_19_slim_dw_eSE": "centermask_lite_V19_slim_dw_eSE_FPN_ms4x",
    "lite_V_19_eSE": "centermask_lite_V19_eSE_FPN_ms4x",
    "lite_V_39_eSE": "centermask_lite_V39_eSE_FPN_ms4x",
    "lite_Mv2": "centermask_lite_Mv2_FPN_ms4x",
    "V_39_eSE": "centermask_V39_eSE_FPN_ms3x",
    "V_57_eSE": "centermask_V57_eSE_FPN_ms3x",
    "V_99_eSE": "centermask_V99_eSE_FPN_ms3x",
    "V_39_eSE_dcn": "centermask_V39_eSE_dcn_FPN_ms3x",
    "R_101": "centermask_R101_FPN_ms3x",
    "R_50": "centermask_R50_FPN_ms3x",
}
LEVELS = ["p3", "p4", "p5", "p6", "p7"]


def build(preset: str):
    return build_model(resolve_config(preset, overrides=["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])).eval()


def test_every_model_of_the_check_values_has_a_preset():
    assert set(PRESETS) == set(CHECK_VALUES["models"])


@pytest.mark.parametrize("name", list(PRESETS))
def test_model_sizes_and_check_values(name):
    """Entries and parameter counts (§11, §12), then §13.2 (b) where the spec has values: P3-P7 of the
    backbone, the raw FCOS outputs per level, mask logits and MaskIoU on the fixed ROI input."""
    expected = CHECK_VALUES["models"][name]
    model = build(PRESETS[name])
    sd, params = model.state_dict(), dict(model.named_parameters())
    assert len(sd) == expected["entries"]
    assert sum(p.numel() for p in params.values()) == expected["parameter_elements"]
    assert sum(p.numel() for p in params.values() if p.requires_grad) == expected["trainable_elements"]
    assert sum(v.numel() for k, v in sd.items() if k not in params) == expected["buffer_elements"]
    for prefix, count in expected["parameter_elements_by_prefix"].items():
        assert sum(p.numel() for k, p in params.items() if k.startswith(prefix)) == count, prefix
    if "backbone_fpn" not in expected:
        return  # V-57, V-99 and DCN: sizes only in the spec

    model.load_state_dict(fill_state_dict(model))
    with torch.no_grad():
        features = model.backbone(spec_input("input", (1, 3, 320, 448)))
        for level in LEVELS:
            assert_matches(features[level], expected["backbone_fpn"][level], f"{name} {level}")
        logits, bbox_reg, ctrness = model.proposal_generator.fcos_head([features[f] for f in LEVELS])
        for i, level in enumerate(LEVELS):
            for output, key in ((logits[i], "cls_logits"), (bbox_reg[i], "bbox_reg"), (ctrness[i], "ctrness")):
                assert_matches(output, expected["fcos_head"][level][key], f"{name} {key} {level}")
        roi = spec_input("roi_input", (2, features["p3"].shape[1], 14, 14))
        mask_logits = model.roi_heads.mask_head(roi)
        assert_matches(mask_logits, expected["roi_heads"]["mask_logits"], f"{name} mask logits")
        maskiou = model.roi_heads.maskiou_head(maskiou_head_input(roi, mask_logits[:, :1].sigmoid()))
        assert_matches(maskiou, expected["roi_heads"]["maskiou"], f"{name} maskiou")


@pytest.mark.parametrize("keys, preset", [
    ("V-19-slim-eSE", "centermask_lite_V19_slim_eSE_FPN_ms4x"),
    ("V-39-eSE", "centermask_V39_eSE_FPN_ms3x"),
    ("R-101", "centermask_R101_FPN_ms3x"),
])
def test_model_state_dict_matches_reference_keys_and_loads_strictly(keys, preset):
    """The whole model's names (in order), shapes, kinds and trainability equal the key file; a
    checkpoint made from the key file loads strictly, also with the ``pixel_mean`` / ``pixel_std``
    entries older CenterMask2 checkpoints carry."""
    ref = model_keys(keys)
    model = build(preset)
    sd = model.state_dict()
    assert list(sd) == [name for name, *_ in ref]
    assert [tuple(v.shape) for v in sd.values()] == [shape for _, shape, *_ in ref]
    params = dict(model.named_parameters())
    for name, _, kind, trainable in ref:
        assert (kind == "param") == (name in params), name
        if kind == "param":
            assert str(params[name].requires_grad) == trainable, name

    checkpoint = {name: torch.full(shape, 0.25) for name, shape, *_ in ref}
    model.load_state_dict(checkpoint, strict=True)
    old = {"model": {**checkpoint, "pixel_mean": torch.zeros(3, 1, 1), "pixel_std": torch.ones(3, 1, 1)}}
    model.roi_heads.maskiou_head.maskiou.weight.data.zero_()
    assert load_centermask_weights(model, old)["loaded"] == len(ref)
    assert (model.roi_heads.maskiou_head.maskiou.weight == 0.25).all()
    assert model.pixel_mean.flatten().tolist() == pytest.approx([103.53, 116.28, 123.675])
