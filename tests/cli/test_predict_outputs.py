"""`predict`, `eval` and `plot` never lose what the user has (issue #11 B): inputs and earlier results
are never overwritten, results stream to disk as they are made, no dataset is made just to name
classes, and an unwritable output folder is one error line.

The model is a demo-run-like checkpoint (the demo preset's classes in its config.yaml, tiny random
weights), so no training is needed.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from politeteacher.data.synthetic import CATEGORIES as DEMO_CATEGORIES
from politeteacher.data.synthetic import generate_dataset
from .test_train_eval_predict import assert_one_line_error, run_in_process
from tiny_model import TINY_MODEL

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A run folder as the demo's training leaves it (config.yaml naming demo_train/demo_val and the
    6 demo classes) with a tiny random checkpoint that keeps 3 detections per image."""
    import politeteacher.modeling  # noqa: F401
    from detectron2.modeling import build_model

    from politeteacher.config import resolve_config, save_config

    folder = tmp_path_factory.mktemp("demo_run")
    names = [c["name"] for c in DEMO_CATEGORIES]
    cfg = resolve_config("demo", None, [
        *TINY_MODEL, "MODEL.DEVICE", "cpu", "MODEL.FCOS.NUM_CLASSES", "6", "MODEL.ROI_HEADS.NUM_CLASSES", "6",
        "DATASETS.CLASS_NAMES", repr(names), "OUTPUT_DIR", str(folder),
        "MODEL.FCOS.INFERENCE_TH_TEST", "0.0", "MODEL.FCOS.POST_NMS_TOPK_TEST", "3",
    ])
    assert cfg.DATASETS.TRAIN == ("demo_train",)
    torch.manual_seed(0)
    torch.save({"model": build_model(cfg).state_dict()}, folder / "model_final.pth")
    save_config(cfg, folder)
    return SimpleNamespace(dir=folder, weights=folder / "model_final.pth", names=names)


def make_photos(folder, names, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)).save(folder / name)
    return folder


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def predict_args(run, *args):
    return ["predict", *args, "--weights", run.weights, "--threshold", "0"]


def test_predict_with_a_demo_run_makes_no_dataset(demo_run, tmp_path, monkeypatch):
    from pycocotools.coco import COCO

    datasets = tmp_path / "datasets"
    monkeypatch.setenv("DETECTRON2_DATASETS", str(datasets))
    photos = make_photos(tmp_path / "photos", ["a.png"])
    code, out, err = run_in_process(*predict_args(demo_run, photos, "-o", tmp_path / "pred"))
    assert code == 0, out + err
    assert not datasets.exists()
    header = json.loads((tmp_path / "pred" / "images.json").read_text())
    assert header["categories"] == [{"id": c["id"], "name": c["name"]} for c in DEMO_CATEGORIES]
    dt = COCO(str(tmp_path / "pred" / "images.json")).loadRes(str(tmp_path / "pred" / "predictions.json"))
    assert {a["category_id"] for a in dt.anns.values()} <= {1, 2, 3, 4, 5, 6} and len(dt.anns) == 3
