import copy

import torch
from torch import nn

from politeteacher.engine.ema import copy_student_to_teacher, ema_update


def _toy():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(2, 2))


def test_copy_makes_an_exact_copy():
    student, teacher = _toy(), _toy()
    for p in student.parameters():
        p.data.add_(1.0)
    copy_student_to_teacher(teacher, student)
    for (k, a), b in zip(teacher.state_dict().items(), student.state_dict().values()):
        assert torch.equal(a, b), k


def test_ema_math_over_parameters_and_buffers():
    student, teacher = _toy(), _toy()
    before = copy.deepcopy(teacher.state_dict())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
        student[1].running_mean.add_(3.0)
        student[1].num_batches_tracked.fill_(7)
    ema_update(teacher, student, keep_rate=0.9)
    after, s = teacher.state_dict(), student.state_dict()
    for k in after:
        if after[k].dtype.is_floating_point:
            torch.testing.assert_close(after[k], 0.9 * before[k] + 0.1 * s[k])
    assert after["1.num_batches_tracked"].item() == 7
    assert not torch.equal(after["0.weight"], before["0.weight"])


def test_ema_reads_through_ddp_wrapper_names():
    student, teacher = _toy(), _toy()

    class FakeDDP(nn.parallel.DistributedDataParallel):
        def __init__(self, module):  # no process group needed to test the unwrapping
            nn.Module.__init__(self)
            self.module = module

    ema_update(teacher, FakeDDP(student), keep_rate=0.0)
    for a, b in zip(teacher.state_dict().values(), student.state_dict().values()):
        assert torch.equal(a, b)
