"""Baseline training: resume at the right iteration with the same optimiser state, CPU workers."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from politeteacher.data.datasets import register_all
from politeteacher.engine.baseline import BaselineTrainer
from politeteacher.engine.run import prepare_training_cfg, run_train_baseline
from politeteacher.engine.launch import Launch
from politeteacher.errors import PoliteTeacherError

from cli.helpers import assert_one_line_error, run_in_process



def _records(run):
    return [json.loads(l) for l in (run / "metrics.json").read_text().splitlines()]


def _iterations(run):
    """Iterations that trained (logged a loss)."""
    return sorted({r["iteration"] for r in _records(run) if "total_loss" in r})


def _assert_same(a, b, path="state"):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def test_resume_continues_at_next_iteration_with_saved_state(tiny_cfg, tmp_path):
    run = tmp_path / "run"
    first = tiny_cfg(run, "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "1", val=False)
    assert run_train_baseline(first) == {}
    assert _iterations(run) == [0, 1]
    # The last iteration's full state is a periodic file, which --resume reads; model_final.pth is lean.
    saved = torch.load(run / "model_0000001.pth")
    assert saved["iteration"] == 1 and (run / "last_checkpoint").read_text() == "model_0000001.pth"
    final = torch.load(run / "model_final.pth")
    assert final["iteration"] == 1 and "trainer" not in final
    _assert_same(final["model"], saved["model"], "model_final")

    longer = tiny_cfg(run, "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "1", val=False)
    with pytest.raises(PoliteTeacherError, match="not empty"):
        run_train_baseline(longer)

    # What --resume loads: the model, the optimiser (momentum buffers), the LR scheduler, the iteration.
    cfg = prepare_training_cfg(longer)
    register_all(cfg)
    trainer = BaselineTrainer(cfg)
    trainer.resume_or_load(resume=True)
    assert trainer.start_iter == 2
    state = trainer.state_dict()
    _assert_same(state["optimizer"], saved["trainer"]["optimizer"], "optimizer")
    assert state["optimizer"]["state"], "momentum buffers were saved and loaded"
    _assert_same(state["hooks"]["LRScheduler"], saved["trainer"]["hooks"]["LRScheduler"], "scheduler")
    _assert_same(trainer.model.state_dict(), saved["model"], "model")
    del trainer

    run_train_baseline(longer, resume=True)
    assert _iterations(run) == [0, 1, 2, 3]
    assert torch.load(run / "model_final.pth")["iteration"] == 3
    assert "Resuming from" in (run / "log.txt").read_text()



def test_resume_after_a_stop_repeats_the_uninterrupted_run_exactly(tiny_cfg, tmp_path):
    # 2 iterations, stop, --resume for 2 more == 4 iterations in one go, bit for bit: the resumed
    # loader draws batches 2 and 3, each step's randomness depends on its iteration only, and every
    # step computes its losses the same way (no TorchScript optimisation after a first profiled call).
    common = ["SOLVER.CHECKPOINT_PERIOD", "2", "SEED", "7"]
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    run_train_baseline(tiny_cfg(whole, *common, "SOLVER.MAX_ITER", "4", val=False))
    run_train_baseline(tiny_cfg(stopped, *common, "SOLVER.MAX_ITER", "2", val=False))
    run_train_baseline(tiny_cfg(stopped, *common, "SOLVER.MAX_ITER", "4", val=False), resume=True)
    assert _iterations(stopped) == [0, 1, 2, 3]
    a, b = torch.load(whole / "model_0000003.pth"), torch.load(stopped / "model_0000003.pth")
    _assert_same(b["model"], a["model"], "model")
    _assert_same(b["trainer"]["optimizer"], a["trainer"]["optimizer"], "optimizer")
    losses = lambda run: [r["total_loss"] for r in _records(run) if "total_loss" in r]
    assert losses(stopped) == losses(whole)


def _command(train_args, out, *overrides):
    return [sys.executable, "-m", "politeteacher", *train_args(out, *overrides)]


def _wait_for(path, process, timeout=300):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"training ended (exit {process.returncode}) before {path.name} appeared"
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.05)


def _recorded_after_checkpoint(run):
    last = (run / "last_checkpoint").read_text()
    assert not (run / "model_final.pth").exists(), "the run ended before it could be stopped"
    recorded = []
    for line in (run / "metrics.json").read_text().splitlines():
        try:
            recorded.append(json.loads(line)["iteration"])
        except json.JSONDecodeError:  # being written
            pass
    return max(recorded) > int(last[len("model_"):-len(".pth")])


def test_resume_after_sigkill_repeats_the_uninterrupted_run_exactly(train_args, tmp_path):
    # The demo preset's AdamW turns any difference in a gradient's rounding into a visible one. The
    # run is stopped (SIGSTOP) after a checkpoint, while it trains on: a second training in its
    # folder is refused; then it is killed and resumed.
    args = ["SOLVER.MAX_ITER", "12", "SOLVER.CHECKPOINT_PERIOD", "3", "SOLVER.MAX_CHECKPOINTS_KEPT", "1"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run(_command(train_args, whole, *args), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    run = subprocess.Popen(_command(train_args, killed, *args), env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(killed / "last_checkpoint", run)  # written after the checkpoint of iteration 2
        while True:  # stopped where metrics.json has records after the last checkpoint
            run.send_signal(signal.SIGSTOP)
            os.waitpid(run.pid, os.WUNTRACED)
            if _recorded_after_checkpoint(killed):
                break
            run.send_signal(signal.SIGCONT)
            time.sleep(0.1)
        second = run_in_process(*train_args(killed, *args, "--resume"))
        assert_one_line_error(second, "in use by another training", f"pid {run.pid} on ")
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait()
    assert run.returncode == -signal.SIGKILL and not (killed / "model_final.pth").exists()

    resumed = subprocess.run(_command(train_args, killed, *args, "--resume"), env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    log = (killed / "log.txt").read_text()
    assert "Resuming from" in log
    assert f"took over the lock of a training that is no longer running (pid {run.pid} " in log
    a, b = torch.load(whole / "model_0000011.pth"), torch.load(killed / "model_0000011.pth")
    _assert_same(b["model"], a["model"], "model")
    _assert_same(b["trainer"]["optimizer"], a["trainer"]["optimizer"], "optimizer")
    # metrics.json: each iteration once (the records after the checkpoint were dropped), as in one go.
    losses = lambda run: [(r["iteration"], r["total_loss"]) for r in _records(run) if "total_loss" in r]
    assert losses(killed) == losses(whole) and [i for i, _ in losses(whole)] == list(range(12))


def test_amp_on_cpu_is_refused(tiny_cfg, tmp_path):
    cfg = tiny_cfg(tmp_path / "run", "SOLVER.AMP.ENABLED", "True")
    with pytest.raises(PoliteTeacherError, match="needs a GPU"):
        run_train_baseline(cfg)
    assert not (tmp_path / "run").exists()


def test_batch_must_split_evenly_over_workers(tiny_cfg, tmp_path):
    cfg = tiny_cfg(tmp_path / "run", "SOLVER.IMS_PER_BATCH", "3")
    with pytest.raises(PoliteTeacherError, match="divide evenly"):
        run_train_baseline(cfg, launch=Launch(num_gpus=2))


@pytest.mark.slow
def test_two_cpu_workers_train_and_evaluate(tiny_cfg, tmp_path):
    run = tmp_path / "ddp"
    cfg = tiny_cfg(run, "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.EVAL_PERIOD", "0")
    results = run_train_baseline(cfg, launch=Launch(num_gpus=2))
    assert _iterations(run) == [0, 1]
    assert torch.load(run / "model_final.pth")["iteration"] == 1
    assert any("segm/AP" in r for r in _records(run))  # the final evaluation reached metrics.json
    assert set(results["custom_val"]) == {"bbox", "segm"}
    assert (run / "log.txt.rank1").is_file()  # the second worker logged on its own


def test_a_random_seed_is_drawn_once_and_recorded(tiny_cfg, tmp_path):
    from politeteacher.engine.launch import check_launch

    cfg = tiny_cfg(tmp_path / "run", "SEED", "-1", val=False)
    seeds = {prepare_training_cfg(cfg).SEED for _ in range(3)}
    assert all(s >= 0 for s in seeds) and len(seeds) > 1  # drawn, not a fixed default
    with pytest.raises(PoliteTeacherError, match="same SEED"):
        check_launch(cfg, Launch(1, 2, 0, "tcp://127.0.0.1:1234"))
    run = tmp_path / "run"
    recorded = lambda: int((run / "config.yaml").read_text().split("\nSEED: ")[1].split()[0])
    run_train_baseline(tiny_cfg(run, "SEED", "-1", "SOLVER.MAX_ITER", "1", val=False))
    seed = recorded()
    assert seed >= 0
    # Resumed from a config that says "random" again (a preset), the run keeps the seed it drew.
    run_train_baseline(tiny_cfg(run, "SEED", "-1", "SOLVER.MAX_ITER", "2", val=False), resume=True)
    assert recorded() == seed and _iterations(run) == [0, 1]
