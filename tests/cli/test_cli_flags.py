"""One meaning per flag, help screens and usage errors as users meet them (issue #16).

-o/--output-dir everywhere (the old --output a hidden alias with a deprecation line), --split-seed
for the split and --seed for the training seed, --device cpu|cuda|cuda:N, switches shown as
switches, one Usage line, and usage errors on one `error:` line.
"""
import json

import pytest
import torch
import yaml

from politeteacher.cli.resolve import run_overrides
from politeteacher.data.synthetic import generate_dataset
from politeteacher.errors import PoliteTeacherError
from tiny import TINY_MODEL

from .helpers import assert_one_line_error, run_in_process

COMMANDS = [
    [], ["train-baseline"], ["train-ssl"], ["eval"], ["predict"], ["pseudo-label"], ["plot"], ["compare"], ["split"],
    ["doctor"], ["demo"], ["check-data"],
    ["presets"], ["presets", "list"], ["presets", "show"],
]
OUTPUT_DEPRECATED = "--output is deprecated, use --output-dir"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_flags")
    json_path = generate_dataset(root, 6, seed=0, image_size=(64, 80), max_objects=3)
    return json_path, root / "train"


def _coco(path, images, annotations, categories):
    path.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i}.jpg", "width": 32, "height": 32} for i in images],
        "annotations": [
            {"id": n, "image_id": i, "category_id": c, "bbox": [1, 1, 8, 8], "area": 64, "iscrowd": crowd,
             "segmentation": [[1, 1, 9, 1, 9, 9, 1, 9]]}
            for n, (i, c, crowd) in enumerate(annotations, 1)
        ],
        "categories": [{"id": c, "name": name} for c, name in categories],
    }))
    return path


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "politeteacher")
def test_help_shows_switches_as_switches_and_one_usage_line(command):
    out = run_in_process(*command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("Usage:") == 1, out.stdout
    assert "<bool>" not in out.stdout and "list[" not in out.stdout, out.stdout


def test_help_text_matches_behaviour():
    predict = run_in_process("predict", "--help").stdout
    assert "[IMAGE|FOLDER|GLOB]..." in predict
    assert "Arguments" in predict and "--output-dir" in predict and "-o" in predict
    for command in ("eval", "predict"):  # both refuse `--weights none`
        assert "from scratch" not in run_in_process(command, "--help").stdout
    training = run_in_process("train-baseline", "--help").stdout
    assert "--split-seed" in training and "--seed" in training and "cuda:N" in training


@pytest.mark.parametrize("args, message", [
    (["doctor", "a"], "unexpected extra argument"),  # (`plot` takes several runs)
    (["split", "--percent", "10", "--bogus"], "no such option: --bogus"),
    (["split", "--percent"], "requires an argument"),
    (["no-such-command"], "no such command"),
])
def test_usage_errors_are_one_line(args, message):
    out = run_in_process(*args)
    assert out.returncode == 2
    assert_one_line_error(out, message)
    assert len(out.stderr.strip().splitlines()) == 1 and "╭" not in out.stderr, out.stderr


def test_device_takes_a_gpu_number():
    assert run_overrides(device="cuda:1") == ["MODEL.DEVICE", "cuda:1"]
    assert run_overrides(device="cuda") == ["MODEL.DEVICE", "cuda"]
    assert run_overrides(device="cpu") == ["MODEL.DEVICE", "cpu"]
    for bad in ("gpu", "cuda:", "cuda:x", "cuda1", "CPU"):
        with pytest.raises(PoliteTeacherError, match="cpu, cuda or cuda:N"):
            run_overrides(device=bad)
    assert_one_line_error(run_in_process("train-baseline", "--preset", "demo", "--device", "gpu"), "cuda:N", "'gpu'")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU, or a GPU on a CPU-only machine
    assert_one_line_error(run_in_process("eval", "--preset", "demo", "--device", missing, "--weights",
                                         __file__), missing)


def test_seed_is_the_training_seed_and_split_seed_the_splits(data, tmp_path):
    json_path, images = data
    folder = tmp_path / "run"
    out = run_in_process(
        "train-baseline", "--preset", "demo", "--train-json", json_path, "--train-images", images,
        "--percent", "50", "--split-seed", "3", "--seed", "7", "--device", "cpu", "--weights", "none",
        "--output-dir", folder, *TINY_MODEL, "DATALOADER.NUM_WORKERS", "0", "DATASETS.TEST", "()",
        "SOLVER.MAX_ITER", "1",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    assert cfg["SEED"] == 7
    assert cfg["DATASETS"]["SPLIT"]["SEED"] == 3 and cfg["DATASETS"]["SPLIT"]["PERCENT"] == 50


def test_split_flags_and_their_old_spellings(data, tmp_path):
    json_path, images = data
    common = ["split", "--train-json", json_path, "--train-images", images, "--percent", "50"]
    new = run_in_process(*common, "--split-seed", "4", "--output-dir", tmp_path / "new.json")
    assert new.returncode == 0 and "deprecated" not in new.stderr, new.stderr
    old = run_in_process(*common, "--seed", "4", "--output", tmp_path / "old.json")
    assert old.returncode == 0, old.stderr
    assert "--seed is deprecated, use --split-seed" in old.stderr and OUTPUT_DEPRECATED in old.stderr
    made = json.loads((tmp_path / "new.json").read_text())
    assert made["seed"] == 4 and json.loads((tmp_path / "old.json").read_text())["image_ids"] == made["image_ids"]
    # -o with a folder: the split file goes into it under its default name
    into = run_in_process(*common, "-o", tmp_path / "splits")
    assert into.returncode == 0, into.stderr
    made = sorted(p.name for p in (tmp_path / "splits").iterdir())  # the split, and its starter dataset file
    assert len(made) == 2 and made[0].endswith("_50pct_seed1.data.yaml") and made[1].endswith("_50pct_seed1.json")
    assert_one_line_error(run_in_process(*common, "--output", tmp_path / "a.json", "-o", tmp_path / "b.json"),
                          "--output-dir only")


def test_plot_output_dir_and_its_old_spelling(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text('{"iteration": 0, "total_loss": 1.0}\n')
    out = run_in_process("plot", tmp_path / "run", "--output-dir", tmp_path / "plots")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "plots" / "curves.png").is_file()
    old = run_in_process("plot", tmp_path / "run", "--output", tmp_path / "c.png")
    assert old.returncode == 0 and OUTPUT_DEPRECATED in old.stderr, old.stderr
    assert (tmp_path / "c.png").is_file()


def test_predict_old_output_spelling_is_read(tmp_path):
    """`predict --output` is read as --output-dir (with the deprecation line) before the weights are
    looked at; the predictions themselves are tested with --output-dir in test_train_eval_predict."""
    out = run_in_process("predict", tmp_path, "--output", tmp_path / "p", "--weights", tmp_path / "missing.pth")
    assert OUTPUT_DEPRECATED in out.stderr
    assert_one_line_error(out, "missing.pth")
    both = run_in_process("predict", tmp_path, "--output", tmp_path / "p", "-o", tmp_path / "q")
    assert_one_line_error(both, "--output-dir only")


def test_strip_output_dir_is_the_file_or_a_folder_and_its_old_spelling(tmp_path):
    """strip (like export) writes one file: -o/--output-dir names it, or an existing folder to write it into."""
    src = tmp_path / "m.pth"
    torch.save({"model": torch.nn.Linear(3, 2).state_dict()}, src)
    (tmp_path / "into").mkdir()
    into = run_in_process("strip", src, "-o", tmp_path / "into")
    assert into.returncode == 0, into.stderr
    assert [p.name for p in (tmp_path / "into").iterdir()] == ["m_weights.pth"]
    named = run_in_process("strip", src, "--output-dir", tmp_path / "w.pth")
    assert named.returncode == 0 and "deprecated" not in named.stderr, named.stderr
    assert torch.load(tmp_path / "w.pth")["model"].keys() == {"weight", "bias"}
    old = run_in_process("strip", src, "--output", tmp_path / "old.pth")
    assert old.returncode == 0 and OUTPUT_DEPRECATED in old.stderr, old.stderr
    assert (tmp_path / "old.pth").is_file()
    assert_one_line_error(run_in_process("strip", src, "--output", tmp_path / "a.pth", "-o", tmp_path / "b.pth"),
                          "--output-dir only")


def test_split_reports_instances_per_class(tmp_path):
    # 10 images with a "common" instance; "rare" only on image 10 (crowd on image 1); "ghost" on none
    annotations = [(i, 1, 0) for i in range(1, 11)] + [(10, 2, 0), (1, 2, 1)]
    coco = _coco(tmp_path / "train.json", range(1, 11), annotations, [(1, "common"), (2, "rare"), (3, "ghost")])
    out = run_in_process("split", "--train-json", coco, "--percent", "50", "-o", tmp_path / "s.json")
    assert out.returncode == 0, out.stderr
    made = json.loads((tmp_path / "s.json").read_text())
    rare_labelled = int(10 in made["image_ids"])
    assert made["instances_per_class"] == {
        "common": {"labeled": 5, "unlabeled": 5},
        "rare": {"labeled": rare_labelled, "unlabeled": 1 - rare_labelled},
        "ghost": {"labeled": 0, "unlabeled": 0},
    }
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if line.split()}
    assert rows["class"] == ["labelled", "unlabelled"]
    assert rows["common"] == ["5", "5"] and rows["ghost"] == ["0", "0"]
    assert rows["rare"] == [str(rare_labelled), str(1 - rare_labelled)]
    warnings = [l for l in out.stderr.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1 and "ghost" in warnings[0] and "common" not in warnings[0], out.stderr
    assert ("rare" in warnings[0]) == (not rare_labelled)


def test_doctor_fixes_every_failing_row_counts_images_and_wraps_paths(tmp_path, monkeypatch):
    from politeteacher.cli.doctor import collect_checks

    deep = tmp_path / ("a_folder_name_long_enough_that_paths_pass_eighty_columns_" * 2)
    (deep / "coco" / "val2017").mkdir(parents=True)
    (deep / "coco" / "annotations").mkdir()
    (deep / "coco" / "annotations" / "instances_val2017.json").write_text("{}")
    for i in range(3):
        (deep / "coco" / "val2017" / f"{i:012d}.jpg").write_bytes(b"")
    (deep / "coco" / "val2017" / "notes.txt").write_text("not an image")
    monkeypatch.setenv("DETECTRON2_DATASETS", str(deep))
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)

    rows = {row.check: row for row in collect_checks()}
    assert all(row.fix for row in rows.values() if not row.ok), rows  # without --require-coco too
    assert not rows["dataset coco_2017_train"].ok and "DETECTRON2_DATASETS" in rows["dataset coco_2017_train"].fix
    assert rows["dataset coco_2017_val"].ok and "found: 3 images in" in rows["dataset coco_2017_val"].value
    assert not rows["OMP_WAIT_POLICY"].ok and "OMP_WAIT_POLICY=PASSIVE" in rows["OMP_WAIT_POLICY"].fix
    assert not rows["OMP_WAIT_POLICY"].required and not rows["dataset coco_2017_train"].required

    out = run_in_process("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "…" not in out.stdout
    values = "".join(line.split("│")[2].strip() for line in out.stdout.splitlines() if line.count("│") == 5)
    assert str(deep / "coco" / "val2017") in values and str(deep / "coco" / "train2017") in values
    assert run_in_process("doctor", "--require-coco").returncode == 1
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    assert {row.check: row for row in collect_checks()}["OMP_WAIT_POLICY"].ok
