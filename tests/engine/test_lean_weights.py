"""Lean best/final checkpoints and `politeteacher strip` (issue #13): inference files hold the weights,
the run's config and classes; the periodic files keep the trainer state that --resume needs."""
import json
import shutil

import pytest
import torch
from torch import nn

from politeteacher.config import resolve_config
from politeteacher.engine import checkpoint as ck
from politeteacher.engine.run import run_train_baseline
from politeteacher.data.synthetic import CATEGORIES

from cli.helpers import assert_one_line_error, run_in_process
from tiny import TINY_MODEL

LEAN = {"model", "iteration", "config", "classes", "category_ids"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data):
    run = tmp_path_factory.mktemp("lean") / "run"
    d = tiny_data
    # No score pre-threshold: the untrained model detects, so AP is a number and model_best.pth is written.
    run_train_baseline(resolve_config("demo", None, [
        *TINY_MODEL, "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "DATASETS.SPLIT.PERCENT", "100.0",
        "SOLVER.WARMUP_ITERS", "2", "DATASETS.CUSTOM.TRAIN_JSON", str(d.train_json),
        "DATASETS.CUSTOM.TRAIN_IMAGES", str(d.train_images), "DATASETS.CUSTOM.VAL_JSON", str(d.val_json),
        "DATASETS.CUSTOM.VAL_IMAGES", str(d.val_images), "OUTPUT_DIR", str(run),
        "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "5", "TEST.EVAL_PERIOD", "2",
        "MODEL.FCOS.INFERENCE_TH_TEST", "0.0"]))
    return run


def test_best_and_final_hold_weights_config_and_classes_only(trained, tiny_data):
    full = torch.load(trained / "model_0000001.pth")  # the last iteration, though no multiple of the period
    assert (trained / "last_checkpoint").read_text() == "model_0000001.pth" and "trainer" in full
    names = [c["name"] for c in json.loads(tiny_data.train_json.read_text())["categories"]]
    for name in ("model_best.pth", "model_final.pth"):
        lean = torch.load(trained / name)
        assert set(lean) == LEAN, name
        assert lean["iteration"] == 1  # the last; best: the evaluation after training, recorded at it        assert lean["classes"] == names
        assert lean["category_ids"] == [c["id"] for c in CATEGORIES]
        assert "CLASS_NAMES" in lean["config"] and str(tiny_data.train_json) in lean["config"]
        assert set(lean["model"]) == set(full["model"])
        assert all(torch.equal(lean["model"][k], v) for k, v in full["model"].items())
        # AdamW keeps two moments per weight: the lean file is about a third of the full one.
        assert (trained / name).stat().st_size <= 0.4 * (trained / "model_0000001.pth").stat().st_size


def _predict(weights, images, out, *args):
    res = run_in_process("predict", images, "--weights", weights, "--threshold", "0", "-o", out, *args)
    assert res.returncode == 0, res.stderr
    return json.loads((out / "predictions.json").read_text())


def test_strip_gives_identical_predictions_also_away_from_its_run(trained, tiny_data, tmp_path):
    res = run_in_process("strip", trained / "model_0000001.pth", "-o", tmp_path / "elsewhere" / "w.pth")
    assert res.returncode == 0, res.stderr
    stripped = tmp_path / "elsewhere" / "w.pth"
    assert str(stripped) in res.stdout and "%" in res.stdout
    assert set(torch.load(stripped)) == {"model", "iteration", "config"}  # the config from the run folder
    assert stripped.stat().st_size <= 0.4 * (trained / "model_0000001.pth").stat().st_size
    # Away from config.yaml, the config the file carries is used.
    a = _predict(trained / "model_0000001.pth", tiny_data.val_images, tmp_path / "a")
    b = _predict(stripped, tiny_data.val_images, tmp_path / "b")
    assert a and a == b


def test_strip_of_a_two_model_checkpoint_keeps_the_choice(tmp_path):
    teacher, student = nn.Linear(3, 2), nn.Linear(3, 2)
    src = tmp_path / "model_0000009.pth"
    model = {**{f"modelTeacher.{k}": v for k, v in teacher.state_dict().items()},
             **{f"modelStudent.{k}": v for k, v in student.state_dict().items()}}
    torch.save({"model": model, "trainer": {"optimizer": {"state": {0: torch.zeros(1000)}}}, "iteration": 9}, src)

    both = torch.load(ck.strip_checkpoint(src))
    assert set(both) == {"model", "iteration"} and both["iteration"] == 9
    assert set(both["model"]) == set(model)
    assert (tmp_path / "model_0000009_weights.pth").is_file()
    only = torch.load(ck.strip_checkpoint(src, tmp_path / "t.pth", which="student"))
    assert set(only["model"]) == {"weight", "bias"} and torch.equal(only["model"]["weight"], student.weight)


def test_strip_never_overwrites(tmp_path):
    src = tmp_path / "m.pth"
    torch.save({"model": nn.Linear(3, 2).state_dict()}, src)
    (tmp_path / "taken.pth").write_bytes(b"users")
    res = run_in_process("strip", src, "-o", tmp_path / "taken.pth")
    assert_one_line_error(res, "taken.pth exists", "-o")
    assert (tmp_path / "taken.pth").read_bytes() == b"users"
    assert_one_line_error(run_in_process("strip", tmp_path / "nothing.pth"), "nothing.pth not found")
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    assert_one_line_error(run_in_process("strip", tmp_path / "junk.pth"), "could not be read")


def test_checkpoints_of_old_torch_versions_load_too(tmp_path):
    # torch < 1.6 wrote no zip file (CenterMask2's checkpoints may be such): no memory map, still read.
    src = tmp_path / "old.pth"
    layer = nn.Linear(3, 2)
    torch.save({"model": layer.state_dict(), "iteration": 3}, src, _use_new_zipfile_serialization=False)
    assert torch.equal(ck.load_cpu(src)["model"]["weight"], layer.weight)
    stripped = torch.load(ck.strip_checkpoint(src))
    assert stripped["iteration"] == 3 and torch.equal(stripped["model"]["weight"], layer.weight)
