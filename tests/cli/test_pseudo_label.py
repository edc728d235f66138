"""`politeteacher pseudo-label`: exactly the trainer's pseudo-labels on the same weights and images, its
files, the sweep on annotated images, and the pictures a training run saves every VIS_PERIOD."""
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from politeteacher.config import resolve_config, save_config
from politeteacher.data.datasets import register_all
from politeteacher.data.synthetic import generate_dataset
from politeteacher.engine import polite_teacher
from politeteacher.engine.run import prepare_training_cfg
from politeteacher.engine.launch import setup_worker
from politeteacher.engine.polite_teacher import PoliteTeacherTrainer
from politeteacher.predict import class_metadata

from tiny import TINY_MODEL, TINY_TRAINING
from .helpers import assert_one_line_error, run_in_process

# Every detection of the untrained teacher (scores ~0.01) is a pseudo-label; the training weak view
# is made deterministic (one size, no flip) so that the command's view is the same image.
SSL = ["DATASETS.SPLIT.PERCENT", "50.0", "SOLVER.IMS_PER_BATCH_UNLABELED", "2", "SOLVER.MAX_ITER", "1",
       "SEMISUPERVISED.BOX_THRESHOLD", "-1.0", "MODEL.FCOS.INFERENCE_TH_TRAIN", "0.0",
       "MODEL.FCOS.POST_NMS_TOPK_TRAIN", "10", "SEMISUPERVISED.MASK_IOU_THRESHOLD", "-10.0",
       "INPUT.RANDOM_FLIP", "none", "VIS_PERIOD", "1"]


@pytest.fixture(scope="module")
def ssl_run(tmp_path_factory):
    """One Polite Teacher step on the tiny data: the run folder, and the trainer's own pseudo-labels
    of that step {image file: Instances}."""
    root = tmp_path_factory.mktemp("pl_data")
    train = generate_dataset(root, 6, seed=0, split="train", image_size=(128, 160), max_objects=3)
    data = SimpleNamespace(root=root, train_json=train, train_images=root / "train")
    run = root / "run"
    cfg = prepare_training_cfg(resolve_config("demo", None, [
        *TINY_MODEL, *TINY_TRAINING, "MODEL.DEVICE", "cpu", "DATASETS.CUSTOM.TRAIN_JSON", str(train),
        "DATASETS.CUSTOM.TRAIN_IMAGES", str(root / "train"), "OUTPUT_DIR", str(run), *SSL]))
    register_all(cfg)
    run.mkdir()
    save_config(cfg, run)  # as train-ssl does: the command reads the run's thresholds
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_worker(cfg)
    trainer = PoliteTeacherTrainer(cfg)
    trainer.resume_or_load(resume=False)
    seen = {}
    make = polite_teacher.teacher_pseudo_labels

    def spy(teacher, weak, *args):
        labels = make(teacher, weak, *args)
        seen.update({w["file_name"]: p.to("cpu") for w, p in zip(weak, labels)})
        return labels

    polite_teacher.teacher_pseudo_labels = spy
    try:
        trainer.train(0, 1)
    finally:
        polite_teacher.teacher_pseudo_labels = make
    assert (run / "model_final.pth").is_file() and len(seen) == 2
    return SimpleNamespace(run=run, cfg=cfg, labels=seen, trainer=trainer, data=data)


