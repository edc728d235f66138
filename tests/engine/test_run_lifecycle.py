"""Training as a user drives it (`politeteacher train-baseline`): one-line errors for iteration
counts, a diverged loss and a full disk."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from cli.helpers import assert_one_line_error, run_in_process

ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")


def _no_traceback(result):
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr


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
