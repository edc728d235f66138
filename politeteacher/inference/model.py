"""The model for inference, built once from a config and a checkpoint, run on batches of images."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from detectron2.data import transforms as T

from ..engine.checkpoint import load_cpu
from ..errors import PoliteTeacherError
from ..modeling.build import build_inference_model
from ..modeling.weights import weights_file


def read_checkpoint(weights: str) -> Any:
    """A checkpoint's content (tensors memory-mapped, on the CPU), or the path itself for a model-zoo
    pickle (the weights loader reads those); a one-line error when it cannot be read."""
    if weights.endswith(".pkl") or "://" in weights:
        return weights
    weights = weights_file(weights)
    try:
        return load_cpu(weights)
    except Exception as e:  # any file can be passed: whatever fails is the reason
        raise PoliteTeacherError(
            f"checkpoint {weights} could not be read ({type(e).__name__}); is it a .pth file?") from e


def checkpoint_classes(checkpoint: Any, num_classes: int) -> Optional[Tuple[List[str], Dict[int, int]]]:
    """(names, contiguous id -> dataset id) a lean checkpoint carries (`engine.checkpoint.LEAN_KEYS`),
    None when it carries none or not for `num_classes` classes."""
    if not isinstance(checkpoint, dict):
        return None
    names, ids = checkpoint.get("classes"), checkpoint.get("category_ids")
    if not isinstance(names, list) or not isinstance(ids, list) or not len(names) == len(ids) == num_classes:
        return None
    return [str(n) for n in names], {i: int(c) for i, c in enumerate(ids)}


class Predictor:
    """Like detectron2's DefaultPredictor, for batches: `prepare` turns one image (HWC array in
    cfg.INPUT.FORMAT) into the model's input (it runs in loader workers too), `run` takes a list of
    those and returns the Instances of each at its image's size (on the CPU). `predictor(image)` does
    both for one image. Weights are loaded strictly, the teacher or the student of a two-model
    checkpoint; frozen batch norm is folded into the convolutions.

    Images whose padded sizes differ go through the model in separate forward passes: group norm
    statistics cover the padding, so only same-size images give a batch the results each gives alone.
    """

    def __init__(self, cfg, weights: str, which: str = "teacher", checkpoint: Any = None):
        self.cfg = cfg
        self.checkpoint = read_checkpoint(weights) if checkpoint is None else checkpoint
        self.model = build_inference_model(cfg, self.checkpoint, which)
        self.input_format = cfg.INPUT.FORMAT
        self.prepare = InputMaker(cfg)
        self.divisor = max(1, int(getattr(self.model.backbone, "size_divisibility", 1) or 1))

    @torch.no_grad()
    def run(self, inputs: Sequence[Dict[str, Any]]):
        groups = defaultdict(list)
        for i, x in enumerate(inputs):
            h, w = x["image"].shape[-2:]
            groups[(math.ceil(h / self.divisor), math.ceil(w / self.divisor))].append(i)
        out = [None] * len(inputs)
        for members in groups.values():
            batch = [{k: inputs[i][k] for k in ("image", "height", "width")} for i in members]
            for i, result in zip(members, self.model(batch)):
                out[i] = result["instances"].to("cpu")
        return out

    def __call__(self, image: np.ndarray):
        return self.run([self.prepare(image)])[0]


class InputMaker:
    """One image (HWC array) -> the model's input dict: resized as at test time, CHW float tensor,
    with the original height and width. Picklable (no model), for loader workers."""

    def __init__(self, cfg):
        self.min_size, self.max_size = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST

    def __call__(self, image: np.ndarray) -> Dict[str, Any]:
        h, w = image.shape[:2]
        resized = T.ResizeShortestEdge([self.min_size] * 2, self.max_size).get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.astype("float32").transpose(2, 0, 1)))
        return {"image": tensor, "height": h, "width": w}
