"""The dataset file (`--data FILE`) on every command that reads data, `--dataset NAME`, `check-data`,
and top-level `KEY VALUE` overrides (SEED, OUTPUT_DIR) on every command that takes a config (issue #16).
"""
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from politeteacher.data.synthetic import generate_dataset
from tiny import TINY_MODEL

from .helpers import assert_one_line_error, run_in_process, user_dataset

TINY = [*TINY_MODEL, "DATALOADER.NUM_WORKERS", "0", "SOLVER.MAX_ITER", "1", "SOLVER.CHECKPOINT_PERIOD", "1",
        "DATASETS.SPLIT.PERCENT", "50"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A generated dataset laid out as a user's (annotations/, images/, raw/) and a dataset file with
    paths relative to it."""
    root = user_dataset(tmp_path_factory.mktemp("data_file"))
    data_file = root / "my_data.yaml"
    data_file.write_text(
        "train_json: annotations/train.json\ntrain_images: images/train\n"
        "val_json: annotations/val.json\nval_images: images/val\nunlabeled_images: [raw]\n"
    )
    return SimpleNamespace(root=root, file=data_file)


@pytest.fixture(scope="module")
def baseline(data, tmp_path_factory):
    """A one-iteration baseline trained from the dataset file, with SEED and OUTPUT_DIR given as
    trailing overrides."""
    run = tmp_path_factory.mktemp("runs") / "baseline"
    out = run_in_process("train-baseline", "--preset", "demo", "--data", data.file, *TINY,
                         "SEED", "7", "OUTPUT_DIR", run)
    assert out.returncode == 0, out.stdout + out.stderr
    return run


def test_train_baseline_reads_the_data_file_and_records_it(data, baseline):
    cfg = yaml.safe_load((baseline / "config.yaml").read_text())
    assert cfg["SEED"] == 7  # a top-level override
    assert cfg["DATASETS"]["DATA_FILE"] == str(data.file)
    assert cfg["DATASETS"]["CUSTOM"]["TRAIN_JSON"] == str(data.root / "annotations" / "train.json")
    assert cfg["DATASETS"]["CUSTOM"]["VAL_IMAGES"] == str(data.root / "images" / "val")
    assert cfg["DATASETS"]["UNLABELED_IMAGE_DIRS"] == [str(data.root / "raw")]
    assert cfg["DATASETS"]["TRAIN"] == ["custom_train"] and cfg["DATASETS"]["TEST"] == ["custom_val"]


def test_a_flag_overrides_the_data_files_entry(data, tmp_path):
    run = tmp_path / "run"
    other = tmp_path / "other.yaml"
    other.write_text(f"train_json: {data.root}/annotations/val.json\ntrain_images: {data.root}/images/val\n")
    out = run_in_process("train-baseline", "--preset", "demo", "--data", other, "--val-json",
                         data.root / "annotations/train.json", "--val-images", data.root / "images/train",
                         *TINY, "OUTPUT_DIR", run, "SEED", "3")
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["DATASETS"]["CUSTOM"]["TRAIN_JSON"].endswith("val.json")
    assert cfg["DATASETS"]["CUSTOM"]["VAL_JSON"].endswith("train.json") and cfg["SEED"] == 3


def test_train_ssl_reads_the_data_file(data, baseline, tmp_path):
    run = tmp_path / "ssl"
    out = run_in_process("train-ssl", "--preset", "demo_polite_teacher", "--data", data.file,
                         *TINY, "MODEL.WEIGHTS", baseline / "model_final.pth",
                         "SOLVER.IMS_PER_BATCH_UNLABELED", "2",
                         "SEED", "5", "OUTPUT_DIR", run)
    assert out.returncode == 0, out.stdout + out.stderr
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["SEED"] == 5 and cfg["DATASETS"]["DATA_FILE"] == str(data.file)
    assert cfg["DATASETS"]["UNLABELED_IMAGE_DIRS"] == [str(data.root / "raw")]


def test_eval_takes_the_data_files_val_set_and_a_trailing_output_dir(data, baseline, tmp_path):
    # the val set of another dataset file (the training images, 6 of them) replaces the run's (3)
    other = tmp_path / "other.yaml"
    other.write_text(f"val_json: {data.root}/annotations/train.json\nval_images: {data.root}/images/train\n")
    out = run_in_process("eval", "--weights", baseline / "model_final.pth", "--data", other,
                         "SEED", "2", "OUTPUT_DIR", tmp_path / "ev")
    assert out.returncode == 0, out.stderr
    assert set(json.loads((tmp_path / "ev" / "eval_results.json").read_text())["results"]) == {"custom_val"}
    logged = (tmp_path / "ev" / "log.txt").read_text()
    assert f"Loaded 6 images in COCO format from {data.root / 'annotations' / 'train.json'}" in logged


def test_predict_names_classes_after_the_data_file_and_takes_a_trailing_output_dir(data, baseline, tmp_path):
    named = tmp_path / "named.yaml"
    names = ["a", "b", "c", "d", "e", "f"]
    named.write_text(yaml.safe_dump({"classes": names}))
    out = run_in_process("predict", data.root / "raw", "--weights", baseline / "model_final.pth",
                         "--data", named, "--threshold", "0", "SEED", "1", "OUTPUT_DIR", tmp_path / "pred")
    assert out.returncode == 0, out.stderr
    header = json.loads((tmp_path / "pred" / "images.json").read_text())
    assert [c["name"] for c in header["categories"]] == names


def test_split_reads_the_data_file_and_writes_a_starter_one(data, tmp_path):
    out = run_in_process("split", "--data", data.file, "--percent", "50", "-o", tmp_path / "s.json")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "s.json").read_text())["num_candidates"] == 6
    assert f"--data {data.file}" in out.stdout
    # from a JSON and its folder, a starter dataset file beside the split, usable as it is
    out = run_in_process("split", "--train-json", data.root / "annotations/train.json", "--train-images",
                         data.root / "images/train", "--percent", "50", "-o", tmp_path / "t.json")
    assert out.returncode == 0, out.stderr
    starter = tmp_path / "t.data.yaml"
    assert f"--data {starter}" in out.stdout
    entries = yaml.safe_load(starter.read_text())
    assert entries == {"train_json": str(data.root / "annotations/train.json"),
                       "train_images": str(data.root / "images/train"), "split": str(tmp_path / "t.json")}
    # a starter file the user edited is never replaced
    starter.write_text(starter.read_text() + "val_json: x.json\n")
    edited = starter.read_text()
    again = run_in_process("split", "--train-json", data.root / "annotations/train.json", "--train-images",
                           data.root / "images/train", "--percent", "50", "-o", tmp_path / "t.json")
    assert again.returncode == 0 and "left as it is" in again.stderr and starter.read_text() == edited


@pytest.mark.parametrize("text, message", [
    ("train_json: [1]\n", "train_json must be a path"),
    ("trian_json: a.json\n", "unknown key(s) trian_json"),
    ("train_json: annotations/train.json\n", "train_json needs train_images"),
    ("val_json: nowhere.json\nval_images: images/val\n", "val_json"),
    ("- a\n", "expected a mapping"),
    ("train_json: annotations/train.json\ntrain_images: images/train\nclasses: [x]\n", "not ['x']"),
])
def test_a_bad_data_file_is_one_line(data, text, message):
    bad = data.root / "bad.yaml"
    bad.write_text(text)
    out = run_in_process("train-baseline", "--preset", "demo", "--data", bad, *TINY)
    assert_one_line_error(out, str(bad) if "not [" not in message else "DATASETS.CLASS_NAMES", message)


def test_missing_data_file_is_one_line(tmp_path):
    for command in (["check-data"], ["split", "--percent", "10"], ["train-ssl"], ["eval"]):
        out = run_in_process(*command, "--data", tmp_path / "none.yaml", "--weights", __file__) \
            if command == ["eval"] else run_in_process(*command, "--data", tmp_path / "none.yaml")
        assert_one_line_error(out, "none.yaml not found")


def test_dataset_names_the_training_and_validation_sets(tmp_path):
    out = run_in_process("presets", "show", "demo", "SEED", "9", "OUTPUT_DIR", str(tmp_path / "x"))
    assert out.returncode == 0, out.stderr
    shown = yaml.safe_load(out.stdout)
    assert shown["SEED"] == 9 and shown["OUTPUT_DIR"] == str(tmp_path / "x")
    out = run_in_process("train-baseline", "--preset", "demo", "--dataset", "demo_val", "--val-dataset",
                         "demo_test", *TINY, "OUTPUT_DIR", tmp_path / "run")
    assert out.returncode == 0, out.stderr
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["DATASETS"]["TRAIN"] == ["demo_val"] and cfg["DATASETS"]["TEST"] == ["demo_test"]
    assert_one_line_error(run_in_process("train-baseline", "--dataset", "demo_val", "--train-json", __file__,
                                         "--train-images", tmp_path), "--dataset and --train-json")


def test_demo_takes_a_trailing_output_dir(tmp_path, monkeypatch):
    """demo: OUTPUT_DIR at the end means --output-dir (each stage keeps its own folder under it)."""
    import politeteacher.demo as demo_module

    seen = {}

    def fake_run_demo(output_dir, force=False, overrides=()):
        seen.update(output_dir=output_dir, overrides=list(overrides))
        raise SystemExit(0)

    monkeypatch.setattr(demo_module, "run_demo", fake_run_demo)
    out = run_in_process("demo", "SEED", "4", "OUTPUT_DIR", tmp_path / "d")
    assert out.returncode == 0, out.stderr
    assert seen == {"output_dir": tmp_path / "d", "overrides": ["SEED", "4"]}


@pytest.fixture(scope="module")
def flawed(tmp_path_factory):
    """6 images: one missing on disk, one without annotations, one crowd-only."""
    root = tmp_path_factory.mktemp("flawed")
    json_file = generate_dataset(root, 6, seed=2, image_size=(64, 80), max_objects=2)
    coco = json.loads(json_file.read_text())
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] != 2]  # image 2: empty
    for a in by_image[3]:  # image 3: crowd regions only
        a["iscrowd"] = 1
    (root / "train" / coco["images"][4]["file_name"]).unlink()  # image 5: missing
    json_file.write_text(json.dumps(coco))
    return SimpleNamespace(json=json_file, images=root / "train", coco=coco, by_image=by_image)


def test_check_data_reports_missing_empty_and_crowd_only_images(flawed, tmp_path):
    out = run_in_process("check-data", "--train-json", flawed.json, "--train-images", flawed.images,
                         "-o", tmp_path, "--grid", "4")
    assert out.returncode == 1, out.stdout + out.stderr
    names = {i["id"]: i["file_name"] for i in flawed.coco["images"]}
    assert f"1 image(s) without annotations (nothing to learn from them as labelled images): {names[2]}" in out.stdout
    assert f"1 crowd-only image(s)" in out.stdout and names[3] in out.stdout
    assert f"bad image {flawed.images / names[5]}: not found" in out.stdout
    assert "error: 1 finding(s) would stop training: train set custom_train: 1 image(s) missing" in out.stderr
    report = json.loads((tmp_path / "report.json").read_text())["datasets"][0]
    instances = [a for i, anns in flawed.by_image.items() if i not in (2, 3) for a in anns]
    assert report["num_images"] == 6 and report["num_instances"] == len(instances)
    assert report["num_crowd"] == len(flawed.by_image[3])
    assert report["without_annotations"] == [str(flawed.images / names[2])]
    assert report["crowd_only"] == [str(flawed.images / names[3])]
    # the category-id map: JSON ids 1..6 are the model's 0..5, with their instance counts
    cats = report["categories"]
    assert [(c["dataset_id"], c["contiguous_id"]) for c in cats] == [(i + 1, i) for i in range(6)]
    assert sum(c["instances"] for c in cats) == len(instances)
    for c in cats:
        assert c["instances"] == sum(1 for a in instances if a["category_id"] == c["dataset_id"])
    # the grid: the 4 annotated, readable images (crowd-only included), 3 to a row, each 320 px high
    from PIL import Image

    with Image.open(tmp_path / "train_grid.jpg") as grid:
        assert grid.size == (3 * 80 * 320 // 64, 2 * 320)  # rows of 3, each 320 px high


def test_check_data_passes_a_clean_data_file(data, tmp_path):
    out = run_in_process("check-data", "--data", data.file, "-o", tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "train: custom_train" in out.stdout and "val: custom_val" in out.stdout
    assert f"unlabelled: {data.root / 'raw'}: 3 images, 0 unreadable" in out.stdout
    assert (tmp_path / "train_grid.jpg").is_file() and (tmp_path / "val_grid.jpg").is_file()


def test_doctor_checks_a_data_file(data, flawed, tmp_path):
    from politeteacher.cli.doctor import collect_checks

    rows = {r.check: r for r in collect_checks(data=data.file)}
    assert rows["data file"].ok and rows["data train"].ok and rows["data val"].ok
    assert rows["data train"].value == "custom_train: 6 images, " + rows["data train"].value.split(", ")[1]
    assert rows["data unlabelled"].value == f"3 images in {data.root / 'raw'}"
    bad = tmp_path / "flawed.yaml"
    bad.write_text(yaml.safe_dump({"train_json": str(flawed.json), "train_images": str(flawed.images)}))
    row = {r.check: r for r in collect_checks(data=bad)}["data train"]
    assert not row.ok and "1 image file(s) missing" in row.value and f"check-data --data {bad}" in row.fix
    out = run_in_process("doctor", "--data", bad)
    assert out.returncode == 1


def test_dataset_on_eval_is_the_set_evaluated(baseline, tmp_path):
    """The run's own val set is custom_val; --dataset NAME evaluates that registered set instead."""
    out = run_in_process("eval", "--weights", baseline / "model_final.pth", "--dataset", "demo_test",
                         "-o", tmp_path / "ev")
    assert out.returncode == 0, out.stderr
    assert set(json.loads((tmp_path / "ev" / "eval_results.json").read_text())["results"]) == {"demo_test"}
