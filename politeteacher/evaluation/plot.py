"""Plots of runs and evaluations.

- `plot_run(run_dir)` / `plot_runs(run_dirs, out)`: curves.png from metrics.json (one JSON object per line,
  detectron2's JSONWriter), one panel per question: supervised losses, pseudo-label losses, learning
  rate, AP (teacher and student), pseudo-labels per image and their quality (`pseudo/*`). Several runs
  are overlaid: one colour per run.
- `plot_eval(precisions, class_names, out_dir)`: what `politeteacher eval` draws from COCOeval's precision
  array: the AP of each class (ap_per_class.png) and precision-recall curves (pr_curves.png).

The `draw_*` functions return the matplotlib Figure (tests look at its panels and series).
"""
from __future__ import annotations

import io
import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import matplotlib
import numpy as np
from detectron2.config import CfgNode
from matplotlib.figure import Figure

from ..engine.pseudo_losses import pseudo_loss_weights
from ..engine.run_dir import saved_config
from ..errors import PoliteTeacherError
from ..io import atomic_write, writable_folder

CURVES_FILE = "curves.png"
AP_PER_CLASS_FILE = "ap_per_class.png"
PR_CURVES_FILE = "pr_curves.png"
# COCO summary metrics worth a curve: "segm/AP", "teacher/bbox/AP50", "coco_2017_val/segm/AP75", ...
_AP_KEY = re.compile(r"(^|/)(bbox|segm)/AP(50|75)?$")
# The AP panel shows the main metric only (AP50/AP75 stay in metrics.json and TensorBoard).
_MAIN_AP_KEY = re.compile(r"(^|/)(bbox|segm)/AP$")
# A series with this many points or fewer gets markers: one point draws no line.
SPARSE = 30

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


def _number(v) -> bool:
    """A finite number (null, NaN and infinity are 'not measured' and draw nothing)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def all_series(records: List[dict]) -> Series:
    """{key: [(iteration, value), ...]} for every numeric key, sorted by iteration; when a resumed run
    wrote an iteration again, the later record wins."""
    by_key: Dict[str, Dict[int, float]] = defaultdict(dict)
    for rec in records:
        it = int(rec["iteration"])
        for k, v in rec.items():
            if k != "iteration" and _number(v):
                by_key[k][it] = float(v)
    return {k: sorted(by_key[k].items()) for k in sorted(by_key)}


def curves(records: List[dict]) -> Tuple[Series, Series]:
    """(loss series, AP series) of `all_series`, total_loss first."""
    series = all_series(records)
    losses = {k: series[k] for k in sorted(series, key=lambda k: (k != "total_loss", k)) if "loss" in k}
    aps = {k: v for k, v in series.items() if _AP_KEY.search(k)}
    return losses, aps


# The panels of curves.png: (title, y label, which keys); a panel without series is left out.
PANELS = (
    ("supervised losses", "loss", lambda k: "loss" in k and not k.endswith("_pseudo")),
    ("pseudo-label losses", "loss (unweighted)", lambda k: k.endswith("_pseudo")),
    ("learning rate", "lr", lambda k: k == "lr"),
    ("AP", "AP (%)", lambda k: bool(_MAIN_AP_KEY.search(k))),
    ("pseudo-labels per image", "count", lambda k: k.startswith("pseudo/") and k.endswith("per_image")),
    ("pseudo-label quality", "fraction", lambda k: k.startswith("pseudo/") and k != "pseudo/time"
     and not k.endswith("per_image")),
)


def panels(series: Series) -> List[Tuple[str, str, Series]]:
    """The panels with series for this run: pseudo losses that are 0 throughout (those weighted 0,
    which the student never computes) are left out."""
    out = []
    for title, ylabel, wanted in PANELS:
        chosen = {k: v for k, v in series.items() if wanted(k)}
        if title == "pseudo-label losses":
            chosen = {k: v for k, v in chosen.items() if any(y != 0 for _, y in v)}
        if chosen:
            out.append((title, ylabel, chosen))
    return out


def distinct_colours(n: int):
    """`n` colours, distinct up to 20."""
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def draw_curves(runs: Mapping[str, List[dict]]):
    """The curves of one or several runs ({name: metrics records}) as a Figure: one panel per
    question (`PANELS`), 2 columns. One run: a colour per series; several: a colour per run and a
    line style per series. Log scale where every value drawn is positive; markers on sparse series;
    the legend to the right of the data."""
    series_of = {name: all_series(records) for name, records in runs.items()}
    order: List[Tuple[str, str, List[str]]] = []  # (title, ylabel, keys over all runs)
    for title, ylabel, _ in PANELS:
        keys = sorted({k for s in series_of.values() for t, _, chosen in panels(s) if t == title for k in chosen},
                      key=lambda k: (k != "total_loss", k))
        if keys:
            order.append((title, ylabel, keys))
    if not order:
        raise PoliteTeacherError("no losses, learning rate or AP values to plot yet; plot again once the run has logged")
    ncols = 1 if len(order) == 1 else 2
    nrows = math.ceil(len(order) / ncols)
    fig = Figure(figsize=(7.5 * ncols, 3.6 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    several = len(runs) > 1
    run_colour = dict(zip(runs, distinct_colours(len(runs))))
    styles = ["-", "--", ":", "-."]
    for ax, (title, ylabel, keys) in zip(axes.flat, order):
        key_colour = dict(zip(keys, distinct_colours(len(keys))))
        values = []
        for name, series in series_of.items():
            for i, k in enumerate(keys):
                pts = series.get(k)
                if not pts or (title == "pseudo-label losses" and not any(y != 0 for _, y in pts)):
                    continue
                xs, ys = zip(*pts)
                values += ys
                ax.plot(xs, ys, label=f"{name}: {k}" if several else k,
                        color=run_colour[name] if several else key_colour[k],
                        linestyle=styles[i % len(styles)] if several else "-",
                        linewidth=2.0 if k == "total_loss" else 1.2,
                        marker="o" if len(pts) <= SPARSE else None, markersize=3)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.set_ylabel(ylabel)
        if title != "AP" and values and all(v > 0 for v in values):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    for ax in list(axes.flat)[len(order):]:
        ax.remove()
    fig.suptitle(" vs ".join(runs))
    fig.tight_layout()
    return fig


def save_png(fig, target: Path) -> Path:
    """Write `fig` to the PNG `target` atomically and close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")  # the legends outside the axes included
    return atomic_write(target, lambda f: f.write(buf.getvalue()))


