"""How Polite Teacher weighs the student's losses on pseudo-labels against the supervised ones
(polite_teacher.md §3 step 6), and the NORM_LOSS switch that rescales them."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from detectron2.utils import comm


def pseudo_loss_weights(cfg) -> Dict[str, float]:
    """Weights of the losses on pseudo-labels (§3 step 6): boxes of pseudo-labels give no box
    regression or centerness signal; classification, masks and mask IoU get the unsupervised weight.
    The switches PSEUDO_MASK_LOSSES / PSEUDO_MASKIOU_LOSS set the mask terms to 0."""
    ssl = cfg.SEMISUPERVISED
    w = ssl.UNSUP_LOSS_WEIGHT
    mask_w = w if ssl.PSEUDO_MASK_LOSSES else 0.0
    return {
        "loss_fcos_cls": w,
        "loss_fcos_loc": ssl.PSEUDO_LOC_WEIGHT,
        "loss_fcos_ctr": ssl.PSEUDO_CTR_WEIGHT,
        "loss_mask": mask_w,
        "loss_maskiou": mask_w if ssl.PSEUDO_MASKIOU_LOSS else 0.0,
    }


def combine_losses(
    supervised: Dict[str, torch.Tensor],
    pseudo: Dict[str, torch.Tensor],
    weights: Dict[str, float],
    factors: Optional[Dict[str, float]] = None,
    divisor: float = 1.0,
):
    """Total loss = (Σ supervised losses + Σ weight × factor × pseudo loss) / divisor (factors 1
    and divisor 1 unless the NORM_LOSS switch is on); returns it with every term named (pseudo
    terms get a `_pseudo` suffix and are reported unweighted)."""
    total = sum(supervised.values())
    named = dict(supervised)
    for name, value in pseudo.items():
        factor = factors[name] if factors else 1.0
        total = total + weights[name] * factor * value
        named[f"{name}_pseudo"] = value
    return total / divisor, named


class PseudoLossNorm:
    """The NORM_LOSS switch: each pseudo loss is scaled by EMA(its supervised twin) / EMA(itself).

    The EMAs follow the detached losses averaged over workers (so every worker scales alike),
    start at the first values seen and keep `keep_rate` of their value per step; they are part of
    the trainer's checkpoint, so a resumed run scales as the uninterrupted one."""

    def __init__(self, keep_rate: float):
        self.keep_rate = keep_rate
        self.ema: Dict[str, float] = {}

    def factors(self, supervised: Dict[str, torch.Tensor], pseudo: Dict[str, torch.Tensor]) -> Dict[str, float]:
        values = {k: v.detach().item() for k, v in supervised.items()}
        values.update({f"{k}_pseudo": v.detach().item() for k, v in pseudo.items()})
        if comm.get_world_size() > 1:
            gathered = comm.all_gather(values)
            values = {k: sum(g[k] for g in gathered) / len(gathered) for k in values}
        for k, v in values.items():
            old = self.ema.get(k)
            self.ema[k] = v if old is None else self.keep_rate * old + (1 - self.keep_rate) * v
        # A pseudo loss that has been 0 throughout (e.g. no valid pseudo mask yet) has no scale.
        return {k: self.ema[k] / max(self.ema[f"{k}_pseudo"], 1e-12) for k in pseudo}

    def state_dict(self) -> Dict[str, float]:
        return dict(self.ema)

    def load_state_dict(self, state: Dict[str, float]) -> None:
        self.ema = dict(state)
