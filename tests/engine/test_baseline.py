"""Baseline training: resume at the right iteration with the same optimiser state, CPU workers."""
import json

import pytest
import torch

from politeteacher.data.datasets import register_all
from politeteacher.engine.baseline import BaselineTrainer, prepare_training_cfg, run_train_baseline
from politeteacher.errors import PoliteTeacherError


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
    saved = torch.load(run / "model_final.pth")
    assert saved["iteration"] == 1 and (run / "last_checkpoint").read_text() == "model_final.pth"

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
    _assert_same(state["_trainer"]["optimizer"], saved["trainer"]["_trainer"]["optimizer"], "optimizer")
    assert state["_trainer"]["optimizer"]["state"], "momentum buffers were saved and loaded"
    _assert_same(state["hooks"]["LRScheduler"], saved["trainer"]["hooks"]["LRScheduler"], "scheduler")
    _assert_same(trainer.model.state_dict(), saved["model"], "model")
    del trainer

    run_train_baseline(longer, resume=True)
    assert _iterations(run) == [0, 1, 2, 3]
    assert torch.load(run / "model_final.pth")["iteration"] == 3
    assert "Resuming from" in (run / "log.txt").read_text()


def test_amp_on_cpu_is_refused(tiny_cfg, tmp_path):
    cfg = tiny_cfg(tmp_path / "run", "SOLVER.AMP.ENABLED", "True")
    with pytest.raises(PoliteTeacherError, match="needs a GPU"):
        run_train_baseline(cfg)
    assert not (tmp_path / "run").exists()


def test_batch_must_split_evenly_over_workers(tiny_cfg, tmp_path):
    cfg = tiny_cfg(tmp_path / "run", "SOLVER.IMS_PER_BATCH", "3")
    with pytest.raises(PoliteTeacherError, match="divide evenly"):
        run_train_baseline(cfg, num_gpus=2)


@pytest.mark.slow
def test_two_cpu_workers_train_and_evaluate(tiny_cfg, tmp_path):
    run = tmp_path / "ddp"
    cfg = tiny_cfg(run, "SOLVER.MAX_ITER", "2", "SOLVER.CHECKPOINT_PERIOD", "100", "TEST.EVAL_PERIOD", "0")
    results = run_train_baseline(cfg, num_gpus=2)
    assert _iterations(run) == [0, 1]
    assert torch.load(run / "model_final.pth")["iteration"] == 1
    assert any("segm/AP" in r for r in _records(run))  # the final evaluation reached metrics.json
    assert set(results["custom_val"]) == {"bbox", "segm"}
    assert (run / "log.txt.rank1").is_file()  # the second worker logged on its own
