"""The spec's checkpoint contract and check values (vovnet.md §13), read from copies in ./data.

- key files: ``name<TAB>shape<TAB>param|buffer<TAB>trainable`` rows, ``#`` comments; the backbone file
  has one ``# config: <name> ...`` header per configuration;
- ``vovnet_check_values.json``: sizes and output statistics of hash-filled models (§13.2).
"""
from __future__ import annotations

import ast
import json
import math
import zlib
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch

DATA = Path(__file__).resolve().parent / "data"
CHECK_VALUES = json.loads((DATA / "vovnet_check_values.json").read_text())
# Relative tolerance of mean |x| and max; sum within SUM_TOLERANCE · numel · mean|x| (vovnet.md §13.2).
REL_TOLERANCE = 1e-4
SUM_TOLERANCE = 1e-4

Row = Tuple[str, Tuple[int, ...], str, str]


def _row(line: str) -> Row:
    name, shape, kind, trainable = line.rstrip("\n").split("\t")
    return name, tuple(ast.literal_eval(shape)), kind, trainable


def model_keys(name: str) -> List[Row]:
    """Rows of ``reference_keys_<name>.txt`` (a whole CenterMask model)."""
    lines = (DATA / f"reference_keys_{name}.txt").read_text().splitlines()
    return [_row(line) for line in lines if line.strip() and not line.startswith("#")]


def backbone_keys() -> Dict[str, List[Row]]:
    """Rows of ``reference_keys_vovnet_backbones.txt`` per configuration: the CONV_BODY names,
    ``V-39-eSE+DCN`` (modulated DCN in stages 3-5) and ``MobileNetV2``."""
    blocks: Dict[str, List[Row]] = {}
    current = None
    for line in (DATA / "reference_keys_vovnet_backbones.txt").read_text().splitlines():
        if line.startswith("# config: "):
            current = line[len("# config: "):].split(" ")[0] + ("+DCN" if "STAGE_WITH_DCN" in line else "")
            blocks[current] = []
        elif line.strip() and not line.startswith("#"):
            blocks[current].append(_row(line))
    return blocks


def unit_values(key: str, shape) -> np.ndarray:
    """v in [-1, 1) from the CRC-32 of ``key`` and the splitmix64 finaliser (§13.2 steps 1-3)."""
    n = int(np.prod(shape)) if len(shape) else 1
    x = (np.uint64(zlib.crc32(key.encode("utf-8"))) << np.uint64(32)) + np.arange(n, dtype=np.uint64)
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(11)).astype(np.float64) * 2.0**-53 * 2.0 - 1.0).reshape(shape)


def fill_value(key: str, shape) -> torch.Tensor:
    """The value stored under a state-dict key (§13.2 step 4), float32."""
    v = unit_values(key, shape)
    if key.endswith("running_var"):
        t = 1.25 + 0.25 * v
    elif key.endswith("running_mean"):
        t = 0.1 * v
    elif key.endswith(".scale"):
        t = 1.0 + 0.1 * v
    elif len(shape) >= 2:
        t = v * math.sqrt(6.0 / np.prod(shape[1:]))
    elif key.endswith(".weight"):
        t = 1.0 + 0.1 * v
    else:
        t = 0.1 * v
    return torch.from_numpy(t.astype(np.float32))


def spec_input(key: str, shape) -> torch.Tensor:
    """A fixed input (``input`` or ``roi_input``): v itself, float32."""
    return torch.from_numpy(unit_values(key, shape).astype(np.float32))


def fill_state_dict(module: torch.nn.Module, prefix: str = "") -> Dict[str, torch.Tensor]:
    """Every tensor of ``module``'s state dict filled from its whole-model name (``prefix`` + key)."""
    return {k: fill_value(prefix + k, tuple(v.shape)) for k, v in module.state_dict().items()}


def assert_matches(output: torch.Tensor, expected: dict, what: str) -> None:
    """Shape equal; mean |x| and max within REL_TOLERANCE; sum within SUM_TOLERANCE · n · mean|x|."""
    assert list(output.shape) == expected["shape"], what
    x = output.double()
    mean_abs, total, peak = x.abs().mean().item(), x.sum().item(), x.max().item()
    rel = dict(rel=REL_TOLERANCE, abs=0.0)
    assert mean_abs == pytest.approx(expected["mean_abs"], **rel), f"{what}: mean |x| {mean_abs} vs {expected['mean_abs']}"
    assert peak == pytest.approx(expected["max"], **rel), f"{what}: max {peak} vs {expected['max']}"
    bound = SUM_TOLERANCE * x.numel() * expected["mean_abs"]
    assert abs(total - expected["sum"]) <= bound, f"{what}: sum {total} vs {expected['sum']} (± {bound:.3g})"

