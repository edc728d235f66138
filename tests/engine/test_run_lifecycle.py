"""A run folder over its life, driven as a user drives it (`politeteacher train-baseline`): --force,
failed starts, --resume on other data, Ctrl-C, and one-line errors for iteration counts, a diverged
loss and a full disk. (Exact resume, the lock and metrics.json on resume: test_baseline.py.)"""
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from cli.helpers import assert_one_line_error, run_in_process
from politeteacher.cli.train import resume_command

ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")


def _tree(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _no_traceback(result):
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_force_deletes_only_what_the_run_wrote_and_names_each_file(train_args, tmp_path):
    run = tmp_path / "run"
    first = run_in_process(*train_args(run, "SOLVER.MAX_ITER", "1", val=True))
    assert first.returncode == 0, first.stderr
    written = _tree(run)
    assert "model_final.pth" in written and any(f.startswith("inference/custom_val/") for f in written)
    # metrics.json is strict JSON: the AP values COCO leaves undefined (no large objects) are null.
    records = [json.loads(l, parse_constant=pytest.fail) for l in (run / "metrics.json").read_text().splitlines()]
    assert any(v is None for r in records for k, v in r.items() if "/AP" in k)

    mine = {"my_backup.pth": b"weights I keep", "model_backup.pth": b"more", "inference/my_analysis.csv": b"a,b"}
    for name, data in mine.items():
        (run / name).write_bytes(data)
    again = run_in_process(*train_args(run, "SOLVER.MAX_ITER", "1", "--force"))
    assert again.returncode == 0, again.stderr
    assert all((run / name).read_bytes() == data for name, data in mine.items())
    assert not (run / "inference" / "custom_val").exists()  # this run has no test set
    note = next(l for l in (run / "log.txt").read_text().splitlines() if "--force: removed" in l)
    assert sorted(note.split("previous run: ", 1)[1].split(", ")) == written
    assert note.split("]: ", 1)[1] in again.stdout  # on the console as well


def test_a_failed_start_leaves_no_trace_so_the_fixed_command_runs(train_args, tiny_data, tmp_path):
    run = tmp_path / "runs" / "baseline"
    split = tmp_path / "split.json"
    split.write_text('{"not": "a split"}')
    bad_split = run_in_process(*train_args(run, "SOLVER.MAX_ITER", "1", "--split", split))
    assert_one_line_error(bad_split, str(split))
    assert not (tmp_path / "runs").exists()

    broken = tmp_path / "broken"  # a missing image is found when its batch is read, in training
    shutil.copytree(tiny_data.root, broken)
    next((broken / "train").iterdir()).unlink()
    args = train_args(run, "SOLVER.MAX_ITER", "1")
    args[args.index(str(tiny_data.train_images))] = str(broken / "train")
    assert run_in_process(*args).returncode != 0
    assert not (tmp_path / "runs").exists()

    fixed = run_in_process(*train_args(run, "SOLVER.MAX_ITER", "1"))
    assert fixed.returncode == 0, fixed.stderr
    assert (run / "model_final.pth").is_file()


def test_resume_on_other_data_is_refused_naming_the_change_unless_forced(train_args, tiny_data, tmp_path):
    run = tmp_path / "run"
    assert run_in_process(*train_args(run, "SOLVER.MAX_ITER", "1")).returncode == 0
    before = {name: (run / name).read_bytes() for name in _tree(run)}
    other = tmp_path / "other"
    shutil.copytree(tiny_data.root, other)
    args = train_args(run, "SOLVER.MAX_ITER", "2", "--resume")
    args[args.index(str(tiny_data.train_json))] = str(other / tiny_data.train_json.relative_to(tiny_data.root))
    args[args.index(str(tiny_data.train_images))] = str(other / "train")

    refused = run_in_process(*args)
    assert_one_line_error(refused, "DATASETS.CUSTOM.TRAIN_JSON", str(tiny_data.train_json), str(other),
                          "DATASETS.CUSTOM.TRAIN_IMAGES", "--force")
    assert {name: (run / name).read_bytes() for name in _tree(run)} == before

    forced = run_in_process(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert torch.load(run / "model_final.pth")["iteration"] == 1
    assert str(other / "train") in (run / "config.yaml").read_text()


def test_resume_command_is_the_command_with_resume_and_its_folder(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["politeteacher", "train-ssl", "--force", "-o", "x", "--preset", "demo",
                                      "--output-dir=y", "SOLVER.MAX_ITER", "10", "--resume"])
    assert resume_command("/runs/my run") == (
        "politeteacher train-ssl --resume --output-dir '/runs/my run' --preset demo SOLVER.MAX_ITER 10")


def test_ctrl_c_says_how_to_resume_and_that_command_does(train_args, tmp_path):
    run = tmp_path / "run"
    args = train_args(run, "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2")
    # A shell's background job (`make test &`, nohup) starts with SIGINT ignored, and a Python started
    # so keeps ignoring it: give the command the default disposition a terminal's Ctrl-C meets.
    training = subprocess.Popen([sys.executable, "-m", "politeteacher", *args], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not (run / "last_checkpoint").exists():  # written right after model_0000001.pth
        assert training.poll() is None and time.monotonic() < deadline, training.stderr.read()
        time.sleep(0.05)
    training.send_signal(signal.SIGSTOP)  # Ctrl-C while it trains iteration 2 or later
    training.send_signal(signal.SIGINT)
    training.send_signal(signal.SIGCONT)
    err = training.communicate()[1]
    assert training.returncode == 130 and "Traceback" not in err, err
    hint = err.strip().split("Continue with: ", 1)[1]
    assert hint.startswith(f"politeteacher train-baseline --resume --output-dir {run} ")
    assert not (run / "model_final.pth").exists()

    resumed = subprocess.run([sys.executable, "-m", *shlex.split(hint)], env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming from" in (run / "log.txt").read_text()
    assert torch.load(run / "model_final.pth")["iteration"] == 5


@pytest.mark.parametrize("override", [("SOLVER.MAX_ITER", "0"), ("SOLVER.MAX_ITER", "-3"),
                                      ("SOLVER.CHECKPOINT_PERIOD", "0")])
def test_iteration_counts_below_one_are_one_line_errors(train_args, tmp_path, override):
    result = run_in_process(*train_args(tmp_path / "run", *override))
    assert_one_line_error(result, f"{override[0]} is {override[1]}", f"e.g. {override[0]} 1000")
    _no_traceback(result)
    assert not (tmp_path / "run").exists()


def test_a_diverged_loss_is_one_line_saying_what_to_change(train_args, tmp_path):
    result = run_in_process(*train_args(tmp_path / "run", "SOLVER.MAX_ITER", "4", "SOLVER.BASE_LR", "1e6"))
    assert_one_line_error(result, "training diverged", "SOLVER.BASE_LR (now 1e+06)", "SOLVER.WARMUP_ITERS (now 2)",
                          "SOLVER.CLIP_GRADIENTS.CLIP_VALUE (now 10)")
    _no_traceback(result)
    assert not (tmp_path / "run").exists()  # nothing to resume from: nothing kept


def _tmpfs_available():
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not shutil.which("unshare") or not _tmpfs_available(),
                    reason="needs user namespaces to mount a small tmpfs")
def test_a_full_disk_is_one_line_and_the_checkpoints_stay_intact(train_args, tmp_path):
    # The run folder is on a 160 MiB tmpfs (in a namespace of its own): the checkpoint of
    # iteration 1 (~90 MiB with SGD) fits, the second does not. The folder is inspected in there.
    disk = tmp_path / "disk"
    disk.mkdir()
    args = train_args(disk / "run", "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2",
                      "SOLVER.MAX_CHECKPOINTS_KEPT", "3", "SOLVER.OPTIMIZER", "SGD", "SOLVER.BASE_LR", "0.01")
    script = textwrap.dedent(f"""
        import json, subprocess, sys, torch
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", {str(disk)!r}], check=True)
        r = subprocess.run([sys.executable, "-m", "politeteacher", *{args!r}], capture_output=True, text=True)
        run = {str(disk / "run")!r}
        files = sorted(subprocess.run(["ls", run], capture_output=True, text=True).stdout.split())
        print(json.dumps(dict(code=r.returncode, out=r.stdout, err=r.stderr, files=files,
                              iteration=torch.load(run + "/model_0000001.pth")["iteration"])))
    """)
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", sys.executable, "-c", script],
                          env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    result = subprocess.CompletedProcess(args, seen["code"], seen["out"], seen["err"])
    assert_one_line_error(result, f"no space left on the disk of {disk / 'run' / 'model_0000003.pth'}",
                          "MiB free", "--resume")
    _no_traceback(result)
    assert seen["iteration"] == 1  # the checkpoint written before is whole
    assert "model_0000001.pth" in seen["files"] and not any(f.endswith(".tmp") for f in seen["files"])
