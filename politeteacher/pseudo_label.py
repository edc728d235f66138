"""See the pseudo-labels a checkpoint's teacher makes, and choose the thresholds from data.

    from politeteacher.pseudo_label import pseudo_label, sweep
    report = pseudo_label(cfg, ["shots/"], "runs/ssl/demo/model_final.pth", "out/")
    report = sweep(cfg, "runs/ssl/demo/model_final.pth", "out/", dataset="demo_val")

`pseudo_label` runs the teacher as `train-ssl` does (the weak view, batches of
SOLVER.IMS_PER_BATCH_UNLABELED images, SEMISUPERVISED.TEACHER_POSTPROCESS, and the run's
SEMISUPERVISED.BOX_THRESHOLD / MASK_IOU_THRESHOLD unless others are given) through the function the
trainer calls, `engine.pseudo_labels.teacher_pseudo_labels`. The weak view is training's without its
randomness: the training resize at the largest of INPUT.MIN_SIZE_TRAIN, no flip. It writes:
- `<image stem>.png`: the weak view with valid pseudo-labels (mask and box), invalid masks (box only)
  and rejected detections drawn distinctly (`engine.pseudo_views`);
- `pseudo_labels.json`: a COCO instances file of the pseudo-labels in the images' own coordinates, each
  annotation with `score`, `mask_iou` and `mask_valid` (its mask supervises the student or not);
- `histograms.png`: detection scores and predicted mask IoU, with the thresholds marked.

`sweep` runs the teacher once per annotated image and reports, for a grid of box × mask-IoU
thresholds, the figures of `engine.threshold_sweep` (`sweep.json`, `sweep.png`) and a suggested pair.

The output folder is the one asked for unless it holds earlier results; then the next free numbered
one (`out2`, ...), as `predict` does. Nothing is overwritten; files are written atomically.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data import transforms as T
from tqdm import tqdm

from .data.classes import class_metadata
from .data.datasets import _thing_classes, get_dataset_dicts, register_all
from .data.mappers import WeakMapper
from .engine.pseudo_labels import teacher_pseudo_labels
from .engine.pseudo_views import draw_pseudo_labels, histograms_png, view_rgb
from .engine.threshold_sweep import RULE, ImageEvidence, heatmap_png, suggest, sweep_table
from .errors import PoliteTeacherError
from .inference.outputs import first_free, output_folder, png_bytes
from .inference.sources import collect_inputs
from .io import atomic_write, atomic_write_text, writable_folder
from .modeling import load_centermask_weights
from .modeling.build import build_centermask

logger = logging.getLogger(__name__)

PSEUDO_LABELS_FILE = "pseudo_labels.json"
HISTOGRAMS_FILE = "histograms.png"
SWEEP_FILE = "sweep.json"
HEATMAP_FILE = "sweep.png"
RESULT_FILES = (PSEUDO_LABELS_FILE, HISTOGRAMS_FILE, SWEEP_FILE, HEATMAP_FILE)
# The paper's ranges (box threshold 0.4–0.9, mask-IoU threshold 0–0.9).
DEFAULT_BOX_THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DEFAULT_MASK_IOU_THRESHOLDS = (0.0, 0.5, 0.7, 0.8, 0.9)


@dataclass
class PseudoLabelReport:
    """What `pseudo_label` did: thresholds used, folder, files written, counts, skipped inputs."""

    box_threshold: float
    mask_iou_threshold: float
    output_dir: Optional[Path] = None
    overlays: List[Path] = field(default_factory=list)
    labels_json: Optional[Path] = None
    histograms: Optional[Path] = None
    num_labels: int = 0
    num_valid: int = 0
    num_rejected: int = 0
    skipped: List[Tuple[str, str]] = field(default_factory=list)


@dataclass
class SweepReport:
    """What `sweep` found: one row per grid cell, the suggested row (None when nothing matched) and
    the rule that chose it, and the files written."""

    rows: List[Dict]
    suggested: Optional[Dict]
    rule: str
    num_images: int
    output_dir: Path
    sweep_json: Path
    heatmap: Path


def view_mapper(cfg):
    """The weak view of training without its randomness (see the module doc); ground-truth
    annotations, when a dataset dict has them, become `instances` in the view's coordinates."""
    mapper = WeakMapper(cfg, is_train=True)
    mapper.augmentations = T.AugmentationList(
        [T.ResizeShortestEdge(max(cfg.INPUT.MIN_SIZE_TRAIN), cfg.INPUT.MAX_SIZE_TRAIN)]
    )
    return mapper


