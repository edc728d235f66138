"""COCO evaluation of a model or a checkpoint: bbox and segm AP on DATASETS.TEST.

- `coco_evaluate(cfg, model, output_dir)`: what the trainers call every TEST.EVAL_PERIOD (and at the
  end); detectron2's `DefaultTrainer.test` with the mask-scoring COCO evaluator.
- `evaluate_checkpoint(cfg, weights, which)`: one worker's part of `politeteacher eval`.
- `run_evaluate(cfg, weights, ...)`: the whole command (datasets resolved, workers launched); returns
  {dataset: {"bbox": {...}, "segm": {...}}} and writes `eval_results.json` plus the raw COCO results
  (`<dataset>/coco_instances_results.json`) and the plots (`<dataset>/ap_per_class.png`,
  `<dataset>/pr_curves.png`) into the output folder.
- `format_results(results, per_category)`: the AP tables as text.
"""
from __future__ import annotations

import json
import logging
import math
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Mapping, Optional

import torch
from detectron2.evaluation import inference_on_dataset, print_csv_format
from detectron2.utils import comm

from ..data.checks import check_evaluation_data
from ..data.datasets import apply_dataset_classes, register_all
from ..data.loaders import build_test_loader
from ..engine.checkpoint import resolve_weights
from ..engine.launch import Launch, check_launch, close_log_files, launch_workers, prints_to_log, setup_logging
from ..engine.progress import EvalProgress
from ..errors import PoliteTeacherError
from ..io import atomic_write_text, writable_folder
from ..modeling.build import build_inference_model
from .coco import MaskScoringCOCOEvaluator
from .plot import plot_eval

logger = logging.getLogger(__name__)

EVAL_RESULTS = "eval_results.json"
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
TASKS = ("bbox", "segm")


def build_evaluator(cfg, dataset_name: str, output_dir: Optional[str] = None):
    """Mask-scoring COCO evaluator (bbox ranked by `scores`, segm by `mask_scores`)."""
    return MaskScoringCOCOEvaluator(dataset_name, tasks=TASKS, distributed=True, output_dir=output_dir)


def coco_evaluate(
    cfg, model: torch.nn.Module, output_dir: Optional[str] = None, label: str = "", plots: bool = False
) -> Dict[str, dict]:
    """Evaluate `model` on every dataset of DATASETS.TEST; call it in every worker.

    Returns {"bbox": {...}, "segm": {...}} for one test dataset, {dataset: {...}} for several (as
    detectron2's DefaultTrainer.test, so the eval hook writes "segm/AP" to metrics.json); {} on
    ranks other than the main one. With `output_dir`, each dataset's raw COCO results go to
    `output_dir/<dataset>/coco_instances_results.json`, and with `plots` too the per-class AP bar
    chart and the precision-recall curves (`plot.plot_eval`). Progress shows as a bar or two lines
    (named `label` and the dataset); the evaluator's tables and pycocotools' prints go to log.txt.
    """
    results: Dict[str, dict] = OrderedDict()
    for name in cfg.DATASETS.TEST:
        out = str(Path(output_dir) / name) if output_dir else None
        loader = build_test_loader(cfg, name)
        evaluator = build_evaluator(cfg, name, out)
        progress = EvalProgress(f"{label} on {name}" if label else name, len(loader))
        with prints_to_log():
            res = inference_on_dataset(model, loader, evaluator, callbacks=progress.callbacks)
        progress.done()
        results[name] = res
        if comm.is_main_process():
            logger.info("Evaluation results for %s in csv format:", name, extra={"log_only": True})
            print_csv_format(res)
            if plots and out and getattr(evaluator, "precisions", None):
                for path in plot_eval(evaluator.precisions, evaluator.class_names, Path(out)):
                    logger.info("Plot: %s", path)
    if not comm.is_main_process():
        return {}
    if len(results) == 1:
        return next(iter(results.values()))
    return dict(results)


def by_dataset(cfg, results: Mapping) -> Dict[str, dict]:
    """`coco_evaluate`'s results keyed by dataset name, whatever the number of test datasets."""
    if len(cfg.DATASETS.TEST) == 1 and set(results) <= set(TASKS):
        return {cfg.DATASETS.TEST[0]: dict(results)}
    return dict(results)


