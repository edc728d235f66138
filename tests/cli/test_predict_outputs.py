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
from .helpers import assert_usage_error, run_in_process
from tiny import TINY_MODEL

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


def test_predict_refuses_an_output_folder_holding_its_inputs(demo_run, tmp_path):
    photos = make_photos(tmp_path / "photos", ["a.png", "b.png"])
    before = snapshot(photos)
    for inputs in ([photos], [photos / "b.png"], [str(photos / "*.png")]):
        code, out, err = run_in_process(*predict_args(demo_run, *inputs, "-o", photos))
        assert_usage_error(code, out, err, str(photos), "holds", "b.png", "--output")
    assert snapshot(photos) == before


def test_overlays_never_overwrite_a_users_file(demo_run, tmp_path):
    photos = make_photos(tmp_path / "photos", ["a.png", "b.png"])
    out_dir = make_photos(tmp_path / "out", ["b.png"], seed=1)  # the user's own b.png, not an input
    (out_dir / "notes.txt").write_text("mine")
    before = snapshot(out_dir)
    code, out, err = run_in_process(*predict_args(demo_run, photos, "-o", out_dir))
    assert code == 0, out + err
    after = snapshot(out_dir)
    assert {k: after[k] for k in before} == before
    assert set(after) - set(before) == {"a.png", "b_2.png", "predictions.json", "images.json", "predictions.jsonl"}
    images = json.loads((out_dir / "images.json").read_text())["images"]
    assert [Path(i["file_name"]).name for i in images] == ["a.png", "b.png"]


def test_a_second_predict_goes_to_the_next_numbered_folder(demo_run, tmp_path, monkeypatch):
    photos = make_photos(tmp_path / "photos", ["a.png", "b.png"])
    monkeypatch.chdir(tmp_path)
    code, out, err = run_in_process(*predict_args(demo_run, photos))
    assert code == 0, out + err
    first = tmp_path / "runs" / "predict"
    assert f"results: {first} (" in out
    before = snapshot(first)
    assert set(before) == {"a.png", "b.png", "predictions.json", "images.json", "predictions.jsonl"}
    code, out, err = run_in_process(*predict_args(demo_run, photos / "a.png"))
    assert code == 0, out + err
    assert f"results: {tmp_path / 'runs' / 'predict2'} (" in out
    assert snapshot(first) == before
    assert set(snapshot(tmp_path / "runs" / "predict2")) == {"a.png", "predictions.json", "images.json",
                                                           "predictions.jsonl"}
    # A folder given with -o is numbered the same way; one without results is used as it is.
    (tmp_path / "mine").mkdir()
    for expected in ("mine", "mine2", "mine3"):
        code, out, err = run_in_process(*predict_args(demo_run, photos / "b.png", "-o", "mine"))
        assert code == 0, out + err
        assert f"results: {tmp_path / expected} (" in out
        assert (tmp_path / expected / "b.png").is_file()
    images = json.loads((tmp_path / "runs" / "predict" / "images.json").read_text())["images"]
    assert len(images) == 2  # the first run's results, not replaced


KILL_AFTER = """
import os, signal, sys
from politeteacher.inference import outputs as O

done, add = 0, O.ResultWriter.add
def add_then_die(self, *args, **kwargs):  # SIGKILL (no clean-up possible) as image {n} + 1 is written
    global done
    if done == {n}:
        os.kill(os.getpid(), signal.SIGKILL)
    done += 1
    return add(self, *args, **kwargs)
O.ResultWriter.add = add_then_die
from politeteacher.cli import main
sys.argv = ["politeteacher", *sys.argv[1:]]
main()
"""


def test_a_killed_predict_keeps_the_images_it_finished(demo_run, tmp_path):
    photos = make_photos(tmp_path / "photos", [f"{i:02d}.png" for i in range(6)])
    out_dir = tmp_path / "pred"
    args = [str(a) for a in predict_args(demo_run, photos, "-o", out_dir, "--batch-size", "1")]
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER.replace("{n}", "3"), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stdout + proc.stderr
    assert not (out_dir / "predictions.json").exists()
    lines = (out_dir / "predictions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [Path(r["image"]["file_name"]).name for r in records] == ["00.png", "01.png", "02.png"]
    assert sorted(p.name for p in out_dir.glob("*.png")) == ["00.png", "01.png", "02.png"]
    assert [r["overlay"] for r in records] == ["00.png", "01.png", "02.png"]
    # The records are what a complete run writes for those images.
    code, out, err = run_in_process(*predict_args(demo_run, photos, "-o", tmp_path / "full", "--batch-size", "1"))
    assert code == 0, out + err
    full = json.loads((tmp_path / "full" / "predictions.json").read_text())
    images = json.loads((tmp_path / "full" / "images.json").read_text())["images"]
    for r in records:
        assert r["image"] == images[r["image"]["id"] - 1]
        assert r["predictions"] == [p for p in full if p["image_id"] == r["image"]["id"]]
        assert len(r["predictions"]) == 3
    assert [json.loads(l) for l in (tmp_path / "full" / "predictions.jsonl").read_text().splitlines()][:3] == records


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


def test_predict_into_an_unwritable_folder_is_one_error_line(demo_run, read_only, tmp_path):
    photos = make_photos(tmp_path / "photos", ["a.png"])
    for out_dir in (read_only, read_only / "sub"):
        code, out, err = run_in_process(*predict_args(demo_run, photos, "-o", out_dir))
        assert_usage_error(code, out, err, f"cannot write to output folder {out_dir}", "--output")
    assert not any(read_only.iterdir())


def test_eval_into_an_unwritable_folder_is_one_error_line(demo_run, read_only, tmp_path):
    root = tmp_path / "val"
    val_json = generate_dataset(root, 2, seed=1, split="val", image_size=(128, 160), max_objects=2)
    code, out, err = run_in_process("eval", "--weights", demo_run.weights, "--val-json", val_json,
                                    "--val-images", root / "val", "--output-dir", read_only)
    assert_usage_error(code, out, err, f"cannot write to output folder {read_only}", "--output-dir")
    assert not any(read_only.iterdir())


def test_plot_into_an_unwritable_folder_is_one_error_line(read_only, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text('{"iteration": 0, "total_loss": 1.0}\n')
    code, out, err = run_in_process("plot", tmp_path / "run", "-o", read_only / "c.png")
    assert_usage_error(code, out, err, f"cannot write to output folder {read_only}", "--output")
    assert not any(read_only.iterdir())
