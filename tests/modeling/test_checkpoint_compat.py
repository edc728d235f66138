"""State-dict compatibility with CenterMask2 / Polite Teacher checkpoints (reference_keys.txt)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from detectron2.modeling import build_model

import politeteacher.modeling  # noqa: F401
from politeteacher.config import resolve_config
from politeteacher.errors import PoliteTeacherError
from politeteacher.modeling import extract_model_state_dict, load_centermask_weights

from centermask_testutils import build_small_model

# A copy of shared/spec/reference_keys.txt: CenterMask2 / Polite Teacher checkpoint names and shapes.
REFERENCE = Path(__file__).resolve().parent / "data" / "reference_keys.txt"


def _reference():
    rows = [line.rstrip("\n").split("\t") for line in REFERENCE.read_text().splitlines()]
    return [(r[0], ast.literal_eval(r[1]), r[2], r[3]) for r in rows if r and not r[0].startswith("#")]


@pytest.fixture(scope="module")
def r50():
    cfg = resolve_config(config_file=None, preset="baseline_sup10", overrides=["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    return build_model(cfg)


def test_r50_state_dict_matches_reference_keys(r50):
    ref = _reference()
    sd = r50.state_dict()
    assert list(sd) == [name for name, *_ in ref]
    assert {k: tuple(v.shape) for k, v in sd.items()} == {name: shape for name, shape, *_ in ref}
    params = dict(r50.named_parameters())
    for name, _, kind, trainable in ref:
        if kind == "param":
            assert str(params[name].requires_grad) == trainable, name
        else:
            assert name not in params, name
    assert sum(p.numel() for p in r50.parameters()) == 51_227_852
    assert sum(p.numel() for p in r50.parameters() if p.requires_grad) == 51_005_452


def test_r50_strict_load_of_a_reference_state_dict(r50):
    sd = {name: torch.full(shape, 0.5) for name, shape, *_ in _reference()}
    r50.load_state_dict(sd, strict=True)
    assert (r50.roi_heads.maskiou_head.maskiou.weight == 0.5).all()
    # Polite Teacher two-model checkpoints load through the helper, teacher by default
    ckpt = {"model": {**{f"modelTeacher.{k}": v for k, v in sd.items()},
                      **{f"modelStudent.{k}": v * 0 for k, v in sd.items()}}, "iteration": 15000}
    load_centermask_weights(r50, ckpt)
    assert (r50.proposal_generator.fcos_head.scales[0].scale == 0.5).all()
    load_centermask_weights(r50, ckpt, which="student")
    assert (r50.proposal_generator.fcos_head.scales[0].scale == 0).all()


def test_weight_loader_formats(tmp_path):
    src = build_small_model(num_classes=2, seed=0)
    dst = build_small_model(num_classes=2, seed=1)
    key = "roi_heads.mask_head.predictor.weight"
    sd = src.state_dict()

    load_centermask_weights(dst, sd)  # plain state dict
    assert torch.equal(dst.state_dict()[key], sd[key])

    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "iteration": 3}, tmp_path / "d2.pth")
    dst2 = build_small_model(num_classes=2, seed=2)
    assert load_centermask_weights(dst2, tmp_path / "d2.pth")["loaded"] == len(sd)
    assert torch.equal(dst2.state_dict()[key], sd[key])

    numpy_sd = {"model": {k: v.numpy() for k, v in sd.items()}, "__author__": "x"}
    assert len(extract_model_state_dict(numpy_sd)) == len(sd)


def test_weight_loader_rejects_other_models(tmp_path):
    three_classes = build_small_model(num_classes=3).state_dict()
    model = build_small_model(num_classes=2)
    with pytest.raises(PoliteTeacherError) as err:
        load_centermask_weights(model, three_classes)
    msg = str(err.value)
    assert "\n" not in msg and "shape mismatches" in msg and "cls_logits" in msg
    with pytest.raises(PoliteTeacherError, match="missing keys"):
        load_centermask_weights(model, {"backbone.fpn_lateral3.weight": torch.zeros(1)})
    with pytest.raises(PoliteTeacherError, match="not found"):
        load_centermask_weights(model, tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(PoliteTeacherError, match="could not be read"):
        load_centermask_weights(model, tmp_path / "junk.pth")
    with pytest.raises(PoliteTeacherError, match="no student weights"):
        load_centermask_weights(model, {"modelTeacher.x": torch.zeros(1)}, which="student")
