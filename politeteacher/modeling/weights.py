"""Loading CenterMask weights from plain state dicts, detectron2 checkpoints and Polite Teacher
two-model checkpoints (centermask.md §7)."""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from ..errors import PoliteTeacherError

__all__ = ["check_model_zoo_pickle", "extract_model_state_dict", "load_centermask_weights"]

_PREFIXES = {"teacher": "modelTeacher.", "student": "modelStudent."}


def _read(path: Union[str, os.PathLike]) -> Any:
    path = os.fspath(path)
    if path.startswith("detectron2://") or "://" in path:
        from detectron2.utils.file_io import PathManager

        path = PathManager.get_local_path(path)
    if not os.path.isfile(path):
        raise PoliteTeacherError(f"checkpoint {path} not found; pass an existing .pth/.pkl file")
    try:
        if path.endswith(".pkl"):
            with open(path, "rb") as f:
                return pickle.load(f, encoding="latin1")
        return torch.load(path, map_location="cpu")
    except Exception as e:  # unreadable file of any kind: one line for the user
        raise PoliteTeacherError(
            f"checkpoint {path} could not be read ({e.__class__.__name__}); is it a torch/pickle file?"
        ) from e


def _zoo_arrays(data: Any) -> Optional[Mapping]:
    """What detectron2's DetectionCheckpointer loads from a .pkl's content: ``model`` of its own
    model-zoo files, else Caffe2's ``blobs`` or the whole dict (ImageNet backbones) without the
    ``*_momentum`` entries; None when that is no dict."""
    if not isinstance(data, Mapping):
        return None
    if "model" in data and "__author__" in data:
        arrays = data["model"]
    else:
        arrays = data.get("blobs", data)
        if isinstance(arrays, Mapping):
            arrays = {k: v for k, v in arrays.items() if not str(k).endswith("_momentum")}
    return arrays if isinstance(arrays, Mapping) else None


def _not_model_zoo(path: str, why: str) -> PoliteTeacherError:
    return PoliteTeacherError(
        f"weights file {path} is not a detectron2 / Caffe2 model-zoo pickle ({why}): pass one "
        "(e.g. ImageNet R-50.pkl), a CenterMask .pth checkpoint, or --weights none"
    )


def check_model_zoo_pickle(path: Union[str, os.PathLike]) -> None:
    """A one-line PoliteTeacherError naming ``path`` unless it is a pickle that detectron2's
    checkpointer loads: a non-empty dict of arrays (found as in :func:`_zoo_arrays`)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    except Exception as e:  # a file of any content can be passed: whatever fails is the reason
        text = str(e).strip().splitlines()
        raise _not_model_zoo(path, f"{e.__class__.__name__}: {text[0]}" if text else e.__class__.__name__) from e
    arrays = _zoo_arrays(data)
    if not arrays:
        raise _not_model_zoo(path, f"it holds a {type(data).__name__} without weights")
    odd = next((k for k, v in arrays.items() if not isinstance(v, (np.ndarray, torch.Tensor))), None)
    if odd is not None:
        raise _not_model_zoo(path, f"its entry {odd!r} is a {type(arrays[odd]).__name__}, not an array")


def extract_model_state_dict(
    checkpoint: Mapping[str, Any], which: str = "teacher"
) -> "OrderedDict[str, torch.Tensor]":
    """The model's state dict inside ``checkpoint``: a plain state dict, a detectron2 checkpoint
    ({"model": ...}), or a Polite Teacher checkpoint whose keys start with ``modelTeacher.`` /
    ``modelStudent.`` (``which`` picks one). DDP ``module.`` prefixes are stripped."""
    if which not in _PREFIXES:
        raise ValueError(f"which must be 'teacher' or 'student', got {which!r}")
    state = checkpoint
    if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
        state = state["model"]
    if not isinstance(state, Mapping):
        raise PoliteTeacherError(f"checkpoint holds a {type(state).__name__}, not a state dict")
    keys = list(state.keys())
    if any(k.startswith(p) for k in keys for p in _PREFIXES.values()):
        prefix = _PREFIXES[which]
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not state:
            raise PoliteTeacherError(f"checkpoint has no {which} weights (no '{prefix}' keys)")
    out: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for k, v in state.items():
        if k.startswith("module."):
            k = k[len("module."):]
        if isinstance(v, np.ndarray):
            v = torch.from_numpy(v)
        if not isinstance(v, torch.Tensor):
            continue  # e.g. metadata entries of a pickled checkpoint
        out[k] = v
    return out


def load_centermask_weights(
    model: nn.Module,
    path_or_state_dict: Union[str, os.PathLike, Mapping[str, Any]],
    which: str = "teacher",
) -> Dict[str, int]:
    """Load weights into ``model`` (a CenterMask, possibly DDP-wrapped) strictly: every key of the
    model must be in the checkpoint with the same shape, and nothing else.

    Raises PoliteTeacherError (one line) when the checkpoint belongs to a different model.
    Returns {"loaded": number of tensors}.
    """
    source = path_or_state_dict
    name = "state dict" if isinstance(source, Mapping) else f"checkpoint {os.fspath(source)}"
    checkpoint = source if isinstance(source, Mapping) else _read(source)
    state = extract_model_state_dict(checkpoint, which)
    target = model.module if hasattr(model, "module") else model
    expected = target.state_dict()

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches (e.g. {mismatched[0]})")
        raise PoliteTeacherError(
            f"{name} does not fit this CenterMask model ({'; '.join(parts)}); "
            "use a checkpoint of the same config (backbone depth, channels, number of classes)"
        )
    target.load_state_dict(state, strict=True)
    return {"loaded": len(state)}
