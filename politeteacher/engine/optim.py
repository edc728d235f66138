"""The optimiser: detectron2's SGD (the paper's recipe), or AdamW for small models trained from scratch."""
from __future__ import annotations

import torch
from detectron2.solver import build_optimizer as build_sgd
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping

from ..errors import PoliteTeacherError


def build_optimizer(cfg, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZER "SGD": detectron2's (momentum, weight decay, no decay on norms, clipping).
    "ADAMW": the same parameter groups and clipping with AdamW, which trains the from-scratch demo
    models in hundreds rather than thousands of iterations."""
    name = cfg.SOLVER.OPTIMIZER.upper()
    if name == "SGD":
        return build_sgd(cfg, model)
    if name != "ADAMW":
        raise PoliteTeacherError(f"SOLVER.OPTIMIZER must be SGD or ADAMW, got {cfg.SOLVER.OPTIMIZER!r}")
    params = get_default_optimizer_params(
        model,
        base_lr=cfg.SOLVER.BASE_LR,
        weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
        bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
        weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
    )
    return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
        params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
    )