def load_teacher(cfg, weights: str, which: str = "teacher"):
    """The model of `weights` (the teacher or the student of a two-model checkpoint) as the trainer
    holds its teacher: built from `cfg`, loaded strictly, in eval mode, batch norm not folded."""
    if which not in ("teacher", "student"):
        raise PoliteTeacherError(f"--model must be teacher or student, got '{which}'")
    model = build_centermask(cfg)
    load_centermask_weights(model, weights, which=which)
    return model.eval()


def _autocast(cfg):
    """The trainer's precision for its teacher: mixed on a GPU with SOLVER.AMP.ENABLED."""
    return torch.autocast("cuda", enabled=cfg.SOLVER.AMP.ENABLED and cfg.MODEL.DEVICE.startswith("cuda"))


def _thresholds(cfg, box_threshold: Optional[float], mask_iou_threshold: Optional[float]) -> Tuple[float, float]:
    ssl = cfg.SEMISUPERVISED
    b = ssl.BOX_THRESHOLD if box_threshold is None else float(box_threshold)
    m = ssl.MASK_IOU_THRESHOLD if mask_iou_threshold is None else float(mask_iou_threshold)
    return b, m


def _batches(mapper, dicts: Sequence[dict], size: int, skipped: List[Tuple[str, str]]) -> Iterator[list]:
    """Lists of up to `size` (dataset dict, model input, transforms); unreadable images are skipped
    (with a warning, into `skipped`)."""
    batch = []
    for d in tqdm(dicts, unit="img", disable=not sys.stderr.isatty(), leave=False):
        try:
            view, image, transforms = mapper._load(d)
        except Exception as e:  # PIL raises several types for a file that is not an image
            reason = f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            logger.warning("skipping %s: %s", d["file_name"], reason)
            skipped.append((str(d["file_name"]), reason))
            continue
        view["image"] = mapper._to_tensor(image)
        batch.append((d, view, transforms))
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _coco_annotations(labels, transforms, image_id: int, to_dataset_id: Dict[int, int], first_id: int) -> List[dict]:
    """The pseudo-labels of one view as COCO annotations in the image's own coordinates."""
    inverse = transforms.inverse()
    labels = labels.to("cpu")
    boxes = inverse.apply_box(labels.gt_boxes.tensor.numpy()) if len(labels) else np.zeros((0, 4))
    out = []
    for i in range(len(labels)):
        mask = inverse.apply_segmentation(labels.gt_masks.tensor[i].numpy().astype(np.uint8))
        rle = mask_util.encode(np.asfortranarray(mask))
        rle["counts"] = rle["counts"].decode("ascii")
        x0, y0, x1, y1 = (float(v) for v in boxes[i])
        out.append({
            "id": first_id + i, "image_id": image_id,
            "category_id": int(to_dataset_id[int(labels.gt_classes[i])]),
            "bbox": [x0, y0, x1 - x0, y1 - y0], "area": float(mask.sum()), "iscrowd": 0,
            "segmentation": rle, "score": float(labels.scores[i]), "mask_iou": float(labels.maskiou[i]),
            "mask_valid": bool(labels.gt_mask_valid[i]),
        })
    return out


