"""Pre-trained starting weights shipped inside the package, named `politeteacher://<file>`.

`MODEL.WEIGHTS: politeteacher://demo_source_R18_GN.pkl` is a file in the package's `weights/`
folder; detectron2's PathManager resolves the prefix, as it resolves `detectron2://`. Such a file
is a detectron2 model-zoo pickle ({"model": {name: array}, "__author__": ...}) without the
class-specific layers, so detectron2's name-matching loader puts it into a model with any classes,
the way ImageNet weights are loaded: the class layers keep their initialisation.

`pretrained_file_data(state_dict)` is what such a file holds, made from a trained model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Mapping

import torch
from detectron2.utils.file_io import PathHandler, PathManager

PREFIX = "politeteacher://"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
# Layers with one output per class: they do not transfer to a dataset with other classes.
CLASS_SPECIFIC = (
    "proposal_generator.fcos_head.cls_logits.",
    "roi_heads.mask_head.predictor.",
    "roi_heads.maskiou_head.maskiou.",
)


class PackageWeightsHandler(PathHandler):
    """`politeteacher://NAME` -> the package's weights/NAME."""

    def _get_supported_prefixes(self):
        return [PREFIX]

    def _get_local_path(self, path: str, **kwargs) -> str:
        return str(WEIGHTS_DIR / path[len(PREFIX):])

    def _open(self, path: str, mode: str = "r", **kwargs):
        return open(self._get_local_path(path), mode)


if PREFIX not in PathManager._path_handlers:  # noqa: SLF001 (iopath has no public lookup)
    PathManager.register_handler(PackageWeightsHandler())


def pretrained_file_data(state_dict: Mapping[str, torch.Tensor]) -> Dict:
    """The content of a shipped weights file for a model's `state_dict`: the class-specific layers
    left out, floats in float16 (half the size; a starting point needs no more precision)."""
    model = {}
    for name, value in state_dict.items():
        if not name.startswith(CLASS_SPECIFIC):
            value = value.detach().cpu()
            model[name] = (value.half() if value.is_floating_point() else value).numpy()
    return {"model": model, "__author__": "politeteacher", "matching_heuristics": False}


__all__ = ["CLASS_SPECIFIC", "PREFIX", "WEIGHTS_DIR", "pretrained_file_data"]
