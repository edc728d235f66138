"""Loss and AP curves of a run, drawn from its metrics.json (one JSON object per line, detectron2's JSONWriter)."""
from __future__ import annotations

import io
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

from ..errors import PoliteTeacherError
from .checkpoint import atomic_write
from .outputs import writable_folder

CURVES_FILE = "curves.png"
# COCO summary metrics worth a curve: "segm/AP", "teacher/bbox/AP50", "coco_2017_val/segm/AP75", ...
_AP_KEY = re.compile(r"(^|/)(bbox|segm)/AP(50|75)?$")

Series = Dict[str, List[Tuple[int, float]]]


def read_metrics(path: Path) -> List[dict]:
    """The records of a metrics.json; a line cut short by a kill is skipped."""
    records = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "iteration" in rec:
                records.append(rec)
    return records


def curves(records: List[dict]) -> Tuple[Series, Series]:
    """(loss series, AP series), each {key: [(iteration, value), ...]} sorted by iteration. When a
    resumed run wrote an iteration again, the later record wins."""
    losses: Dict[str, Dict[int, float]] = defaultdict(dict)
    aps: Dict[str, Dict[int, float]] = defaultdict(dict)
    for rec in records:
        it = int(rec["iteration"])
        for k, v in rec.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                continue
            if "loss" in k:
                losses[k][it] = float(v)
            elif _AP_KEY.search(k):
                aps[k][it] = float(v)
    order = lambda d: {k: sorted(d[k].items()) for k in sorted(d, key=lambda k: (k != "total_loss", k))}
    return order(losses), order(aps)


def plot_run(run_dir: Path | str, out: Path | str | None = None) -> Path:
    """Draw `run_dir/metrics.json` to `run_dir/curves.png` (or `out`): losses on the left, COCO AP on
    the right. Returns the PNG's path."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        raise PoliteTeacherError(f"no metrics.json in {run_dir}; pass the folder of a training run")
    losses, aps = curves(read_metrics(metrics))
    if not losses and not aps:
        raise PoliteTeacherError(f"{metrics} holds no losses or AP values yet; plot again once the run has logged")
    target = Path(out) if out else run_dir / CURVES_FILE
    writable_folder(target.parent, "--output-dir")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncols = 2 if aps else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.5), squeeze=False)
    ax = axes[0][0]
    for k, pts in losses.items():
        ax.plot(*zip(*pts), label=k, linewidth=2.0 if k == "total_loss" else 1.0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("training losses")
    if losses and all(v > 0 for pts in losses.values() for _, v in pts):
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    if losses:
        ax.legend(fontsize=7)
    if aps:
        ax = axes[0][1]
        for k, pts in aps.items():
            ax.plot(*zip(*pts), marker="o", markersize=3, label=k)
        ax.set_xlabel("iteration")
        ax.set_ylabel("AP (%)")
        ax.set_title("COCO AP")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return atomic_write(target, lambda f: f.write(buf.getvalue()))
