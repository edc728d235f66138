"""Comparing training runs: `politeteacher compare RUN...` and the end of a `train-ssl --sweep`.

`compare_runs(run_dirs)` reads each run folder (metrics.json, config.yaml, eval_results.json) into a
`RunSummary`: the best and final AP of each model (teacher, student, or the baseline's one model),
the pseudo-label statistics averaged over the run, and the config keys whose values differ between
the runs. `format_comparison` prints it as tables; `plot_ap_curves` draws the runs' AP curves.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from matplotlib.figure import Figure

from ..engine.run_dir import saved_config
from ..errors import PoliteTeacherError
from ..io import writable_folder
from .plot import all_series, distinct_colours, read_metrics, run_names, save_png

AP_CURVES_FILE = "ap_curves.png"
# "teacher/segm/AP", "student/bbox/AP", "segm/AP" (a baseline), "teacher/<dataset>/segm/AP" (several test sets)
_AP = re.compile(r"^(?:(?P<model>teacher|student)/)?(?:(?P<dataset>.+)/)?(?P<task>bbox|segm)/AP$")
MODELS = ("teacher", "student", "model")
TASKS = ("segm", "bbox")
PSEUDO_STATS = (
    ("pseudo/boxes_per_image", "pseudo/img"),
    ("pseudo/valid_mask_fraction", "valid masks"),
    ("pseudo/box_precision", "box P"),
    ("pseudo/box_recall", "box R"),
    ("pseudo/mask_precision", "mask P"),
    ("pseudo/mask_recall", "mask R"),
)
# Config keys that always differ between runs and say nothing about the method.
_IGNORED_KEYS = ("OUTPUT_DIR",)


@dataclass
class RunSummary:
    name: str
    folder: Path
    # {(model, task): (best, iteration of the best, final)}; model is "teacher", "student" or "model"
    ap: Dict[Tuple[str, str], Tuple[float, int, float]] = field(default_factory=dict)
    # {statistic: mean over the iterations it was measured at}; absent when never measured
    pseudo: Dict[str, float] = field(default_factory=dict)
    # AP curves: {(model, task): [(iteration, AP), ...]}
    curves: Dict[Tuple[str, str], List[Tuple[int, float]]] = field(default_factory=dict)
    config: Dict[str, object] = field(default_factory=dict)


@dataclass
class Comparison:
    runs: List[RunSummary]
    differing: Dict[str, List[object]]  # config key -> its value in each run (None: not set)

    def columns(self) -> List[Tuple[str, str]]:
        """The (model, task) pairs any run has: segm first, teacher before student."""
        have = {k for r in self.runs for k in r.ap}
        return [(m, t) for t in TASKS for m in MODELS if (m, t) in have]


def _flatten(tree, prefix: str = "") -> Dict[str, object]:
    out: Dict[str, object] = {}
    for k, v in (tree or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _final_results(run_dir: Path) -> Dict[Tuple[str, str], float]:
    """AP of eval_results.json (the evaluation after training), for runs whose metrics.json lacks it."""
    path = run_dir / "eval_results.json"
    try:
        results = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    out = {}
    for first, value in results.items():
        # {"teacher": {task: ...}} (or {"teacher": {dataset: {task: ...}}}) for Polite Teacher,
        # {dataset: {task: ...}} for a baseline; the first test dataset counts
        model = first if first in ("teacher", "student") else "model"
        if model != "model" and isinstance(value, dict) and not set(value) <= set(TASKS):
            value = next(iter(value.values()), {})
        for task in TASKS:
            ap = value.get(task, {}).get("AP") if isinstance(value, dict) else None
            if isinstance(ap, (int, float)) and math.isfinite(ap):
                out.setdefault((model, task), float(ap))
    return out


def summarize_run(run_dir: Path, name: Optional[str] = None) -> RunSummary:
    """What `compare` reports of one run folder (see module doc)."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.json"
    if not _is_run(run_dir):
        raise PoliteTeacherError(f"{run_dir} holds no metrics.json or eval_results.json; pass the folder of a training run")
    summary = RunSummary(name or run_dir.name, run_dir, config=_flatten(saved_config(run_dir)))
    series = all_series(read_metrics(metrics)) if metrics.is_file() else {}
    for key, pts in series.items():
        m = _AP.match(key)
        if m:
            model, task = m.group("model") or "model", m.group("task")
            summary.curves.setdefault((model, task), pts)  # the first test dataset when there are several
    for key, pts in summary.curves.items():
        best_it, best = max(pts, key=lambda p: (p[1], -p[0]))
        summary.ap[key] = (best, best_it, pts[-1][1])
    for key, final in _final_results(run_dir).items():
        summary.ap.setdefault(key, (final, -1, final))
    for key, _ in PSEUDO_STATS:
        values = [v for _, v in series.get(key, [])]
        if values:
            summary.pseudo[key] = sum(values) / len(values)
    return summary


