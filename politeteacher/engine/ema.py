"""The teacher: an exact copy of the student, then an exponential moving average of it."""
from __future__ import annotations

import torch
from torch import nn


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel, so state-dict keys carry no `module.` prefix."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@torch.no_grad()
def copy_student_to_teacher(teacher: nn.Module, student: nn.Module) -> None:
    """Make the teacher an exact copy of the student (the first semi-supervised iteration)."""
    teacher.load_state_dict(_unwrap(student).state_dict(), strict=True)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, keep_rate: float) -> None:
    """teacher = keep_rate * teacher + (1 - keep_rate) * student, over parameters and buffers.

    Integer buffers (e.g. BatchNorm's num_batches_tracked) cannot be averaged and are copied.
    """
    student_state = _unwrap(student).state_dict()
    floats_t, floats_s = [], []
    for name, t in teacher.state_dict().items():
        s = student_state[name]
        if t.dtype.is_floating_point:
            floats_t.append(t)
            floats_s.append(s.detach().to(t.dtype))
        else:
            t.copy_(s)
    if floats_t:
        torch._foreach_mul_(floats_t, keep_rate)
        torch._foreach_add_(floats_t, floats_s, alpha=1.0 - keep_rate)