def zero_weighted_losses(run_dir: Path) -> List[str]:
    """The pseudo losses a Polite Teacher run weighted 0 (by its config.yaml): recorded, not drawn."""
    saved = saved_config(run_dir)
    if not saved or not isinstance(saved.get("SEMISUPERVISED"), dict):
        return []
    try:
        weights = pseudo_loss_weights(CfgNode(saved))
    except (AttributeError, KeyError):  # a config of another version: draw everything
        return []
    return [f"{k}_pseudo" for k, w in weights.items() if w == 0]


def _run_records(run_dir: Path) -> List[dict]:
    metrics = run_dir / "metrics.json"
    if not metrics.is_file():
        raise PoliteTeacherError(f"no metrics.json in {run_dir}; pass the folder of a training run")
    hidden = zero_weighted_losses(run_dir)
    return [{k: v for k, v in r.items() if k not in hidden} for r in read_metrics(metrics)]


def run_names(run_dirs: Sequence[Path]) -> List[str]:
    """Short distinct names for runs: their folder names, with the parent's when two share one."""
    names = [Path(d).name for d in run_dirs]
    if len(set(names)) < len(names):
        names = [f"{Path(d).parent.name}/{Path(d).name}" for d in run_dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in run_dirs]
    return names


def plot_runs(run_dirs: Sequence[Path | str], out: Path | str) -> Path:
    """Draw the metrics.json of one or several runs (overlaid) to the PNG `out`; returns its path."""
    run_dirs = [Path(d) for d in run_dirs]
    runs = dict(zip(run_names(run_dirs), (_run_records(d) for d in run_dirs)))
    if not any(runs.values()):
        raise PoliteTeacherError(
            f"{run_dirs[0] / 'metrics.json'} holds no losses or AP values yet; plot again once the run has logged")
    target = Path(out)
    writable_folder(target.parent, "--output-dir")
    return save_png(draw_curves(runs), target)


def plot_run(run_dir: Path | str, out: Path | str | None = None) -> Path:
    """Draw `run_dir/metrics.json` to `run_dir/curves.png` (or `out`); returns the PNG's path."""
    run_dir = Path(run_dir)
    return plot_runs([run_dir], Path(out) if out else run_dir / CURVES_FILE)