def _is_run(folder: Path) -> bool:
    return (folder / "metrics.json").is_file() or (folder / "eval_results.json").is_file()


def expand_runs(run_dirs: Sequence[Path | str]) -> List[Path]:
    """The run folders named, a folder holding runs (a `--sweep`'s) standing for its runs, sorted."""
    out: List[Path] = []
    for d in map(Path, run_dirs):
        if not d.is_dir():
            raise PoliteTeacherError(f"run folder {d} not found; pass folders of training runs")
        inner = sorted(p for p in d.iterdir() if p.is_dir() and _is_run(p))
        out += inner if inner and not _is_run(d) else [d]
    return out


def compare_runs(run_dirs: Sequence[Path | str]) -> Comparison:
    """Summaries of the runs (see `expand_runs`) and the config keys whose values differ between them."""
    run_dirs = expand_runs(run_dirs)
    runs = [summarize_run(d, n) for d, n in zip(run_dirs, run_names(run_dirs))]
    keys = sorted({k for r in runs for k in r.config} - set(_IGNORED_KEYS))
    differing = {}
    for k in keys:
        values = [r.config.get(k) for r in runs]
        if any(v != values[0] for v in values[1:]):
            differing[k] = values
    return Comparison(runs, differing)


def _cell(v: Optional[float], fmt: str = "{:.2f}") -> str:
    return "-" if v is None or not math.isfinite(v) else fmt.format(v)


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    line = lambda cells: "  ".join(f"{c:<{w}}" if i == 0 else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cells, widths)))
    return [line(header), *(line(r) for r in rows)]


def format_comparison(c: Comparison) -> str:
    """The comparison as text: AP (best, at which iteration, final), pseudo-labels (means over the
    run; '-' where never measured) and the differing config keys."""
    lines: List[str] = []
    cols = c.columns()
    if cols:
        lines.append("AP (%): best @ iteration / final")
        header = ["run"] + [t if m == "model" else f"{m} {t}" for m, t in cols]
        rows = []
        for r in c.runs:
            row = [r.name]
            for key in cols:
                best, it, final = r.ap.get(key, (None, -1, None))
                row.append("-" if best is None else
                           _cell(best) + (f" @{it}" if it >= 0 else "") + " / " + _cell(final))
            rows.append(row)
        lines += _table(header, rows)
    stats = [(k, label) for k, label in PSEUDO_STATS if any(k in r.pseudo for r in c.runs)]
    if stats:
        lines += ["", "pseudo-labels (mean over the run):"]
        lines += _table(["run"] + [label for _, label in stats],
                        [[r.name] + [_cell(r.pseudo.get(k), "{:.3g}") for k, _ in stats] for r in c.runs])
    if c.differing:
        lines += ["", "config keys that differ:"]
        lines += _table(["key"] + [r.name for r in c.runs],
                        [[k] + ["-" if v is None else str(v) for v in values] for k, values in c.differing.items()])
    elif len(c.runs) > 1:
        lines += ["", "the runs' configs are the same (but for OUTPUT_DIR)"]
    return "\n".join(lines)


def draw_ap_curves(c: Comparison):
    """A panel per task: each run's AP curves, a colour per run, teacher solid, student dashed, a
    baseline's model dotted."""
    tasks = [t for t in TASKS if any(k[1] == t for r in c.runs for k in r.curves)]
    if not tasks:
        raise PoliteTeacherError("none of the runs recorded an AP yet; compare again once they have evaluated")
    fig = Figure(figsize=(7.0 * len(tasks), 4.5))
    axes = fig.subplots(1, len(tasks), squeeze=False)
    style = {"teacher": "-", "student": "--", "model": ":"}
    for ax, task in zip(axes.flat, tasks):
        for r, colour in zip(c.runs, distinct_colours(len(c.runs))):
            for model in MODELS:
                pts = r.curves.get((model, task))
                if pts:
                    xs, ys = zip(*pts)
                    ax.plot(xs, ys, style[model], color=colour, marker="o", markersize=3,
                            label=f"{r.name} ({model})" if model != "model" else r.name)
        ax.set_title(f"{task} AP")
        ax.set_xlabel("iteration")
        ax.set_ylabel("AP (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_ap_curves(c: Comparison, out: Path | str) -> Path:
    """`draw_ap_curves` written to the PNG `out`."""
    out = Path(out)
    writable_folder(out.parent, "--output-dir")
    return save_png(draw_ap_curves(c), out)


def default_compare_dir(run_dirs: Sequence[Path | str], root: Path = Path("runs")) -> Path:
    """runs/compare/<run>+<run>+...: where `compare` writes its plot unless told."""
    return root / "compare" / "+".join(n.replace("/", "_") for n in run_names([Path(d) for d in run_dirs]))