def pseudo_label(
    cfg,
    inputs: Sequence[str],
    weights: str,
    output_dir: os.PathLike | str,
    box_threshold: Optional[float] = None,
    mask_iou_threshold: Optional[float] = None,
    which: str = "teacher",
) -> PseudoLabelReport:
    """The pseudo-labels `train-ssl` would make on the images of `inputs` (files, folders, globs) with
    the teacher of `weights`; overlays, COCO JSON and histograms into `output_dir` (module doc)."""
    b, m = _thresholds(cfg, box_threshold, mask_iou_threshold)
    files, skipped = collect_inputs(inputs, "pseudo-label")
    out = writable_folder(output_folder(output_dir, files, RESULT_FILES), "--output-dir")
    names, to_dataset_id = class_metadata(cfg)
    teacher = load_teacher(cfg, weights, which)
    report = PseudoLabelReport(b, m, output_dir=out, skipped=list(skipped))
    images, annotations, scores, mask_ious = [], [], [], []
    dicts = [{"file_name": str(p.resolve()), "image_id": i + 1} for i, p in enumerate(files)]
    size = max(1, cfg.SOLVER.IMS_PER_BATCH_UNLABELED)
    for batch in _batches(view_mapper(cfg), dicts, size, report.skipped):
        views = [view for _, view, _ in batch]
        with _autocast(cfg):
            labels, everything = teacher_pseudo_labels(
                teacher, views, cfg.SEMISUPERVISED.TEACHER_POSTPROCESS, b, m, return_all=True
            )
        for (d, view, transforms), label, dets in zip(batch, labels, everything):
            rejected = dets[dets.scores <= b].to("cpu")
            overlay = out / (first_free(Path(d["file_name"]).stem, lambda n: (out / f"{n}.png").exists()) + ".png")
            rgb = draw_pseudo_labels(view_rgb(view, cfg.INPUT.FORMAT), label, names, rejected)
            atomic_write(overlay, lambda f: f.write(png_bytes(rgb)))
            report.overlays.append(overlay)
            images.append({"id": d["image_id"], "file_name": d["file_name"],
                           "height": int(view["height"]), "width": int(view["width"])})
            annotations += _coco_annotations(label, transforms, d["image_id"], to_dataset_id, len(annotations) + 1)
            scores += dets.scores.tolist()
            mask_ious += label.maskiou.tolist()
            report.num_labels += len(label)
            report.num_valid += int(label.gt_mask_valid.sum())
            report.num_rejected += len(rejected)
            logger.info("%s: %d pseudo-label(s), %d with a valid mask -> %s",
                        d["file_name"], len(label), int(label.gt_mask_valid.sum()), overlay)
    if not images:
        why = "; ".join(f"{p}: {r}" for p, r in report.skipped)
        raise PoliteTeacherError(f"no image could be read ({why}); pass image files")
    coco = {
        "info": {"description": "pseudo-labels of politeteacher pseudo-label", "weights": str(weights),
                 "model": which, "box_threshold": b, "mask_iou_threshold": m,
                 "postprocess": cfg.SEMISUPERVISED.TEACHER_POSTPROCESS},
        "images": images, "annotations": annotations,
        "categories": [{"id": int(to_dataset_id[i]), "name": n} for i, n in enumerate(names)],
    }
    report.labels_json = atomic_write_text(out / PSEUDO_LABELS_FILE, json.dumps(coco))
    png = histograms_png(scores, mask_ious, b, m)
    report.histograms = atomic_write(out / HISTOGRAMS_FILE, lambda f: f.write(png))
    return report


