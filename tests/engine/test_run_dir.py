"""The run-folder guard, --force, default folders and finding runs again."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

from politeteacher.engine import run_dir as rd
from politeteacher.errors import PoliteTeacherError


def test_default_run_dir(tmp_path):
    assert rd.default_run_dir("./output", "baseline", "demo", root=tmp_path) == tmp_path / "baseline" / "demo"
    assert rd.default_run_dir(str(tmp_path / "x"), "baseline", "demo") == tmp_path / "x"


def _enter(folder, resume=False, force=False):
    """A start's hold on `folder` that succeeds at once (the lock is released again)."""
    with rd.RunFolder(folder, resume=resume, force=force) as run:
        pass
    return run


def test_new_and_empty_folders_are_fine(tmp_path):
    _enter(tmp_path / "new")
    assert (tmp_path / "new").is_dir() and not any((tmp_path / "new").iterdir())  # no lock left behind
    _enter(tmp_path / "new")  # still empty


def test_non_empty_folder_is_refused_with_one_line(tmp_path):
    (tmp_path / "model_final.pth").write_bytes(b"old run")
    with pytest.raises(PoliteTeacherError) as e:
        _enter(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "--resume" in msg and "--force" in msg and "--output-dir" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_final.pth"]
    assert (tmp_path / "model_final.pth").read_bytes() == b"old run"


RUN_FILES = [
    "model_0000009.pth", "model_final.pth", "model_best.pth", "model_0000019.pth.tmp", "last_checkpoint",
    "metrics.json", "events.out.tfevents.1795931795.vm.15603.0", "config.yaml", "log.txt", "log.txt.rank1",
    "curves.png", "eval_results.json", "inference/custom_val/coco_instances_results.json",
    "inference/custom_val/instances_predictions.pth", "inference/teacher/custom_val/coco_instances_results.json",
    "inference/student/custom_val/coco_instances_results.json",
]
USER_FILES = ["my_backup.pth", "model_old.pth", "notes.tmp", "config.yaml.bak", "inference/my_analysis.csv",
              "inference/custom_val/my_plot.png", "inference/teacher/my.json",
              "old_inference/coco_instances_results.json"]


def _write(folder, names):
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(name)


def _tree(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_force_deletes_the_files_a_run_writes_by_name_and_keeps_the_users(tmp_path):
    _write(tmp_path, RUN_FILES + USER_FILES)
    run = _enter(tmp_path, force=True)
    assert _tree(tmp_path) == sorted(USER_FILES)
    (note,) = run.notes
    assert note.startswith(f"--force: removed {len(RUN_FILES)} files of the previous run: ")
    assert sorted(note.split("run: ", 1)[1].split(", ")) == sorted(RUN_FILES)  # each one by name
    assert not (tmp_path / "inference" / "student").exists()  # emptied by the removal


def test_resume_keeps_files_and_removes_only_stale_tmp_of_saves(tmp_path):
    _write(tmp_path, ["model_0000009.pth", "model_0000019.pth.tmp", "last_checkpoint.tmp", "notes.tmp"])
    _enter(tmp_path, resume=True)
    assert _tree(tmp_path) == ["model_0000009.pth", "notes.tmp"]


def test_resume_with_force_resumes_and_deletes_nothing(tmp_path):
    # --force next to --resume lets a run resume on other data (run_training); it starts nothing over.
    _write(tmp_path, ["model_0000009.pth", "last_checkpoint", "metrics.json"])
    _enter(tmp_path, resume=True, force=True)
    assert _tree(tmp_path) == ["last_checkpoint", "metrics.json", "model_0000009.pth"]


def test_a_failed_start_removes_what_it_wrote_and_restores_the_config(tmp_path):
    run_dir = tmp_path / "runs" / "new"
    with pytest.raises(RuntimeError):
        with rd.RunFolder(run_dir, resume=False, force=False):
            _write(run_dir, ["config.yaml", "log.txt", "metrics.json",
                             "inference/custom_val/coco_instances_results.json"])
            raise RuntimeError("a missing image")
    assert not (tmp_path / "runs").exists()  # the folders it made, too

    _write(tmp_path, ["config.yaml", "model_0000009.pth", "last_checkpoint", "log.txt", "my_notes.txt"])
    before = {name: (tmp_path / name).read_bytes() for name in _tree(tmp_path)}
    with pytest.raises(KeyboardInterrupt):
        with rd.RunFolder(tmp_path, resume=True, force=False):
            (tmp_path / "config.yaml").write_text("the resumed start's config")
            _write(tmp_path, ["log.txt.rank1", "events.out.tfevents.1.host", "my_new_notes.txt"])
            raise KeyboardInterrupt
    after = {name: (tmp_path / name).read_bytes() for name in _tree(tmp_path)}
    assert after == {**before, "my_new_notes.txt": b"my_new_notes.txt"}


def test_a_failed_start_that_wrote_a_checkpoint_keeps_everything(tmp_path):
    with pytest.raises(RuntimeError):
        with rd.RunFolder(tmp_path, resume=False, force=False):
            _write(tmp_path, ["config.yaml", "log.txt", "model_0000004.pth", "last_checkpoint"])
            raise RuntimeError("a diverged loss")
    assert _tree(tmp_path) == ["config.yaml", "last_checkpoint", "log.txt", "model_0000004.pth"]


def test_one_training_per_folder_and_a_killed_ones_lock_is_taken_over(tmp_path):
    lock = tmp_path / rd.LOCK_FILE
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from politeteacher.engine.run_dir import RunLock
        RunLock({str(tmp_path)!r}).acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(PoliteTeacherError) as e:
            _enter(tmp_path, resume=True)
        msg = str(e.value)
        assert "\n" not in msg and "in use by another training" in msg and f"pid {holder.pid} on " in msg
    finally:
        holder.kill()
        holder.wait()
    assert f"pid {holder.pid} on " in lock.read_text()  # left behind by the killed process
    (note,) = _enter(tmp_path, resume=True).notes
    assert note.startswith(f"took over the lock of a training that is no longer running (pid {holder.pid} on ")
    assert not lock.exists()


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
