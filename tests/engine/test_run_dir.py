"""The run-folder guard, --force, default folders and finding runs again."""
import os
import time

import pytest

from politeteacher.engine import run_dir as rd
from politeteacher.errors import PoliteTeacherError


def test_default_run_dir(tmp_path):
    assert rd.default_run_dir("./output", "baseline", "demo", root=tmp_path) == tmp_path / "baseline" / "demo"
    assert rd.default_run_dir(str(tmp_path / "x"), "baseline", "demo") == tmp_path / "x"


def test_new_and_empty_folders_are_fine(tmp_path):
    assert rd.prepare_run_dir(tmp_path / "new", resume=False, force=False).is_dir()
    rd.prepare_run_dir(tmp_path / "new", resume=False, force=False)  # still empty


def test_non_empty_folder_is_refused_with_one_line(tmp_path):
    (tmp_path / "model_final.pth").write_bytes(b"old run")
    with pytest.raises(PoliteTeacherError) as e:
        rd.prepare_run_dir(tmp_path, resume=False, force=False)
    msg = str(e.value)
    assert "\n" not in msg and "--resume" in msg and "--force" in msg and "--output-dir" in msg
    assert (tmp_path / "model_final.pth").read_bytes() == b"old run"


def test_force_deletes_run_files_only(tmp_path):
    for name in ("model_0000009.pth", "model_final.pth", "last_checkpoint", "metrics.json",
                 "events.out.tfevents.1.host", "config.yaml", "log.txt", "curves.png"):
        (tmp_path / name).write_text("old")
    (tmp_path / "inference").mkdir()
    (tmp_path / "inference" / "coco_instances_results.json").write_text("[]")
    (tmp_path / "my_notes.txt").write_text("keep me")
    rd.prepare_run_dir(tmp_path, resume=False, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["my_notes.txt"]


def test_resume_keeps_files_and_removes_stale_tmp(tmp_path):
    (tmp_path / "model_0000009.pth").write_text("ckpt")
    (tmp_path / "model_0000019.pth.tmp").write_text("half")
    rd.prepare_run_dir(tmp_path, resume=True, force=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_0000009.pth"]


def test_resume_and_force_together_is_an_error(tmp_path):
    with pytest.raises(PoliteTeacherError, match="contradict"):
        rd.check_run_dir(tmp_path, resume=True, force=True)


def test_latest_run_weights_prefers_best_of_newest_run(tmp_path):
    assert rd.latest_run_weights(tmp_path / "runs") is None
    old = tmp_path / "runs" / "baseline" / "old"
    new = tmp_path / "runs" / "baseline" / "new"
    for d in (old, new):
        d.mkdir(parents=True)
    (old / "model_best.pth").write_text("x")
    (new / "model_final.pth").write_text("x")
    t = time.time()
    os.utime(old / "model_best.pth", (t - 100, t - 100))
    assert rd.latest_run_weights(tmp_path / "runs") == new / "model_final.pth"
    (new / "model_best.pth").write_text("x")
    assert rd.latest_run_weights(tmp_path / "runs") == new / "model_best.pth"
    (new / "config.yaml").write_text("x")
    assert rd.run_config(new / "model_best.pth") == new / "config.yaml"
    assert rd.run_config(old / "model_best.pth") is None