def annotated_dicts(cfg, dataset: Optional[str] = None, json_file: Optional[str] = None,
                    images: Optional[str] = None) -> List[dict]:
    """The dataset dicts of a registered or built-in dataset, or of a COCO JSON and its image folder;
    their classes must be the model's."""
    if (dataset is None) == (json_file is None):
        raise PoliteTeacherError("--sweep needs annotated images: pass --dataset NAME, or --json FILE with --images DIR")
    if (json_file is None) != (images is None):
        raise PoliteTeacherError("--json and --images go together; pass both")
    c = cfg.clone()
    c.defrost()
    c.DATASETS.CUSTOM.TRAIN_JSON, c.DATASETS.CUSTOM.TRAIN_IMAGES = "", ""
    c.DATASETS.CUSTOM.VAL_JSON, c.DATASETS.CUSTOM.VAL_IMAGES = str(json_file or ""), str(images or "")
    c.DATASETS.TRAIN, c.DATASETS.TEST = (), ((dataset,) if dataset else ())
    c.DATASETS.UNLABELED_IMAGE_DIRS = []
    name = register_all(c).DATASETS.TEST[0]
    classes = _thing_classes(name)
    known = list(cfg.DATASETS.CLASS_NAMES)  # a run's config.yaml records its classes
    if len(classes) != cfg.MODEL.FCOS.NUM_CLASSES or (known and known != classes):
        raise PoliteTeacherError(
            f"dataset {name!r} has {len(classes)} classes ({', '.join(classes[:4])}...), the model "
            f"{cfg.MODEL.FCOS.NUM_CLASSES}{' (' + ', '.join(known[:4]) + '...)' if known else ''}; "
            "pass annotated images of the classes the model was trained on"
        )
    return get_dataset_dicts(name)


def sweep(
    cfg,
    weights: str,
    output_dir: os.PathLike | str,
    dataset: Optional[str] = None,
    json_file: Optional[str] = None,
    images: Optional[str] = None,
    box_thresholds: Sequence[float] = DEFAULT_BOX_THRESHOLDS,
    mask_iou_thresholds: Sequence[float] = DEFAULT_MASK_IOU_THRESHOLDS,
    max_images: int = 200,
    which: str = "teacher",
) -> SweepReport:
    """The threshold sweep on the first `max_images` images of an annotated dataset (module doc)."""
    if max_images < 1:
        raise PoliteTeacherError(f"--max-images must be at least 1, got {max_images}")
    dicts = annotated_dicts(cfg, dataset, json_file, images)[:max_images]
    if not dicts:
        raise PoliteTeacherError("the dataset has no images; pass annotated images to --sweep")
    out = writable_folder(output_folder(output_dir, [], RESULT_FILES), "--output-dir")
    teacher = load_teacher(cfg, weights, which)
    lowest = min(box_thresholds)
    evidence, skipped = [], []
    size = max(1, cfg.SOLVER.IMS_PER_BATCH_UNLABELED)
    for batch in _batches(view_mapper(cfg), dicts, size, skipped):
        views = [view for _, view, _ in batch]
        # Every mask is kept here; each cell decides which are valid.
        with _autocast(cfg):
            labels = teacher_pseudo_labels(teacher, views, cfg.SEMISUPERVISED.TEACHER_POSTPROCESS, lowest, -math.inf)
        for p, v in zip(labels, views):
            gt = v["instances"]
            if len(gt) and not gt.has("gt_masks"):
                raise PoliteTeacherError(f"{v['file_name']} has objects without masks; --sweep compares masks, "
                                         "so it needs annotations with segmentations")
            evidence.append(ImageEvidence.from_instances(p, gt))
    if not evidence:
        raise PoliteTeacherError("no image of the dataset could be read; check its image folder")
    rows = sweep_table(evidence, box_thresholds, mask_iou_thresholds)
    best = suggest(rows)
    record = {"weights": str(weights), "model": which, "images": len(evidence), "rule": RULE,
              "box_thresholds": list(box_thresholds), "mask_iou_thresholds": list(mask_iou_thresholds),
              "suggested": best, "rows": rows}
    sweep_json = atomic_write_text(out / SWEEP_FILE, json.dumps(record, indent=1))
    png = heatmap_png(rows, box_thresholds, mask_iou_thresholds, best)
    heatmap = atomic_write(out / HEATMAP_FILE, lambda f: f.write(png))
    return SweepReport(rows, best, RULE, len(evidence), out, sweep_json, heatmap)
