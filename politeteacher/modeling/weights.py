"""Loading CenterMask weights from plain state dicts, detectron2 checkpoints and Polite Teacher
two-model checkpoints (centermask.md §7), and ImageNet weights of the bottom-up network alone
(CenterMask2's VoVNet / MobileNetV2 ``.pth`` files, vovnet.md §9.3)."""
from __future__ import annotations

import os
from pathlib import Path
import pickle
from collections import OrderedDict
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from detectron2.utils.file_io import PathManager
from torch import nn

from ..errors import PoliteTeacherError

__all__ = [
    "check_model_zoo_pickle",
    "extract_model_state_dict",
    "load_backbone_weights",
    "load_centermask_weights",
    "load_pretrained_weights",
]

_PREFIXES = {"teacher": "modelTeacher.", "student": "modelStudent."}
# Input normalisation that older detectron2 versions saved with the model (vovnet.md §9.3); the config holds it.
_NOT_WEIGHTS = ("pixel_mean", "pixel_std")
_BOTTOM_UP = "backbone.bottom_up."


def weights_file(path: Union[str, os.PathLike]) -> str:
    """`path` (user-expanded, absolute) when it is a file; otherwise the one error every command gives
    for missing weights."""
    local = Path(path).expanduser()
    if not local.is_file():
        raise PoliteTeacherError(f"weights file {path} not found; pass an existing .pth/.pkl checkpoint")
    return str(local.resolve())


def _read(path: Union[str, os.PathLike]) -> Any:
    path = os.fspath(path)
    path = weights_file(PathManager.get_local_path(path) if "://" in path else path)
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
        if not isinstance(v, torch.Tensor) or k in _NOT_WEIGHTS:
            continue  # e.g. metadata entries of a pickled checkpoint
        out[k] = v
    return out


def _check_fit(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], name: str, what: str,
               hint: str) -> None:
    """Raise a one-line PoliteTeacherError unless ``state`` has exactly the keys and shapes of ``expected``."""
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
        raise PoliteTeacherError(f"{name} does not fit this {what} ({'; '.join(parts)}); {hint}")


def _source(
    path_or_state_dict: Union[str, os.PathLike, Mapping[str, Any]], which: str
) -> Tuple[str, "OrderedDict[str, torch.Tensor]"]:
    """(name for messages, model state dict) of a checkpoint file or an in-memory checkpoint."""
    if isinstance(path_or_state_dict, Mapping):
        return "state dict", extract_model_state_dict(path_or_state_dict, which)
    path = os.fspath(path_or_state_dict)
    return f"checkpoint {path}", extract_model_state_dict(_read(path), which)


def _load_model(model: nn.Module, name: str, state: Mapping[str, torch.Tensor]) -> Dict[str, int]:
    _check_fit(model.state_dict(), state, name, "CenterMask model",
               "use a checkpoint of the same config (backbone depth, channels, number of classes)")
    model.load_state_dict(state, strict=True)
    return {"loaded": len(state)}


def _load_backbone(model: nn.Module, name: str, state: Mapping[str, torch.Tensor]) -> Dict[str, int]:
    target = model.backbone.bottom_up
    state = {k[len(_BOTTOM_UP):] if k.startswith(_BOTTOM_UP) else k: v for k, v in state.items()}
    _check_fit(target.state_dict(), state, name, "backbone",
               "use ImageNet weights of the backbone that MODEL.VOVNET.CONV_BODY / MODEL.BACKBONE.NAME name")
    target.load_state_dict(state, strict=True)
    return {"loaded": len(state)}


def load_centermask_weights(
    model: nn.Module,
    path_or_state_dict: Union[str, os.PathLike, Mapping[str, Any]],
    which: str = "teacher",
) -> Dict[str, int]:
    """Load weights into ``model`` (a CenterMask, possibly DDP-wrapped) strictly: every key of the
    model must be in the checkpoint with the same shape, and nothing else (``pixel_mean`` /
    ``pixel_std`` entries of old checkpoints are ignored).

    Raises PoliteTeacherError (one line) when the checkpoint belongs to a different model.
    Returns {"loaded": number of tensors}.
    """
    return _load_model(model, *_source(path_or_state_dict, which))


def load_backbone_weights(
    model: nn.Module, path_or_state_dict: Union[str, os.PathLike, Mapping[str, Any]]
) -> Dict[str, int]:
    """Load ImageNet weights of the bottom-up network alone into ``model.backbone.bottom_up``,
    strictly: every bottom-up tensor must be there, and nothing else. Keys may carry the
    ``backbone.bottom_up.`` prefix of a CenterMask checkpoint or none (CenterMask2's backbone files
    are loaded by plain name matching, so the prefix depends on how a file was made). The FPN and the
    heads keep their initialisation. Returns {"loaded": number of tensors}."""
    return _load_backbone(model, *_source(path_or_state_dict, "teacher"))


def load_pretrained_weights(
    model: nn.Module, path_or_state_dict: Union[str, os.PathLike, Mapping[str, Any]], which: str = "teacher"
) -> Dict[str, Any]:
    """A whole CenterMask checkpoint (as :func:`load_centermask_weights`) or, when it holds bottom-up
    weights only, an ImageNet backbone file (as :func:`load_backbone_weights`).
    Returns {"loaded": number of tensors, "part": "model" or "backbone"}."""
    name, state = _source(path_or_state_dict, which)
    # A whole model has FPN or head weights; a backbone file has bottom-up names only (prefixed or bare).
    whole = any(k.startswith(("proposal_generator.", "roi_heads.")) or
                (k.startswith("backbone.") and not k.startswith(_BOTTOM_UP)) for k in state)
    if whole:
        return {**_load_model(model, name, state), "part": "model"}
    return {**_load_backbone(model, name, state), "part": "backbone"}
