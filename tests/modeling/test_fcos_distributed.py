"""FCOS loss normalisers are averaged over workers (gloo, 2 CPU processes)."""
from __future__ import annotations

import pytest
import torch
from detectron2.engine import launch
from detectron2.utils import comm
from fvcore.nn import sigmoid_focal_loss

from politeteacher.modeling.fcos import centerness_target, fcos_losses, giou_loss


def _inputs(rank):
    g = torch.Generator().manual_seed(rank)
    logits = torch.randn(8, 2, generator=g)
    box_reg = torch.rand(8, 4, generator=g) + 0.5
    ctr = torch.randn(8, generator=g)
    reg_targets = torch.rand(8, 4, generator=g) + 0.5
    labels = torch.full((8,), 2)
    labels[: 3 if rank == 0 else 1] = 0  # rank 0: 3 positives, rank 1: 1 positive
    return logits, box_reg, ctr, labels, reg_targets


def _worker(out_file):
    rank = comm.get_rank()
    torch.set_num_threads(1)
    losses = fcos_losses(*_inputs(rank), num_classes=2)
    torch.save({k: v.detach() for k, v in losses.items()}, f"{out_file}.{rank}")
    # Leave together: a worker that exits while its peer still tears down gloo aborts it (SIGABRT).
    comm.synchronize()
    torch.distributed.destroy_process_group()


def test_normalisers_are_averaged_over_workers(tmp_path):
    # Two CPU processes over gloo, started the way the trainers start their workers.
    launch(_worker, 2, dist_url="auto", args=(str(tmp_path / "out"),))
    ctr_sums = []
    for rank in range(2):
        _, _, _, labels, reg_targets = _inputs(rank)
        ctr_sums.append(centerness_target(reg_targets[labels == 0]).sum())
    ctr_avg = (ctr_sums[0] + ctr_sums[1]) / 2
    for rank in range(2):
        got = torch.load(tmp_path / f"out.{rank}")
        logits, box_reg, ctr, labels, reg_targets = _inputs(rank)
        pos = labels == 0
        onehot = torch.zeros_like(logits)
        onehot[pos, 0] = 1
        num_pos_avg = (3 + 1) / 2
        focal = sigmoid_focal_loss(logits, onehot, alpha=0.25, gamma=2.0, reduction="sum")
        assert got["loss_fcos_cls"].item() == pytest.approx(focal.item() / num_pos_avg, rel=1e-5)
        w = centerness_target(reg_targets[pos])
        loc = (giou_loss(box_reg[pos], reg_targets[pos]) * w).sum() / ctr_avg
        assert got["loss_fcos_loc"].item() == pytest.approx(loc.item(), rel=1e-5)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(ctr[pos], w, reduction="sum")
        assert got["loss_fcos_ctr"].item() == pytest.approx(bce.item() / num_pos_avg, rel=1e-5)
