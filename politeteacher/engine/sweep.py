"""A grid of training runs over one or two config keys: `train-ssl --sweep KEY=V1,V2,... [--sweep KEY2=...]`.

Each combination is one run, in its own folder under the sweep's folder (the run folder the command
would use without --sweep; the sweep's values are applied after the trailing overrides), named for the values: `BOX_THRESHOLD=0.6`, or
`BOX_THRESHOLD=0.6,UNSUP_LOSS_WEIGHT=2` for two keys. The runs train one after another; every
config is built (and so checked) before the first starts. The sweep ends with `compare`'s table.
"""
from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

from ..config import ConfigError
from ..errors import PoliteTeacherError

MAX_KEYS = 2
_SPEC = re.compile(r"^(?P<key>[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*)=(?P<values>.+)$")

Assignment = List[Tuple[str, str]]  # [(KEY, value), ...] of one run


def parse_sweep(specs: Sequence[str]) -> List[Tuple[str, List[str]]]:
    """`["KEY=v1,v2", ...]` -> [(KEY, [v1, v2]), ...]; one or two keys, each once, two runs or more
    in all. A value with commas (a tuple) goes in brackets: `INPUT.MIN_SIZE_TRAIN=(480,),(640,)`."""
    if len(specs) > MAX_KEYS:
        raise PoliteTeacherError(f"--sweep takes one or two keys, got {len(specs)}; sweep two and fix the others")
    out: List[Tuple[str, List[str]]] = []
    for spec in specs:
        m = _SPEC.match(spec.strip())
        if not m:
            raise PoliteTeacherError(
                f"--sweep {spec!r} is not KEY=V1,V2,...; write e.g. --sweep SEMISUPERVISED.BOX_THRESHOLD=0.5,0.6,0.7")
        values = [v.strip() for v in _split_values(m.group("values"))]
        if not all(values) or len(set(values)) < len(values):
            raise PoliteTeacherError(f"--sweep {spec!r}: the values must be distinct and not empty")
        if m.group("key") in (k for k, _ in out):
            raise PoliteTeacherError(f"--sweep names {m.group('key')} twice; give its values once, comma-separated")
        out.append((m.group("key"), values))
    if math.prod(len(v) for _, v in out) < 2:
        raise PoliteTeacherError("--sweep needs two values or more, e.g. --sweep SEMISUPERVISED.BOX_THRESHOLD=0.5,0.7")
    return out


def _split_values(text: str) -> List[str]:
    """Split at the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return parts + [current]


def grid(axes: Sequence[Tuple[str, List[str]]]) -> List[Assignment]:
    """Every combination of the values, the first key varying slowest."""
    return [list(zip([k for k, _ in axes], combo)) for combo in itertools.product(*(v for _, v in axes))]


def run_name(assignment: Assignment) -> str:
    """The folder name of one run: `LAST_KEY_PART=value[,...]`, the full key when two share a last part;
    characters a file name cannot hold become '_'."""
    short = [k.rsplit(".", 1)[-1] for k, _ in assignment]
    names = short if len(set(short)) == len(short) else [k for k, _ in assignment]
    text = ",".join(f"{n}={v}" for n, (_, v) in zip(names, assignment))
    return re.sub(r"[^\w.,=()+-]", "_", text)


def sweep_configs(cfg, specs: Sequence[str]) -> List[Tuple[Path, object]]:
    """One config per combination of `specs` (see module doc): `cfg` with the run's values, training
    into `cfg.OUTPUT_DIR/<run_name>`. A value the config refuses is a one-line error, before any run."""
    out = []
    for assignment in grid(parse_sweep(specs)):
        run_cfg = cfg.clone()
        run_cfg.defrost()
        try:
            run_cfg.merge_from_list([x for kv in assignment for x in kv])
        except (KeyError, AssertionError, ValueError, TypeError) as e:
            raise ConfigError(f"--sweep: bad config value: {e}") from e
        run_cfg.OUTPUT_DIR = str(Path(cfg.OUTPUT_DIR) / run_name(assignment))
        out.append((Path(run_cfg.OUTPUT_DIR), run_cfg))
    return out


def run_sweep(
    cfg, specs: Sequence[str], train: Callable[[object], Dict], announce: Callable[[str], None] = print
) -> List[Path]:
    """Train the runs of `sweep_configs(cfg, specs)` one after another with `train(cfg)`; returns
    their folders."""
    runs = sweep_configs(cfg, specs)
    for i, (folder, run_cfg) in enumerate(runs, 1):
        announce(f"sweep run {i}/{len(runs)}: {folder.name}")
        train(run_cfg)
    return [folder for folder, _ in runs]
