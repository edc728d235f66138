import pytest
import torch
from torch import nn

from politeteacher.config import resolve_config
from politeteacher.engine.optim import build_optimizer
from politeteacher.errors import PoliteTeacherError


def _model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))


def test_sgd_is_the_papers_optimiser():
    cfg = resolve_config("polite_teacher_sup10")
    opt = build_optimizer(cfg, _model())
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["lr"] == 0.006
    norm_groups = [g for g in opt.param_groups if g["weight_decay"] == 0.0]
    assert norm_groups, "no weight decay on normalisation layers (WEIGHT_DECAY_NORM 0)"


def test_adamw_keeps_parameter_groups_and_clipping():
    cfg = resolve_config("demo", overrides=["SOLVER.OPTIMIZER", "ADAMW", "SOLVER.BASE_LR", "0.001"])
    model = _model()
    opt = build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW) and opt.param_groups[0]["lr"] == 0.001
    assert type(opt).__name__ == "AdamWWithGradientClip"  # the preset's SOLVER.CLIP_GRADIENTS applies
    assert any(g["weight_decay"] == 0.0 for g in opt.param_groups)
    with pytest.raises(PoliteTeacherError, match="SGD or ADAMW"):
        build_optimizer(resolve_config("demo", overrides=["SOLVER.OPTIMIZER", "LION"]), model)
