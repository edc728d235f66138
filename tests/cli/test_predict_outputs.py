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


@pytest.fixture
def read_only(tmp_path):
    """A folder nobody may write into: mode 0555, or for root (who ignores modes) the immutable flag."""
    folder = tmp_path / "read_only"
    folder.mkdir()
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(folder)]).returncode:
            pytest.skip("running as root without chattr +i: no way to make a read-only folder")
        undo = ["chattr", "-i", str(folder)]
    else:
        folder.chmod(0o555)
        undo = ["chmod", "755", str(folder)]
    yield folder
    subprocess.run(undo, check=True)


def test_eval_into_an_unwritable_folder_is_one_error_line(demo_run, read_only, tmp_path):
    root = tmp_path / "val"
    val_json = generate_dataset(root, 2, seed=1, split="val", image_size=(128, 160), max_objects=2)
    code, out, err = run_in_process("eval", "--weights", demo_run.weights, "--val-json", val_json,
                                    "--val-images", root / "val", "--output-dir", read_only)
    assert_one_line_error(code, out, err, f"cannot write to output folder {read_only}", "--output-dir")
    assert not any(read_only.iterdir())


def test_plot_into_an_unwritable_folder_is_one_error_line(read_only, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text('{"iteration": 0, "total_loss": 1.0}\n')
    code, out, err = run_in_process("plot", tmp_path / "run", "-o", read_only / "c.png")
    assert_one_line_error(code, out, err, f"cannot write to output folder {read_only}", "--output")
    assert not any(read_only.iterdir())