def test_pseudo_label_gives_exactly_the_trainers_pseudo_labels(ssl_run, tmp_path):
    files = list(ssl_run.labels)  # the step's batch, in its order
    out = tmp_path / "out"
    result = run_in_process("pseudo-label", *files, "--weights", ssl_run.run / "model_final.pth",
                            "--output-dir", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    coco = json.loads((out / "pseudo_labels.json").read_text())
    # the run's thresholds, from its config.yaml
    assert coco["info"]["box_threshold"] == -1.0 and coco["info"]["mask_iou_threshold"] == -10.0
    _, to_dataset_id = class_metadata(ssl_run.cfg)
    by_file = {im["file_name"]: im["id"] for im in coco["images"]}
    assert set(by_file) == set(files)
    for f, label in ssl_run.labels.items():
        anns = [a for a in coco["annotations"] if a["image_id"] == by_file[f]]
        assert len(anns) == len(label) == 10
        for a, box, c, s, iou, valid, mask in zip(anns, label.gt_boxes.tensor.tolist(), label.gt_classes.tolist(),
                                                  label.scores.tolist(), label.maskiou.tolist(),
                                                  label.gt_mask_valid.tolist(), label.gt_masks.tensor):
            x0, y0, x1, y1 = box
            assert a["bbox"] == [x0, y0, x1 - x0, y1 - y0]  # the view is the image itself here: exact
            assert a["category_id"] == to_dataset_id[c]
            assert a["score"] == s and a["mask_iou"] == iou and a["mask_valid"] == valid
            assert np.array_equal(mask_util.decode(a["segmentation"]).astype(bool), mask.numpy())
    assert sorted(p.name for p in out.glob("*.png")) == sorted([Path(f).stem + ".png" for f in files]
                                                               + ["histograms.png"])
    assert "20 pseudo-label(s) with score > -1" in result.stdout


def test_thresholds_override_the_runs_and_rejected_detections_are_counted(ssl_run, tmp_path):
    files = list(ssl_run.labels)
    scores = torch.cat([p.scores for p in ssl_run.labels.values()])
    maskiou = torch.cat([p.maskiou for p in ssl_run.labels.values()])
    b, m = float(scores.median()), float(maskiou.median())
    out = tmp_path / "out"
    result = run_in_process("pseudo-label", *files, "--weights", ssl_run.run / "model_final.pth", "--output-dir",
                            out, "--device", "cpu", "--box-threshold", b, "--mask-iou-threshold", m)
    assert result.returncode == 0, result.stderr
    anns = json.loads((out / "pseudo_labels.json").read_text())["annotations"]
    kept = scores > b
    assert len(anns) == int(kept.sum())
    assert sum(a["mask_valid"] for a in anns) == int((kept & (maskiou > m)).sum())
    assert f"{int((~kept).sum())} detection(s) rejected" in result.stdout
    # a second run into the same folder keeps the first one's files
    again = run_in_process("pseudo-label", *files, "--weights", ssl_run.run / "model_final.pth", "--output-dir",
                           out, "--device", "cpu")
    assert again.returncode == 0 and (tmp_path / "out2" / "pseudo_labels.json").is_file()
    assert len(json.loads((out / "pseudo_labels.json").read_text())["annotations"]) == len(anns)


def test_sweep_on_annotated_images(ssl_run, tmp_path):
    data = ssl_run.data
    out = tmp_path / "sweep"
    result = run_in_process("pseudo-label", "--sweep", "--json", data.train_json, "--images", data.train_images,
                            "--weights", ssl_run.run / "model_final.pth", "--output-dir", out, "--device", "cpu",
                            "--box-thresholds", "0.0,0.5", "--mask-iou-thresholds", "0,0.5,0.9")
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "sweep.json").read_text())
    assert record["images"] == 6 and len(record["rows"]) == 6
    assert (out / "sweep.png").stat().st_size > 0
    low = [r for r in record["rows"] if r["box_threshold"] == 0.0]
    assert all(r["boxes_per_image"] == 10 for r in low)  # every detection scores above 0
    high = [r for r in record["rows"] if r["box_threshold"] == 0.5]
    # the untrained teacher scores ~0.01: nothing passes 0.5, and precision is undefined, not 0
    assert all(r["boxes_per_image"] == 0 and r["box_precision"] is None and r["box_recall"] == 0 for r in high)
    assert "box_th" in result.stdout and len(result.stdout.splitlines()) >= 8  # header, 6 rows, ...
    assert ("rule:" in result.stdout) == (record["suggested"] is not None) != ("no suggestion" in result.stdout)


def test_sweep_and_input_mistakes_are_one_line(ssl_run, tmp_path):
    w = ssl_run.run / "model_final.pth"
    assert_one_line_error(run_in_process("pseudo-label", "--sweep", "--weights", w), "--dataset")
    assert_one_line_error(run_in_process("pseudo-label", "--sweep", "--dataset", "demo_val", "--box-thresholds",
                                         "a,b", "--weights", w), "--box-thresholds")
    assert_one_line_error(run_in_process("pseudo-label", "--weights", w), "no images")
    assert_one_line_error(run_in_process("pseudo-label", "--dataset", "demo_val", "--weights", w), "--sweep")


def test_training_saves_pseudo_label_pictures_every_vis_period(ssl_run):
    assert sorted(p.name for p in (ssl_run.run / "pseudo").iterdir()) == ["iter_0000000_0.png", "iter_0000000_1.png"]
    events = list(ssl_run.run.glob("events.out.tfevents.*"))
    assert events and any(b"pseudo_labels/0" in e.read_bytes() for e in events)


def test_sweep_takes_a_dataset_file(ssl_run, tmp_path):
    """--data: the file's val set, else its train set (here: the 6 training images)."""
    data_file = tmp_path / "d.yaml"
    data_file.write_text(f"train_json: {ssl_run.data.train_json}\ntrain_images: {ssl_run.data.train_images}\n")
    out = tmp_path / "sweep"  # a trailing OUTPUT_DIR means --output-dir
    result = run_in_process("pseudo-label", "--sweep", "--data", data_file, "--weights", ssl_run.run / "model_final.pth",
                            "--device", "cpu", "--box-thresholds", "0.0", "--mask-iou-thresholds", "0",
                            "SEED", "3", "OUTPUT_DIR", out)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "sweep.json").read_text())["images"] == 6
    assert_one_line_error(run_in_process("pseudo-label", "--sweep", "--data", data_file, "--dataset", "demo_val",
                                         "--weights", ssl_run.run / "model_final.pth"), "--data says which images")
