"""Atomic checkpoint saves, retention, best-checkpoint state and weights resolution."""
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from politeteacher.config import get_politeteacher_cfg
from politeteacher.engine import checkpoint as ck
from politeteacher.engine import hooks
from politeteacher.errors import PoliteTeacherError


class TwoModels(nn.Module):
    """The shape of the semi-supervised wrapper: keys get modelTeacher./modelStudent. prefixes."""

    def __init__(self):
        super().__init__()
        self.modelTeacher = nn.Linear(3, 2)
        self.modelStudent = nn.Linear(3, 2)


def test_atomic_save_writes_file_and_tag_without_tmp(tmp_path):
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    c = ck.AtomicCheckpointer(model, str(tmp_path), optimizer=opt)
    c.save("model_0000009", iteration=9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000009.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"
    data = torch.load(tmp_path / "model_0000009.pth")
    assert data["iteration"] == 9 and set(data) == {"model", "optimizer", "iteration"}
    assert torch.equal(data["model"]["weight"], model.weight)



@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_full_disk_is_one_line_naming_the_file_and_keeps_the_checkpoints(tmp_path):
    # Writes into /dev/full fail with ENOSPC: the checkpoint's temporary file is made one.
    model = nn.Linear(300, 200)
    c = ck.AtomicCheckpointer(model, str(tmp_path))
    c.save("model_0000004", iteration=4)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "model_0000009.pth.tmp").symlink_to("/dev/full")
    with pytest.raises(PoliteTeacherError) as e:
        c.save("model_0000009", iteration=9)
    msg = str(e.value)
    assert "\n" not in msg and "no space left" in msg and str(tmp_path / "model_0000009.pth") in msg
    assert "MiB free" in msg and "--resume" in msg
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no .tmp, nothing changed
    assert torch.load(tmp_path / "model_0000004.pth")["iteration"] == 4

def test_two_model_wrapper_keys_are_prefixed(tmp_path):
    c = ck.AtomicCheckpointer(TwoModels(), str(tmp_path))
    c.save("model_final")
    keys = set(torch.load(tmp_path / "model_final.pth")["model"])
    assert keys == {f"model{w}.{p}" for w in ("Teacher", "Student") for p in ("weight", "bias")}


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    c = ck.AtomicCheckpointer(model, str(tmp_path))
    c.save("model_final", iteration=1)
    before = (tmp_path / "model_final.pth").read_bytes()

    def dies_halfway(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt  # what a Ctrl-C inside torch.save looks like

    monkeypatch.setattr(ck.torch, "save", dies_halfway)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        c.save("model_final", iteration=2)
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert not list(tmp_path.glob("*.tmp"))
    assert torch.load(tmp_path / "model_final.pth")["iteration"] == 1


def test_best_save_does_not_move_last_checkpoint(tmp_path):
    c = ck.AtomicCheckpointer(nn.Linear(3, 2), str(tmp_path))
    c.save("model_0000004")
    c.save("model_best", tag_last=False)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"


def _fake_trainer(max_iter):
    return SimpleNamespace(max_iter=max_iter, iter=0)


def test_retention_keeps_newest_k_also_across_resume(tmp_path):
    c = ck.AtomicCheckpointer(nn.Linear(3, 2), str(tmp_path))
    hook = hooks.PeriodicCheckpointer(c, period=2, max_to_keep=2)
    hook.trainer = _fake_trainer(12)
    hook.before_train()
    for it in range(6):  # saves after iterations 1, 3, 5
        hook.trainer.iter = it
        hook.after_step()
    assert [p.name for p in ck.periodic_checkpoints(tmp_path)] == ["model_0000003.pth", "model_0000005.pth"]
    # A resumed run: a fresh hook still counts the files already in the folder.
    hook = hooks.PeriodicCheckpointer(c, period=2, max_to_keep=2)
    hook.trainer = _fake_trainer(12)
    hook.before_train()
    for it in range(6, 12):
        hook.trainer.iter = it
        hook.after_step()
    names = sorted(p.name for p in tmp_path.glob("*.pth"))
    assert names == ["model_0000009.pth", "model_0000011.pth", "model_final.pth"]


def test_build_checkpoint_hooks_follow_config(tmp_path):
    cfg = get_politeteacher_cfg()
    cfg.SOLVER.CHECKPOINT_PERIOD, cfg.SOLVER.MAX_CHECKPOINTS_KEPT, cfg.TEST.EVAL_PERIOD = 7, 4, 5
    c = ck.AtomicCheckpointer(TwoModels(), str(tmp_path))
    best, periodic = hooks.build_checkpoint_hooks(cfg, c, best_metric="teacher/segm/AP")
    assert isinstance(best, hooks.BestCheckpointer) and best._val_metric == "teacher/segm/AP"
    assert best._period == 5
    assert isinstance(periodic, hooks.PeriodicCheckpointer) and (periodic.period, periodic.keep) == (7, 4)
    cfg.DATASETS.TEST = ("a", "b")
    assert hooks.best_metric_key(cfg) == "a/segm/AP"


def test_best_checkpointer_state_survives_resume(tmp_path):
    from detectron2.utils.events import EventStorage

    c = ck.AtomicCheckpointer(nn.Linear(3, 2), str(tmp_path))
    hook = hooks.BestCheckpointer(10, c, "segm/AP", "max", "model_best")
    with EventStorage(0) as storage:
        hook.trainer = SimpleNamespace(storage=storage, iter=9, max_iter=100)
        storage.iter = 9
        storage.put_scalar("segm/AP", 30.0, smoothing_hint=False)
        hook.after_step()
        assert (tmp_path / "model_best.pth").is_file()
        state = hook.state_dict()
    assert state == {"best_metric": 30.0, "best_iter": 9}
    (tmp_path / "model_best.pth").unlink()
    resumed = hooks.BestCheckpointer(10, c, "segm/AP", "max", "model_best")
    resumed.load_state_dict(state)
    with EventStorage(10) as storage:
        resumed.trainer = SimpleNamespace(storage=storage, iter=19, max_iter=100)
        storage.iter = 19
        storage.put_scalar("segm/AP", 20.0, smoothing_hint=False)  # worse than before the resume
        resumed.after_step()
    assert not (tmp_path / "model_best.pth").exists()


def test_resolve_weights(tmp_path):
    assert ck.resolve_weights("") == ""
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    assert ck.resolve_weights(str(f)) == str(f.resolve())
    with pytest.raises(PoliteTeacherError, match="not found"):
        ck.resolve_weights(str(tmp_path / "missing.pth"))


def test_unreachable_weights_url_is_one_line(monkeypatch):
    from detectron2.utils.file_io import PathManager

    def offline(path, **kw):
        raise OSError("Name or service not known")

    monkeypatch.setattr(PathManager, "get_local_path", offline)
    with pytest.raises(PoliteTeacherError, match="--weights none") as e:
        ck.resolve_weights("detectron2://ImageNetPretrained/MSRA/R-50.pkl")
    assert "\n" not in str(e.value)
