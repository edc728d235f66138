"""`train-baseline`, `eval`, `predict` and `plot` end to end on a tiny generated dataset (CPU).

Commands run in-process through `politeteacher.cli.main` (what the console script calls), so a bad
input is checked exactly as a user sees it: one line on stderr, exit code 2, no traceback.
"""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from politeteacher.data.synthetic import generate_dataset
from tiny import COCO_TINY, TINY_MODEL, TINY_TRAINING, needs_coco_tiny

from .helpers import assert_usage_error, run_in_process

CONSOLE_SCRIPT = Path(sys.executable).parent / "politeteacher"

TINY = [*TINY_MODEL, *TINY_TRAINING]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_data")
    train = generate_dataset(root, 6, seed=0, split="train", image_size=(128, 160), max_objects=3)
    val = generate_dataset(root, 3, seed=1, split="val", image_size=(128, 160), max_objects=3)
    return SimpleNamespace(root=root, train_json=train, train_images=root / "train", val_json=val,
                           val_images=root / "val")


def data_flags(d, val=True):
    flags = ["--train-json", d.train_json, "--train-images", d.train_images]
    return flags + (["--val-json", d.val_json, "--val-images", d.val_images] if val else [])


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """One baseline run of 4 iterations: checkpoints every 2 (1 kept), evaluation every 2."""
    folder = tmp_path_factory.mktemp("runs") / "baseline"
    code, out, err = run_in_process(
        "train-baseline", "--preset", "demo", *data_flags(data), "--output-dir", folder,
        "--weights", "none", "--device", "cpu", *TINY, "DATASETS.SPLIT.PERCENT", "100.0",
        "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "TEST.EVAL_PERIOD", "2",
        "SOLVER.MAX_CHECKPOINTS_KEPT", "1",
        "MODEL.FCOS.INFERENCE_TH_TEST", "0.0",  # an untrained model scores low; keep its detections
    )
    assert code == 0, out + err
    return SimpleNamespace(dir=folder, out=out, err=err)


