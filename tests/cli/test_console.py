"""What a tiny training shows on the console (without --verbose: the tool's own lines only), and a
`train-ssl --sweep` grid ending in the comparison of its runs."""
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from politeteacher.data.synthetic import generate_dataset
from tiny import TINY_MODEL, TINY_TRAINING

from .helpers import run_in_process

TINY = [*TINY_MODEL, *TINY_TRAINING, "MODEL.FCOS.INFERENCE_TH_TEST", "0.0"]
SSL = ["DATASETS.SPLIT.PERCENT", "50.0", "SOLVER.IMS_PER_BATCH_UNLABELED", "2", "SEMISUPERVISED.BURN_IN_ITERS", "1",
       "SEMISUPERVISED.BOX_THRESHOLD", "-1.0", "MODEL.FCOS.INFERENCE_TH_TRAIN", "0.0",
       "MODEL.FCOS.POST_NMS_TOPK_TRAIN", "10", "SEMISUPERVISED.MASK_IOU_THRESHOLD", "-10.0"]
# A console line of a library's logger: "[11/29 12:36:33 detectron2.engine.hooks]: ..."
LIBRARY_LINE = re.compile(r"^\[[^\]]* (detectron2|fvcore|pycocotools)[.\]]")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("console_data")
    train = generate_dataset(root, 6, seed=0, split="train", image_size=(128, 160), max_objects=3)
    val = generate_dataset(root, 3, seed=1, split="val", image_size=(128, 160), max_objects=3)
    return SimpleNamespace(train_json=train, train_images=root / "train", val_json=val, val_images=root / "val")


def _data(tiny_data):
    return ["--preset", "demo", "--train-json", tiny_data.train_json, "--train-images", tiny_data.train_images,
            "--val-json", tiny_data.val_json, "--val-images", tiny_data.val_images, "--weights", "none",
            "--device", "cpu"]


@pytest.mark.parametrize("command, extra", [
    ("train-baseline", ["DATASETS.SPLIT.PERCENT", "100.0"]),
    ("train-ssl", SSL),
])
def test_tiny_training_console_is_short_and_the_libraries_go_to_log_txt(tiny_data, tmp_path, command, extra):
    out_dir = tmp_path / "run"
    result = run_in_process(command, *_data(tiny_data), "--output-dir", out_dir, *TINY, *extra,
                            "SOLVER.MAX_ITER", "4", "TEST.EVAL_PERIOD", "2", "SOLVER.STEPS", "(1000,)")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) <= 40, "\n".join(lines)
    assert not [l for l in lines if LIBRARY_LINE.match(l)], "\n".join(lines)
    assert "Average Precision" not in result.stdout  # pycocotools' prints
    assert sum("Model: CenterMask" in l for l in lines) == 1
    assert sum("SOLVER.STEPS has steps beyond SOLVER.MAX_ITER" in l for l in lines) == 1
    iters = [l for l in lines if "politeteacher.train]: iter " in l]
    assert [l.split("iter ")[1].split(" (")[0] for l in iters] == ["0", "1", "2", "3"]
    if command == "train-ssl":  # pseudo-labels per image and valid masks; no zero-weighted loss
        assert "pseudo/img 10" in iters[-1] and "valid_masks 1" in iters[-1]
        assert "loss_fcos_loc_pseudo" not in iters[-1] and "loss_fcos_cls_pseudo" in iters[-1]
    log = (out_dir / "log.txt").read_text()
    assert "detectron2.engine" in log and "Average Precision" in log and "SOLVER.STEPS contains" in log


def test_verbose_shows_the_libraries(tiny_data, tmp_path):
    result = run_in_process("train-baseline", "--verbose", *_data(tiny_data), "--output-dir", tmp_path / "run",
                            *TINY, "DATASETS.SPLIT.PERCENT", "100.0", "SOLVER.MAX_ITER", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [l for l in result.stdout.splitlines() if LIBRARY_LINE.match(l)]
    assert "Average Precision" in result.stdout


def test_sweep_trains_a_run_per_value_and_compares_them(tiny_data, tmp_path):
    base = tmp_path / "sweep"
    result = run_in_process("train-ssl", *_data(tiny_data), "--output-dir", base, *TINY, *SSL,
                            "SOLVER.MAX_ITER", "2", "TEST.EVAL_PERIOD", "0",
                            "--sweep", "SEMISUPERVISED.BOX_THRESHOLD=0.3,0.4")
    assert result.returncode == 0, result.stdout + result.stderr
    runs = [base / "BOX_THRESHOLD=0.3", base / "BOX_THRESHOLD=0.4"]
    for run, threshold in zip(runs, (0.3, 0.4)):
        saved = yaml.safe_load((run / "config.yaml").read_text())
        assert saved["SEMISUPERVISED"]["BOX_THRESHOLD"] == threshold and saved["SOLVER"]["MAX_ITER"] == 2
        assert (run / "model_final.pth").is_file()
    assert sorted(p.name for p in base.iterdir()) == ["BOX_THRESHOLD=0.3", "BOX_THRESHOLD=0.4", "ap_curves.png"]
    out = result.stdout
    assert "sweep run 1/2: BOX_THRESHOLD=0.3" in out and "sweep run 2/2: BOX_THRESHOLD=0.4" in out
    table = out[out.index("AP (%): best @ iteration / final"):]
    assert "teacher segm" in table and "SEMISUPERVISED.BOX_THRESHOLD" in table
    assert f"AP curves: {base / 'ap_curves.png'}" in out
    # `compare` says the same of the two runs
    again = run_in_process("compare", *runs, "--output-dir", tmp_path / "cmp")
    assert again.returncode == 0, again.stderr
    assert again.stdout.split("AP curves:")[0] == table.split("AP curves:")[0]
    assert (tmp_path / "cmp" / "ap_curves.png").is_file()


def test_plot_overlays_several_runs_into_runs_compare(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text('{"iteration": 0, "total_loss": 1.0, "segm/AP": 2.0}\n')
    result = run_in_process("plot", "a", "b")
    assert result.returncode == 0, result.stderr
    target = tmp_path / "runs" / "compare" / "a+b" / "curves.png"
    assert result.stdout.strip() == str(Path("runs/compare/a+b/curves.png")) and target.read_bytes()[:4] == b"\x89PNG"
