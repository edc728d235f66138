"""Building CenterMask: the model a run trains, and the model that predicts from a checkpoint.

This module is in the package that registers CenterMask's parts with detectron2's registries, so
importing it is all a caller needs before `detectron2.modeling.build_model(cfg)` can build one.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from detectron2.modeling import build_model

from ..errors import PoliteTeacherError
from .fuse import fold_frozen_batchnorm
from .weights import load_centermask_weights

logger = logging.getLogger(__name__)

MODEL_CHOICES = ("teacher", "student")


def build_centermask(cfg, announce: bool = True) -> torch.nn.Module:
    """detectron2's build_model for a politeteacher config; `announce` logs the model's size (once per
    run: Polite Teacher's teacher is the same model again)."""
    model = build_model(cfg)
    if announce:
        n = sum(p.numel() for p in model.parameters())
        logger.info("Model: %s, %.1fM parameters, on %s", cfg.MODEL.META_ARCHITECTURE, n / 1e6, cfg.MODEL.DEVICE)
    return model


def build_inference_model(cfg, weights: Any, which: str = "teacher") -> torch.nn.Module:
    """A CenterMask built from `cfg` with `weights` (a checkpoint's path, or its loaded content) loaded
    strictly (`which` picks the teacher or the student of a two-model checkpoint), in eval mode, frozen
    batch norm folded into the convolutions (for predicting only: its parameters no longer match a
    checkpoint). A checkpoint of another model (other classes, backbone or channels) is a
    PoliteTeacherError."""
    if which not in MODEL_CHOICES:
        raise PoliteTeacherError(f"--model must be teacher or student, got '{which}'")
    model = build_model(cfg)
    load_centermask_weights(model, weights, which=which)
    fold_frozen_batchnorm(model)
    model.eval()
    return model