def test_train_baseline_writes_a_complete_run(run):
    files = {p.name for p in run.dir.iterdir()}
    assert {"config.yaml", "metrics.json", "log.txt", "last_checkpoint", "model_final.pth",
            "model_best.pth", "eval_results.json", "curves.png"} <= files
    assert any(f.startswith("events.out.tfevents.") for f in files)
    # Checkpoints after iterations 2 and 4; only the newest periodic one is kept.
    assert sorted(f for f in files if f.startswith("model_0")) == ["model_0000003.pth"]
    assert not [f for f in files if f.endswith(".tmp")]
    assert torch.load(run.dir / "model_final.pth")["iteration"] == 3
    records = [json.loads(l) for l in (run.dir / "metrics.json").read_text().splitlines()]
    assert sorted(r["iteration"] for r in records if "total_loss" in r) == [0, 1, 2, 3]
    assert {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr", "loss_mask", "loss_maskiou", "lr"} <= set(records[0])
    # every 2 and at the end, recorded at the last iteration (as the losses and checkpoints number it)
    assert [r["iteration"] for r in records if "segm/AP" in r] == [1, 3]
    cfg = (run.dir / "config.yaml").read_text()
    assert "NUM_CLASSES: 6" in cfg and "circle" in cfg
    # Progress a person can follow, and the final tables.
    assert "iter 3 (4/4, 100%)" in run.out and "loss_mask" in run.out
    assert "segm" in run.out and f"run folder: {run.dir}" in run.out


def test_non_empty_run_folder_is_refused(run, data):
    code, out, err = run_in_process("train-baseline", "--preset", "demo", *data_flags(data), "--output-dir", run.dir,
                             "--weights", "none", *TINY)
    assert_usage_error(code, out, err, "not empty", "--resume", "--force")
    assert_usage_error(*run_in_process("train-baseline", "--preset", "demo", "--output-dir", run.dir,
                                   "--resume", "--force"), "does not fit the model of this config",
                          "without --preset and --config-file")


def test_force_starts_over(data, tmp_path):
    folder = tmp_path / "again"
    folder.mkdir()
    (folder / "metrics.json").write_text('{"iteration": 99, "total_loss": 1.0}\n')
    (folder / "model_0000099.pth").write_text("old")
    (folder / "notes.txt").write_text("mine")
    code, out, err = run_in_process("train-baseline", "--preset", "demo", *data_flags(data, val=False),
                             "--output-dir", folder, "--weights", "none", "--force", *TINY,
                             "DATASETS.SPLIT.PERCENT", "100.0", "SOLVER.MAX_ITER", "1")
    assert code == 0, out + err
    assert not (folder / "model_0000099.pth").exists() and (folder / "notes.txt").read_text() == "mine"
    iters = [json.loads(l)["iteration"] for l in (folder / "metrics.json").read_text().splitlines()]
    assert iters == [0]


def _table(out):
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("bbox", "segm"):
            rows[parts[0]] = parts[1:]
    return rows


def test_eval_prints_both_tables_matching_its_json(run, tmp_path):
    out_dir = tmp_path / "eval"
    code, out, err = run_in_process("eval", "--weights", run.dir / "model_final.pth", "--output-dir", out_dir,
                             "--per-category")
    assert code == 0, out + err
    saved = json.loads((out_dir / "eval_results.json").read_text())
    assert saved["model"] == "teacher" and saved["weights"] == str(run.dir / "model_final.pth")
    res = saved["results"]["custom_val"]
    rows = _table(out)
    for task in ("bbox", "segm"):
        expected = ["-" if res[task][k] is None else f"{res[task][k]:.3f}"
                    for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")]
        assert rows[task] == expected
    assert "circle" in out  # per-category rows
    raw = json.loads((out_dir / "custom_val" / "coco_instances_results.json").read_text())
    assert isinstance(raw, list)
    for plot in ("ap_per_class.png", "pr_curves.png"):  # from COCOeval's precision array
        assert (out_dir / "custom_val" / plot).read_bytes()[:4] == b"\x89PNG"
    assert "Average Precision" not in out and "Average Precision" in (out_dir / "log.txt").read_text()


def test_eval_and_load_two_model_checkpoint(run, tmp_path):
    from politeteacher.config import resolve_config
    from politeteacher.evaluation.evaluate import eval_datasets
    from politeteacher.modeling.build import build_inference_model

    plain = torch.load(run.dir / "model_final.pth")["model"]
    student = {k: v + 1.0 if v.is_floating_point() else v for k, v in plain.items()}
    both = {"model": {**{f"modelTeacher.{k}": v for k, v in plain.items()},
                      **{f"modelStudent.{k}": v for k, v in student.items()}}}
    ckpt = tmp_path / "ssl" / "model_final.pth"
    ckpt.parent.mkdir()
    torch.save(both, ckpt)
    cfg = eval_datasets(resolve_config(None, str(run.dir / "config.yaml"), ["MODEL.DEVICE", "cpu"]))
    for which, expected in (("teacher", plain), ("student", student)):
        loaded = build_inference_model(cfg, str(ckpt), which).state_dict()
        assert all(torch.equal(loaded[k], expected[k]) for k in expected), which
    code, out, err = run_in_process("eval", "--weights", ckpt, "--model", "student", "--config-file",
                             run.dir / "config.yaml", "--output-dir", tmp_path / "eval_student")
    assert code == 0, out + err
    assert "(student)" in out and set(_table(out)) == {"bbox", "segm"}
    assert json.loads((tmp_path / "eval_student" / "eval_results.json").read_text())["model"] == "student"


def test_predict_on_image_folder_and_a_bad_file(run, data, tmp_path):
    from pycocotools.coco import COCO

    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    out_dir = tmp_path / "pred"
    one = data.val_images / "000001.jpg"
    code, out, err = run_in_process("predict", one, data.train_images, bad, "--weights", run.dir / "model_final.pth",
                             "--output-dir", out_dir, "--threshold", "0", "MODEL.FCOS.INFERENCE_TH_TEST", "0.0",
                             "MODEL.FCOS.POST_NMS_TOPK_TEST", "3")
    assert code == 0, out + err
    assert f"skipped {bad}" in err and "not a readable image" in err
    overlays = sorted(p.name for p in out_dir.glob("*.png"))
    assert overlays == ["000001.png", "000001_2.png"] + [f"{i:06d}.png" for i in range(2, 7)]
    results = json.loads((out_dir / "predictions.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score", "mask_score", "segmentation"} <= set(results[0])
    assert {r["category_id"] for r in results} <= set(range(1, 7))  # the dataset's ids, not 0-based
    coco = COCO(str(out_dir / "images.json"))
    dt = coco.loadRes(str(out_dir / "predictions.json"))
    assert len(dt.getImgIds()) == 7 and len(dt.getAnnIds()) == len(results)
    assert not list(out_dir.glob("*.tmp"))


def test_predict_without_weights_uses_newest_run(run, data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_in_process("predict", data.val_images / "000002.jpg")
    assert_usage_error(code, out, err, "no --weights given", "runs")
    newest = tmp_path / "runs" / "baseline" / "mine"
    newest.mkdir(parents=True)
    for name in ("model_final.pth", "config.yaml"):
        os.symlink(run.dir / name, newest / name)
    code, out, err = run_in_process("predict", data.val_images / "000002.jpg", "--output-dir", "pred")
    assert code == 0, out + err
    assert str(newest / "model_final.pth") in out
    assert (tmp_path / "pred" / "000002.png").is_file()


def test_plot_command(run, tmp_path):
    code, out, err = run_in_process("plot", run.dir, "--output-dir", tmp_path / "c.png")
    assert code == 0, out + err
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    assert_usage_error(*run_in_process("plot", tmp_path), "no metrics.json")


def test_bad_inputs_end_in_one_line(run, data, tmp_path):
    missing = tmp_path / "missing.pth"
    assert_usage_error(*run_in_process("eval", "--weights", missing), "not found")
    wrong = tmp_path / "wrong.pth"
    torch.save(nn.Linear(2, 2).state_dict(), wrong)
    assert_usage_error(*run_in_process("eval", "--weights", wrong, "--config-file", run.dir / "config.yaml",
                                   "--output-dir", tmp_path / "e"), "does not fit")
    assert_usage_error(*run_in_process("predict", data.val_images / "000001.jpg", "--weights", wrong,
                                   "--config-file", run.dir / "config.yaml", "--output-dir", tmp_path / "p"),
                          "does not fit")
    assert_usage_error(*run_in_process("train-baseline", "--preset", "demo", "--train-json", tmp_path / "nope.json",
                                   "--train-images", data.train_images, "--output-dir", tmp_path / "r1"),
                          "nope.json", "not found")
    assert_usage_error(*run_in_process("train-baseline", "--preset", "demo", *data_flags(data), "--amp",
                                   "--device", "cpu", "--output-dir", tmp_path / "r2", "--weights", "none"),
                          "needs a GPU")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert_usage_error(*run_in_process("predict", bad, "--weights", run.dir / "model_final.pth",
                                   "--output-dir", tmp_path / "p2"), "no image could be read")


def test_console_script_error_has_no_traceback(tmp_path):
    proc = subprocess.run([str(CONSOLE_SCRIPT), "eval", "--weights", str(tmp_path / "none.pth")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.coco
@pytest.mark.slow
@needs_coco_tiny
def test_coco_tiny_train_eval_predict(tmp_path, monkeypatch):
    """The built-in COCO names resolved under DETECTRON2_DATASETS: train from scratch, eval, predict."""
    monkeypatch.setenv("DETECTRON2_DATASETS", str(COCO_TINY))
    folder = tmp_path / "coco_run"
    code, out, err = run_in_process(
        "train-baseline", "--preset", "demo", "--percent", "10", "--split-seed", "1", "--output-dir", folder,
        "--weights", "none", "--device", "cpu", *TINY,
        "DATASETS.TRAIN", "('coco_2017_train',)", "DATASETS.TEST", "()",  # evaluated once, below
        "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "100",
    )
    assert code == 0, out + err
    assert "NUM_CLASSES: 80" in (folder / "config.yaml").read_text()
    assert "8 labelled images" in (folder / "log.txt").read_text()  # 10 % of the 80 annotated images
    code, out, err = run_in_process("eval", "--weights", folder / "model_final.pth", "--output-dir", tmp_path / "eval",
                                    "DATASETS.TEST", "('coco_2017_val',)")
    assert code == 0, out + err
    assert set(_table(out)) == {"bbox", "segm"} and "coco_2017_val" in out
    images = sorted((COCO_TINY / "coco" / "val2017").glob("*.jpg"))[:2]
    code, out, err = run_in_process("predict", *images, "--weights", folder / "model_final.pth",
                             "--output-dir", tmp_path / "pred", "--threshold", "0")
    assert code == 0, out + err
    assert len(list((tmp_path / "pred").glob("*.png"))) == 2
