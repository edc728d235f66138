"""The whole workflow on the generated demo dataset, as a user would run it command by command:

    split --percent 10 → train-baseline → train-ssl --weights <baseline best> → eval (baseline,
    Polite Teacher teacher) → predict on held-out images

Everything goes into one folder (default `runs/demo`); it ends with a baseline-vs-Polite-Teacher table.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

from .config import resolve_config
from .errors import PoliteTeacherError

logger = logging.getLogger(__name__)

BASELINE_PRESET = "demo"
SSL_PRESET = "demo_polite_teacher"


@dataclass
class DemoReport:
    """What the demo wrote and measured: AP per model ({"bbox": AP, "segm": AP}) and paths."""

    ap: Dict[str, Dict[str, float]] = field(default_factory=dict)
    split_file: Path = Path()
    baseline_weights: Path = Path()
    ssl_weights: Path = Path()
    overlays: List[Path] = field(default_factory=list)
    plots: List[Path] = field(default_factory=list)

    def table(self) -> str:
        rows = [f"{'model':<24}{'bbox AP':>9}{'segm AP':>9}"]
        for name, ap in self.ap.items():
            rows.append(f"{name:<24}{ap['bbox']:>9.2f}{ap['segm']:>9.2f}")
        return "\n".join(rows)


def _best(run: Path) -> Path:
    """model_best.pth when evaluation ever produced one, else model_final.pth."""
    best = run / "model_best.pth"
    return best if best.is_file() else run / "model_final.pth"


def _ap(results: Dict[str, dict]) -> Dict[str, float]:
    (res,) = results.values()  # one test dataset: demo_val
    return {task: float(res[task]["AP"]) for task in ("bbox", "segm")}


def run_demo(output_dir: Path = Path("runs/demo"), force: bool = False, overrides: Sequence[str] = ()) -> DemoReport:
    """Run the demo workflow into `output_dir`; `overrides` (KEY VALUE, ...) apply to both trainings
    (e.g. SOLVER.MAX_ITER for a quicker look). Refuses a non-empty folder unless `force`."""
    from .data.splits import make_split
    from .data.synthetic import demo_paths, ensure_demo_dataset
    from .engine.baseline import run_train_baseline
    from .engine.evaluate import run_evaluate
    from .engine.polite_teacher import run_train_ssl
    from .predict import predict

    out = Path(output_dir).resolve()
    if out.is_dir() and any(out.iterdir()) and not force:
        raise PoliteTeacherError(f"{out} is not empty; pass --force to run the demo again there, or another --output-dir")
    out.mkdir(parents=True, exist_ok=True)
    report = DemoReport()

    logger.info("1/6 demo dataset: %s", ensure_demo_dataset())
    report.split_file = out / "split_10pct_seed1.json"
    split = make_split("demo_train", 10, 1)
    split.save(report.split_file)
    logger.info("2/6 split: %d labelled of %d images -> %s", split.num_labeled, split.num_candidates, report.split_file)

    def cfg(preset: str, run: str, *extra: str):
        return resolve_config(preset, overrides=[
            "DATASETS.SPLIT.FILE", str(report.split_file), "OUTPUT_DIR", str(out / run), *extra, *overrides,
        ])

    logger.info("3/6 train-baseline (preset %s)", BASELINE_PRESET)
    run_train_baseline(cfg(BASELINE_PRESET, "baseline"), force=force)
    report.baseline_weights = _best(out / "baseline")

    logger.info("4/6 train-ssl from %s (preset %s)", report.baseline_weights, SSL_PRESET)
    run_train_ssl(cfg(SSL_PRESET, "polite_teacher", "MODEL.WEIGHTS", str(report.baseline_weights)), force=force)
    report.ssl_weights = _best(out / "polite_teacher")

    def run_cfg(run: str, output: str):
        """The resolved config a training run saved (classes included), writing into `output`."""
        return resolve_config(config_file=str(out / run / "config.yaml"), overrides=["OUTPUT_DIR", str(out / output)])

    logger.info("5/6 eval: baseline and the Polite Teacher teacher")
    for name, run, weights in (
        ("baseline", "baseline", report.baseline_weights),
        ("polite_teacher (teacher)", "polite_teacher", report.ssl_weights),
    ):
        report.ap[name] = _ap(run_evaluate(run_cfg(run, f"eval_{run}"), str(weights), "teacher"))

    logger.info("6/6 predict on held-out images")
    _, test_images = demo_paths()["test"]
    predicted = predict(run_cfg("polite_teacher", "predictions"), [str(test_images)], str(report.ssl_weights),
                        out / "predictions", threshold=0.5, which="teacher")
    report.overlays = predicted.overlays
    report.plots = [p for p in (out / "baseline" / "curves.png", out / "polite_teacher" / "curves.png") if p.is_file()]
    return report
