"""The CenterMask-Lite V-19-slim-eSE presets end to end on real COCO images (../shared/data/coco_tiny):
the supervised baseline trains, its checkpoint evaluates and predicts, and Polite Teacher starts from it."""
import json

import pytest

from tiny import COCO_TINY, needs_coco_tiny

from .helpers import run_in_process
from .test_train_eval_predict import _table

# A few iterations on small images, 2 + 2 images per step, from random weights (no download).
SHORT = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "160", "INPUT.MIN_SIZE_TEST", "128",
    "INPUT.MAX_SIZE_TEST", "160", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.IMS_PER_BATCH_UNLABELED", "2",
    "SOLVER.WARMUP_ITERS", "2", "SOLVER.LOG_PERIOD", "1", "SOLVER.CHECKPOINT_PERIOD", "100",
    "DATALOADER.NUM_WORKERS", "0", "DATASETS.TEST", "()",
]


@pytest.mark.coco
@pytest.mark.slow
@needs_coco_tiny
def test_lite_presets_train_evaluate_and_predict_on_coco_tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTRON2_DATASETS", str(COCO_TINY))
    baseline = tmp_path / "baseline"
    code, out, err = run_in_process(
        "train-baseline", "--preset", "baseline_lite_V19_slim_eSE_sup10", "--output-dir", baseline,
        "--weights", "none", "--device", "cpu", *SHORT, "SOLVER.MAX_ITER", "3",
    )
    assert code == 0, out + err
    config = (baseline / "config.yaml").read_text()
    assert "CONV_BODY: V-19-slim-eSE" in config and "NUM_CLASSES: 80" in config
    losses = [json.loads(line) for line in (baseline / "metrics.json").read_text().splitlines()]
    assert sorted({r["iteration"] for r in losses if "total_loss" in r}) == [0, 1, 2]
    assert "8 labelled images" in (baseline / "log.txt").read_text()  # 10 % of the 80 annotated images

    code, out, err = run_in_process("eval", "--weights", baseline / "model_final.pth", "--output-dir",
                                    tmp_path / "eval", "DATASETS.TEST", "('coco_2017_val',)")
    assert code == 0, out + err
    assert set(_table(out)) == {"bbox", "segm"} and "coco_2017_val" in out

    images = sorted((COCO_TINY / "coco" / "val2017").glob("*.jpg"))[:2]
    code, out, err = run_in_process("predict", *images, "--weights", baseline / "model_final.pth",
                                    "--output-dir", tmp_path / "pred", "--threshold", "0")
    assert code == 0, out + err
    assert len(list((tmp_path / "pred").glob("*.png"))) == 2

    ssl = tmp_path / "pt"
    code, out, err = run_in_process(
        "train-ssl", "--preset", "polite_teacher_lite_V19_slim_eSE_sup10", "--output-dir", ssl,
        "--weights", baseline / "model_final.pth", "--device", "cpu", *SHORT, "SOLVER.MAX_ITER", "2",
    )
    assert code == 0, out + err
    assert "Labelled images: 8, unlabelled images: 72" in (ssl / "log.txt").read_text()