def _json_safe(obj):
    """NaN/inf (e.g. APs when there are no small objects) become null in JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_results(path: Path, results: Mapping, **info) -> Path:
    """Write {**info, "results": {dataset: {task: {metric: value}}}} as JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(_json_safe({**info, "results": results}), indent=2))


def eval_datasets(cfg):
    """A copy of `cfg` ready to evaluate on DATASETS.TEST (or DATASETS.CUSTOM.VAL_*): test sets
    registered and checked, classes taken from the test set. The training set is not needed (it may
    be absent on the machine that evaluates): the class count must match the checkpoint anyway."""
    cfg = cfg.clone()
    cfg.defrost()
    custom = cfg.DATASETS.CUSTOM
    custom.TRAIN_JSON, custom.TRAIN_IMAGES = "", ""
    cfg.DATASETS.UNLABELED_IMAGE_DIRS = []
    if custom.VAL_JSON or custom.VAL_IMAGES:
        cfg.DATASETS.TEST = ("custom_val",)
    if not cfg.DATASETS.TEST:
        raise PoliteTeacherError("no test dataset: set DATASETS.TEST, or pass --val-json and --val-images")
    cfg.DATASETS.TRAIN = tuple(cfg.DATASETS.TEST)[:1]
    return check_evaluation_data(apply_dataset_classes(register_all(cfg)))


def evaluate_checkpoint(cfg, weights: str, which: str = "teacher") -> Dict[str, dict]:
    """One worker's part of `politeteacher eval` (see `run_evaluate`); {} on other ranks."""
    register_all(cfg)
    model = build_inference_model(cfg, weights, which)
    results = coco_evaluate(cfg, model, cfg.OUTPUT_DIR, plots=True)
    if not comm.is_main_process():
        return {}
    results = by_dataset(cfg, results)
    write_results(Path(cfg.OUTPUT_DIR) / EVAL_RESULTS, results, weights=str(weights), model=which)
    return results


def run_evaluate(
    cfg,
    weights: str,
    which: str = "teacher",
    launch: Launch = Launch(),
) -> Dict[str, dict]:
    """`politeteacher eval`: evaluate `weights` on DATASETS.TEST; results go to cfg.OUTPUT_DIR.

    Returns {dataset: {"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<class>"...},
    "segm": {...}}} (values in percent; NaN where COCO defines none).
    """
    if not weights:
        raise PoliteTeacherError("no weights to evaluate; pass --weights path/to/model_final.pth")
    weights = resolve_weights(str(weights))
    setup_logging()  # the console, for what checking the data logs before the output folder's log.txt opens
    cfg = eval_datasets(cfg)
    cfg.freeze()
    check_launch(cfg, launch)
    writable_folder(cfg.OUTPUT_DIR, "--output-dir")
    setup_logging(cfg.OUTPUT_DIR)
    try:
        results = launch_workers(evaluate_checkpoint, cfg, launch, weights, which)
    finally:
        close_log_files()
    if results is None:  # several processes: read what the main worker wrote
        path = Path(cfg.OUTPUT_DIR) / EVAL_RESULTS
        results = json.loads(path.read_text())["results"] if path.is_file() else {}
    return results


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.3f}"


def format_results(results: Mapping[str, Mapping], per_category: bool = False) -> str:
    """AP tables (percent, 3 decimals; '-' where COCO defines no value) for each dataset:
    one row per task (bbox, segm), and with `per_category` a bbox/segm AP row per class."""
    lines = []
    for name, res in results.items():
        lines.append(f"{name}:")
        lines.append(f"  {'task':<6}" + "".join(f"{k:>9}" for k in SUMMARY_KEYS))
        for task in TASKS:
            if task in res:
                lines.append(f"  {task:<6}" + "".join(f"{_cell(res[task].get(k)):>9}" for k in SUMMARY_KEYS))
        if per_category:
            cats = [k[3:] for k in res.get("bbox", res.get("segm", {})) if k.startswith("AP-")]
            if cats:
                width = max(8, max(len(c) for c in cats))
                lines.append(f"  {'category':<{width}}" + "".join(f"{t + ' AP':>10}" for t in TASKS if t in res))
                for c in cats:
                    lines.append(f"  {c:<{width}}" + "".join(
                        f"{_cell(res[t].get('AP-' + c)):>10}" for t in TASKS if t in res))
    return "\n".join(lines)
