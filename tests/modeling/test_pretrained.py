"""Shipped pre-trained weights: `politeteacher://` files, what they hold, and how a model loads them."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from centermask_testutils import build_small_model, small_cfg
from politeteacher.config import resolve_config
from politeteacher.engine.checkpoint import load_initial_weights, resolve_weights
from politeteacher.pretrained import CLASS_SPECIFIC, WEIGHTS_DIR, pretrained_file_data

SHIPPED = WEIGHTS_DIR / "demo_source_R18_GN.pkl"


def test_file_data_leaves_out_the_class_layers_in_float16():
    state = build_small_model(num_classes=8, seed=0).state_dict()
    data = pretrained_file_data(state)
    assert data["__author__"] == "politeteacher" and not data["matching_heuristics"]
    left_out = {k for k in state if k not in data["model"]}
    assert left_out and all(k.startswith(CLASS_SPECIFIC) for k in left_out)
    # one weight and one bias per class-specific layer (FCOS classes, mask predictor, MaskIoU output)
    assert len(left_out) == 2 * len(CLASS_SPECIFIC)
    for k, v in data["model"].items():
        assert v.dtype == (np.float16 if state[k].is_floating_point() else state[k].numpy().dtype), k
        assert np.array_equal(v, state[k].half().numpy() if state[k].is_floating_point() else state[k].numpy())


def test_a_model_with_other_classes_loads_everything_but_its_class_layers(tmp_path):
    source = build_small_model(num_classes=8, seed=0)
    path = tmp_path / "pre.pkl"
    path.write_bytes(pickle.dumps(pretrained_file_data(source.state_dict())))
    target = build_small_model(num_classes=6, seed=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    load_initial_weights(target, str(path))
    after = target.state_dict()
    for k, v in after.items():
        if k.startswith(CLASS_SPECIFIC):
            assert torch.equal(v, before[k]), k  # keeps its own initialisation
        elif v.is_floating_point():
            assert torch.equal(v, source.state_dict()[k].half().float()), k


def test_the_prefix_names_a_file_of_the_package(tmp_path):
    assert resolve_weights("politeteacher://demo_source_R18_GN.pkl") == str(SHIPPED)


def test_the_demo_preset_starts_from_the_shipped_weights():
    cfg = resolve_config("demo")
    assert cfg.MODEL.WEIGHTS == "politeteacher://demo_source_R18_GN.pkl"
    assert SHIPPED.is_file() and SHIPPED.stat().st_size <= 25e6
    cfg.MODEL.FCOS.NUM_CLASSES = cfg.MODEL.ROI_HEADS.NUM_CLASSES = 6
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    checkpoint = DetectionCheckpointer(model)._load_file(str(SHIPPED))
    incompatible = DetectionCheckpointer(model)._load_model(checkpoint)
    # every weight of the demo model but its class layers comes from the file
    assert incompatible.unexpected_keys == [] and incompatible.incorrect_shapes == []
    assert sorted(incompatible.missing_keys) == sorted(
        k for k in model.state_dict() if k.startswith(CLASS_SPECIFIC))


def test_pretrain_writes_loadable_weights(tmp_path, monkeypatch):
    from politeteacher.data import synthetic
    from politeteacher.demo import run_pretrain
    from tiny import TINY_MODEL

    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    monkeypatch.setattr(synthetic, "SOURCE_SPLITS", (("train", 4, 10), ("val", 2, 11)))
    overrides = [*TINY_MODEL, "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD", "0",
                 "DATALOADER.NUM_WORKERS", "0"]
    weights = run_pretrain(tmp_path / "pre", overrides=overrides)
    assert weights == tmp_path / "pre" / "demo_source_R18_GN.pkl"
    trained = torch.load(tmp_path / "pre" / "model_final.pth")["model"]
    with open(weights, "rb") as f:
        data = pickle.load(f)
    assert set(data["model"]) == {k for k in trained if not k.startswith(CLASS_SPECIFIC)}
    key = "backbone.bottom_up.res5.1.conv2.weight"
    assert np.array_equal(data["model"][key], trained[key].half().numpy())
    demo = build_model(resolve_config("demo", overrides=[*overrides, "MODEL.FCOS.NUM_CLASSES", "6",
                                                         "MODEL.ROI_HEADS.NUM_CLASSES", "6"]))
    load_initial_weights(demo, str(weights))
    assert torch.equal(demo.state_dict()[key], trained[key].half().float())
