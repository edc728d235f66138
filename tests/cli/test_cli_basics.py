import json
import os
import subprocess
import sys

from politeteacher import __version__

from .helpers import assert_one_line_error, run_cli


def test_help_lists_every_command():
    out = run_cli("--help")
    assert out.returncode == 0
    for cmd in ("split", "train-baseline", "train-ssl", "eval", "predict", "pseudo-label", "presets", "doctor", "plot",
                "compare", "demo", "check-data"):
        assert cmd in out.stdout
    assert run_cli("--version").stdout.strip() == f"politeteacher {__version__}"


def test_presets_list_and_show():
    listing = run_cli("presets", "list")
    assert listing.returncode == 0 and "polite_teacher_sup10" in listing.stdout and "demo" in listing.stdout
    show = run_cli("presets", "show", "polite_teacher_sup10")
    assert show.returncode == 0 and "BOX_THRESHOLD: 0.6" in show.stdout
    resolved = run_cli("presets", "show", "demo", "--resolved")
    assert "EMA_KEEP_RATE" in resolved.stdout and "MASK_LOSS_NORM" in resolved.stdout
    assert_one_line_error(run_cli("presets", "show", "nope"), "unknown preset 'nope'")


def test_top_level_config_keys_are_overrides():
    from politeteacher.cli.resolve import TOP_LEVEL_KEYS, split_overrides
    from politeteacher.config import get_politeteacher_cfg

    cfg = get_politeteacher_cfg()
    assert set(TOP_LEVEL_KEYS) == {k for k, v in cfg.items() if not isinstance(v, dict)}
    assert split_overrides(["a.png", "SEED", "7", "OUTPUT_DIR", "x", "SOLVER.MAX_ITER", "3"]) == (
        ["a.png"], ["SEED", "7", "OUTPUT_DIR", "x", "SOLVER.MAX_ITER", "3"])
    # the command gets as far as the data, past its overrides
    out = run_cli("train-baseline", "--preset", "demo", "--train-json", "missing.json", "--train-images", ".",
                  "SEED", "7", "OUTPUT_DIR", "x")
    assert_one_line_error(out, "missing.json")


def test_doctor_reports_the_stack_and_missing_coco(tmp_path):
    ok = run_cli("doctor", env={"DETECTRON2_DATASETS": str(tmp_path)})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for word in ("Python", "torch", "CUDA", "detectron2 compiled ops", "coco_2017_train", "missing"):
        assert word in ok.stdout
    strict = run_cli("doctor", "--require-coco", env={"DETECTRON2_DATASETS": str(tmp_path)})
    assert strict.returncode != 0 and "DETECTRON2_DATASETS" in strict.stdout


def test_doctor_finds_coco(tmp_path):
    for split in ("train2017", "val2017"):
        (tmp_path / "coco" / split).mkdir(parents=True)
    (tmp_path / "coco" / "annotations").mkdir()
    for split in ("train2017", "val2017"):
        (tmp_path / "coco" / "annotations" / f"instances_{split}.json").write_text("{}")
    out = run_cli("doctor", "--require-coco", env={"DETECTRON2_DATASETS": str(tmp_path)})
    assert out.returncode == 0, out.stdout
    assert "missing" not in out.stdout


def test_split_writes_a_file_and_round_trips_unbiased_teacher(tmp_path):
    out = run_cli("split", "--dataset", "demo_train", "--percent", "10", "--split-seed", "3", "-o", "s.json",
                  "--to-ut", "ut.txt", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    made = json.loads((tmp_path / "s.json").read_text())
    assert made["percent"] == 10 and made["seed"] == 3 and made["num_labeled"] == len(made["image_ids"])
    assert made["num_labeled"] == int(0.10 * made["num_candidates"]) and len(made["sha256"]) == 64
    back = run_cli("split", "--dataset", "demo_train", "--percent", "10", "--split-seed", "3",
                   "--from-ut", "ut.txt", "-o", "back.json", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert json.loads((tmp_path / "back.json").read_text())["image_ids"] == made["image_ids"]


def test_split_refuses_to_overwrite_a_different_split(tmp_path):
    assert run_cli("split", "--dataset", "demo_train", "--percent", "10", "-o", "s.json", cwd=tmp_path).returncode == 0
    before = (tmp_path / "s.json").read_text()
    again = run_cli("split", "--dataset", "demo_train", "--percent", "20", "-o", "s.json", cwd=tmp_path)
    assert_one_line_error(again, "already exists", "--force")
    assert (tmp_path / "s.json").read_text() == before


def test_bad_inputs_end_in_one_line(tmp_path):
    assert_one_line_error(run_cli("split", "--dataset", "demo_train", "--percent", "0"), "(0, 100)")
    assert_one_line_error(run_cli("split", "--dataset", "demo_train", "--percent", "150"), "(0, 100)")
    assert_one_line_error(
        run_cli("split", "--percent", "10", env={"DETECTRON2_DATASETS": str(tmp_path)}),
        "instances_train2017.json",
    )
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert_one_line_error(run_cli("split", "--train-json", broken, "--percent", "10"), str(broken))
    assert_one_line_error(
        run_cli("split", "--dataset", "demo_train", "--percent", "10", "--from-ut", tmp_path / "nope.txt"),
        "nope.txt",
    )


def test_the_command_waits_passively_for_openmp_unless_the_user_chose():
    """OpenMP reads OMP_WAIT_POLICY when torch loads it: the command sets it before that."""
    code = "import politeteacher.cli, os, torch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