# ----------------------------------------------------------------------------------------------
# evaluation plots, from COCOeval's eval["precision"]: [IoU threshold (0.50:0.05:0.95), recall
# (0:0.01:1), class, area (all, small, medium, large), max detections (1, 10, 100)], -1 where undefined


def _masked(precision: np.ndarray) -> np.ndarray:
    """Area 'all', the most detections; undefined (-1) as NaN."""
    p = np.asarray(precision, dtype=float)[:, :, :, 0, -1]
    return np.where(p > -1, p, np.nan)


def _nanmean(a: np.ndarray, axis) -> np.ndarray:
    count = np.sum(~np.isnan(a), axis=axis)
    total = np.nansum(a, axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def class_ap(precision: np.ndarray) -> np.ndarray:
    """COCO AP (%) per class, as detectron2 reports it: mean precision over IoU thresholds and recall
    levels; NaN for a class without ground truth."""
    return 100 * _nanmean(_masked(precision).reshape(-1, np.shape(precision)[2]), axis=0)


def draw_ap_per_class(precisions: Mapping[str, np.ndarray], class_names: Sequence[str]):
    """A horizontal bar per class and task (bbox, segm), the classes top to bottom in their order
    (readable for COCO's 80 too); classes without ground truth are marked n/a."""
    tasks = list(precisions)
    k = np.shape(next(iter(precisions.values())))[2]
    names = list(class_names)[:k] + [str(i) for i in range(len(class_names), k)]
    fig = Figure(figsize=(8.0, max(3.0, 0.18 * k * len(tasks) + 1.2)))
    ax = fig.subplots()
    height = 0.8 / len(tasks)
    y = np.arange(k)
    top = 0.0
    for i, (task, colour) in enumerate(zip(tasks, distinct_colours(len(tasks)))):
        ap = class_ap(precisions[task])
        top = max(top, float(np.nanmax(ap, initial=0.0)))
        offset = (i - (len(tasks) - 1) / 2) * height
        ax.barh(y + offset, np.nan_to_num(ap), height, label=task, color=colour)
        for j in np.flatnonzero(np.isnan(ap)):
            ax.text(0.5, y[j] + offset, "n/a", va="center", fontsize=6)
    ax.set_yticks(y)
    ax.set_yticklabels(names, fontsize=8 if k <= 30 else 6)
    ax.set_ylim(k - 0.5, -0.5)  # the first class at the top, no margins
    ax.set_xlim(0, max(10.0, 1.1 * top))  # room for the n/a marks when every AP is 0
    ax.set_xlabel("AP (%)")
    ax.set_title("AP per class (IoU 0.50:0.95)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def draw_pr_curves(precisions: Mapping[str, np.ndarray]):
    """A panel per task: precision against recall, averaged over the classes, at IoU 0.50, 0.75 and
    over 0.50:0.95 (the COCO AP is the area under the last)."""
    fig = Figure(figsize=(5.5 * len(precisions), 4.2))
    axes = fig.subplots(1, len(precisions), squeeze=False)
    for ax, (task, precision) in zip(axes.flat, precisions.items()):
        p = _masked(precision)  # [T, R, K]
        recall = np.linspace(0, 1, p.shape[1])
        curves_ = {"IoU 0.50": _nanmean(p[0], axis=1), "IoU 0.75": _nanmean(p[min(5, len(p) - 1)], axis=1),
                   "IoU 0.50:0.95": _nanmean(_nanmean(p, axis=0), axis=1)}
        for (label, prec), colour in zip(curves_.items(), distinct_colours(3)):
            ax.plot(recall, prec, label=label, color=colour)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_title(f"{task}: precision-recall (mean over classes)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_eval(precisions: Mapping[str, np.ndarray], class_names: Sequence[str], out_dir: Path) -> List[Path]:
    """ap_per_class.png and pr_curves.png in `out_dir` from COCOeval's precision arrays {task: array}."""
    if not precisions:
        return []
    out_dir = writable_folder(out_dir, "--output-dir")
    return [save_png(draw_ap_per_class(precisions, class_names), out_dir / AP_PER_CLASS_FILE),
            save_png(draw_pr_curves(precisions), out_dir / PR_CURVES_FILE)]
