"""The whole workflow on the generated demo dataset, as a user would run it command by command:

    split --percent 10 → train-baseline (T iterations) → train-ssl --weights <baseline at K>
    (T − K iterations) → eval (baseline, Polite Teacher teacher) → predict on held-out images

Both models start from the demo model pre-trained on the generated *source* set (other classes,
another look; `politeteacher://demo_source_R18_GN.pkl`), the offline stand-in for the ImageNet /
COCO pre-training of the paper's regime, and both are trained for T iterations in total: the
baseline supervised only, Polite Teacher K supervised + T − K semi-supervised, where T is the
`demo` preset's SOLVER.MAX_ITER and T − K the `demo_polite_teacher` preset's. Everything goes into
one folder (default `runs/demo`); it ends with a baseline-vs-Polite-Teacher table.

`run_pretrain` makes the pre-trained weights again (`politeteacher demo --pretrain`).
"""
from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from .config import resolve_config
from .data.splits import make_split
from .data.synthetic import demo_paths, ensure_demo_dataset
from .engine.checkpoint import FINAL_NAME
from .engine.launch import setup_logging
from .engine.run import run_train_baseline, run_train_ssl
from .errors import PoliteTeacherError
from .evaluation.evaluate import run_evaluate
from .io import atomic_write
from .modeling.weights import extract_model_state_dict
from .predict import predict
from .pretrained import pretrained_file_data

logger = logging.getLogger(__name__)

BASELINE_PRESET = "demo"
SSL_PRESET = "demo_polite_teacher"
SOURCE_PRESET = "demo_source"
PRETRAINED_NAME = "demo_source_R18_GN.pkl"


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


def _ap(results: Dict[str, dict]) -> Dict[str, float]:
    (res,) = results.values()  # one test dataset: demo_val
    return {task: float(res[task]["AP"]) for task in ("bbox", "segm")}


def run_demo(output_dir: Path = Path("runs/demo"), force: bool = False, overrides: Sequence[str] = ()) -> DemoReport:
    """Run the demo workflow into `output_dir`; `overrides` (KEY VALUE, ...) apply to both trainings
    (e.g. SOLVER.MAX_ITER for a quicker look). Refuses a non-empty folder unless `force`."""
    out = Path(output_dir).resolve()
    if out.is_dir() and any(out.iterdir()) and not force:
        raise PoliteTeacherError(f"{out} is not empty; pass --force to run the demo again there, or another --output-dir")
    out.mkdir(parents=True, exist_ok=True)
    report = DemoReport()

    setup_logging()  # the console, for the steps before the first run's log.txt opens
    logger.info("1/6 demo dataset: %s", ensure_demo_dataset())
    report.split_file = out / "split_10pct_seed1.json"
    split = make_split("demo_train", 10, 1)
    split.save(report.split_file)
    logger.info("2/6 split: %d labelled of %d images -> %s", split.num_labeled, split.num_candidates, report.split_file)

    def cfg(preset: str, run: str, *extra: str):
        return resolve_config(preset, overrides=[
            "DATASETS.SPLIT.FILE", str(report.split_file), "OUTPUT_DIR", str(out / run), *extra, *overrides,
        ])

    baseline_cfg, ssl_cfg = cfg(BASELINE_PRESET, "baseline"), cfg(SSL_PRESET, "polite_teacher")
    total, ssl_iters = baseline_cfg.SOLVER.MAX_ITER, ssl_cfg.SOLVER.MAX_ITER
    start = total - ssl_iters  # Polite Teacher starts from the baseline at K = T - (T - K)
    logger.info("3/6 train-baseline (preset %s, %d iterations)", BASELINE_PRESET, total)
    if start > 0:  # keep the checkpoint Polite Teacher starts from
        baseline_cfg.SOLVER.CHECKPOINT_PERIOD = start
    run_train_baseline(baseline_cfg, force=force)
    report.baseline_weights = out / "baseline" / f"{FINAL_NAME}.pth"
    # With overrides that make the second stage as long as the first (a quick look), it starts
    # from the baseline's end instead.
    start_weights = out / "baseline" / f"model_{start - 1:07d}.pth" if start > 0 else report.baseline_weights

    logger.info("4/6 train-ssl from %s (preset %s, %d iterations)", start_weights, SSL_PRESET, ssl_iters)
    ssl_cfg.MODEL.WEIGHTS = str(start_weights)
    run_train_ssl(ssl_cfg, force=force)
    report.ssl_weights = out / "polite_teacher" / f"{FINAL_NAME}.pth"

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


def run_pretrain(output_dir: Path = Path("runs/demo_source"), force: bool = False, overrides: Sequence[str] = ()) -> Path:
    """`politeteacher demo --pretrain`: train the demo model on the generated source set (preset
    `demo_source`: fully labelled, from random weights; about 80 minutes on 2 CPU cores) into
    `output_dir`, then write its final weights, class-specific layers left out, in float16, to
    `output_dir/demo_source_R18_GN.pkl` and return that path. Copied to the package's `weights/`
    folder (`make demo-weights` does both), it is the file the `demo` preset starts from."""
    out = Path(output_dir).resolve()
    run_train_baseline(resolve_config(SOURCE_PRESET, overrides=["OUTPUT_DIR", str(out), *overrides]), force=force)
    state = extract_model_state_dict(torch.load(out / f"{FINAL_NAME}.pth", map_location="cpu"))
    target = out / PRETRAINED_NAME
    atomic_write(target, lambda f: pickle.dump(pretrained_file_data(state), f, protocol=4))
    logger.info("Pre-trained weights: %s (%.1f MB)", target, target.stat().st_size / 1e6)
    return target
