"""Segment image files: one overlay PNG per image and COCO-style results for all of them.

    from politeteacher.predict import predict
    report = predict(cfg, ["img.jpg", "folder/", "shots/*.png"], "runs/baseline/demo/model_final.pth", "out/")

The output folder is the one asked for unless it holds earlier results (any of RESULT_FILES); then it
is the first free numbered one beside it (`out2`, `out3`, ...; Ultralytics' `runs/predict`,
`runs/predict2`). A folder holding input images is refused. Nothing in it is ever overwritten:
- `<image stem>.png`: the image with masks, boxes, class names and scores (detectron2's Visualizer),
  `<stem>_2.png`, ... when that name is taken;
- `predictions.jsonl`: one JSON object per image, appended and flushed as soon as the image is done
  (so a killed run keeps them): {"image": its images.json entry, "overlay": file name,
  "predictions": its predictions.json entries};
- at the end, written atomically: `predictions.json`, COCO results, a list of {image_id, file_name,
  category_id (the dataset's id), bbox (xywh), score, segmentation (RLE), mask_score}; and
  `images.json`, a COCO header for those results ({images, categories, annotations: []}), so that
  `COCO("images.json").loadRes("predictions.json")` works.
Files that cannot be read as images are reported and skipped; the others are still written.
"""
from __future__ import annotations

import glob
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .data.classes import class_metadata
from .errors import PoliteTeacherError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
PREDICTIONS_FILE = "predictions.json"
IMAGES_FILE = "images.json"
STREAM_FILE = "predictions.jsonl"
# What predict writes beside the overlays: a folder holding any of them holds earlier results.
RESULT_FILES = (STREAM_FILE, PREDICTIONS_FILE, IMAGES_FILE)


@dataclass
class PredictReport:
    """What `predict` did: the folder it wrote to, overlays written, the JSON files, and the inputs it
    skipped (path, why)."""

    output_dir: Optional[Path] = None
    overlays: List[Path] = field(default_factory=list)
    stream: Optional[Path] = None
    predictions_json: Optional[Path] = None
    images_json: Optional[Path] = None
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    num_detections: int = 0


def collect_images(items: Sequence[str]) -> Tuple[List[Path], List[Tuple[str, str]]]:
    """Expand files, folders (their image files, not recursive) and glob patterns into a list of
    files, in the given order without duplicates. Returns (files, [(item, why it gave nothing)]).
    Explicitly named files are kept whatever their extension (reading them decides)."""
    files: List[Path] = []
    problems: List[Tuple[str, str]] = []

    def images_in(paths):
        return [p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]

    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = images_in(sorted(p.iterdir()))
            if not found:
                problems.append((item, f"folder has no images ({', '.join(IMAGE_EXTENSIONS)})"))
            files += found
        elif p.is_file():
            files.append(p)
        elif glob.has_magic(item):
            found = images_in(sorted(Path(m) for m in glob.glob(os.path.expanduser(item), recursive=True)))
            if not found:
                problems.append((item, "pattern matches no image"))
            files += found
        else:
            problems.append((item, "not found"))
    seen, unique = set(), []
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique, problems


class Predictor:
    """Like detectron2's DefaultPredictor: one image (HWC array in cfg.INPUT.FORMAT) in, the
    model's Instances at the image's size out (on the CPU). Weights are loaded strictly, the
    teacher or the student of a two-model checkpoint."""

    def __init__(self, cfg, weights: str, which: str = "teacher"):
        from detectron2.data import transforms as T

        from .engine.evaluate import build_inference_model

        self.cfg = cfg
        self.model = build_inference_model(cfg, weights, which)
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT

    @torch.no_grad()
    def __call__(self, image: np.ndarray):
        h, w = image.shape[:2]
        resized = self.resize.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.astype("float32").transpose(2, 0, 1)))
        return self.model([{"image": tensor, "height": h, "width": w}])[0]["instances"].to("cpu")


def render_overlay(rgb: np.ndarray, instances, names: Sequence[str]) -> np.ndarray:
    """The image (RGB) with the instances (masks, boxes, class names, scores) drawn by detectron2's
    Visualizer."""
    from detectron2.data.catalog import Metadata
    from detectron2.utils.visualizer import ColorMode, Visualizer

    metadata = Metadata(name="politeteacher_predict", thing_classes=list(names))
    vis = Visualizer(rgb, metadata, instance_mode=ColorMode.IMAGE)
    return vis.draw_instance_predictions(instances).get_image()


def _png_bytes(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def output_folder(requested: os.PathLike | str, inputs: Sequence[Path]) -> Path:
    """The folder a predict asked to write to `requested` uses (see the module doc); a
    PoliteTeacherError when it is a file or holds any of `inputs` (overlays would mix with them)."""
    base = Path(requested).expanduser().absolute()
    if base.exists() and not base.is_dir():
        raise PoliteTeacherError(f"output folder {base} is a file; pass a folder to --output-dir")
    folder, n = base, 1
    while (folder.exists() and not folder.is_dir()) or any((folder / f).exists() for f in RESULT_FILES):
        n += 1
        folder = base.with_name(f"{base.name}{n}")
    real = folder.resolve()
    held = [p.name for p in inputs if p.resolve().parent == real]
    if held:
        shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
        raise PoliteTeacherError(
            f"output folder {folder} holds input images ({shown}); pass another folder to --output-dir"
        )
    return folder


class ResultWriter:
    """Writes one predict's results into `folder`, created at the first image (a run that reads no
    image leaves nothing): per image an overlay and a line of STREAM_FILE, flushed at once; at the
    end (`finish`) the COCO files. It never replaces a file: overlays take a free name, and the
    stream is created exclusively, so two runs started into the same folder cannot mix."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.stream_path = folder / STREAM_FILE
        self.images: List[dict] = []
        self.results: List[dict] = []
        self._stream = None

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc) -> None:
        if self._stream is not None:
            self._stream.close()

    def add(self, image: dict, results: List[dict], overlay_rgb: np.ndarray) -> Path:
        """Write one image's overlay and its stream line; `image` is its images.json entry."""
        from .engine.checkpoint import atomic_write
        from .engine.outputs import writable_folder

        if self._stream is None:
            writable_folder(self.folder, "--output-dir")
            try:
                self._stream = open(self.stream_path, "x", encoding="utf-8")
            except FileExistsError:
                raise PoliteTeacherError(f"another predict started writing to {self.folder}; run again") from None
        stem = Path(image["file_name"]).stem
        overlay, k = self.folder / f"{stem}.png", 1
        while overlay.exists():
            k += 1
            overlay = self.folder / f"{stem}_{k}.png"
        try:
            atomic_write(overlay, lambda f: f.write(_png_bytes(overlay_rgb)))
            self._stream.write(json.dumps({"image": image, "overlay": overlay.name, "predictions": results}) + "\n")
            self._stream.flush()
        except OSError as e:
            raise PoliteTeacherError(
                f"cannot write to output folder {self.folder} ({e.strerror or e}); the {len(self.images)} "
                f"image(s) done are in {self.stream_path}"
            ) from e
        self.images.append(image)
        self.results += results
        return overlay

    def finish(self, categories: List[dict]) -> Tuple[Path, Path]:
        """Write images.json and predictions.json (atomically); returns their paths."""
        from .engine.checkpoint import atomic_write_text

        header = {"images": self.images, "annotations": [], "categories": categories}
        return (atomic_write_text(self.folder / IMAGES_FILE, json.dumps(header)),
                atomic_write_text(self.folder / PREDICTIONS_FILE, json.dumps(self.results)))


def predict(
    cfg,
    inputs: Sequence[str],
    weights: str,
    output_dir: os.PathLike | str,
    threshold: float = 0.5,
    which: str = "teacher",
) -> PredictReport:
    """Run the model on every image of `inputs` (files, folders, globs); keep detections with
    score >= `threshold`; write overlays and results to `output_dir`, or to the next free numbered
    folder when it holds earlier results (see the module doc). Raises PoliteTeacherError when no input
    is an image it can read, or when the output folder holds input images or cannot be written."""
    from detectron2.data import detection_utils

    from .evaluation.coco import instances_to_coco_json_with_mask_scores

    if not 0.0 <= threshold <= 1.0:
        raise PoliteTeacherError(f"--threshold must be in [0, 1], got {threshold:g}")
    files, skipped = collect_images(inputs)
    if not files:
        why = "; ".join(f"{p}: {r}" for p, r in skipped) or "no inputs"
        raise PoliteTeacherError(f"no images to segment ({why}); pass image files, folders or globs")
    out = output_folder(output_dir, files)
    names, to_dataset_id = class_metadata(cfg)
    predictor = Predictor(cfg, weights, which)

    report = PredictReport(output_dir=out, skipped=list(skipped))
    with ResultWriter(out) as writer:
        for path in files:
            try:
                image = detection_utils.read_image(str(path), format=predictor.input_format)
            except Exception as e:  # PIL raises several types for a file that is not an image
                reason = f"not a readable image ({type(e).__name__})"
                logger.warning("skipping %s: %s", path, reason)
                report.skipped.append((str(path), reason))
                continue
            instances = predictor(image)
            instances = instances[instances.scores >= threshold]
            entry = {"id": len(writer.images) + 1, "file_name": str(path.resolve()),
                     "height": int(image.shape[0]), "width": int(image.shape[1])}
            results = instances_to_coco_json_with_mask_scores(instances, entry["id"])
            for r in results:
                r["category_id"] = int(to_dataset_id[r["category_id"]])
                r["file_name"] = entry["file_name"]
            report.num_detections += len(instances)

            rgb = image[:, :, ::-1] if predictor.input_format == "BGR" else image
            if rgb.ndim == 2 or rgb.shape[2] == 1:
                rgb = np.repeat(rgb.reshape(rgb.shape[0], rgb.shape[1], 1), 3, axis=2)
            target = writer.add(entry, results, render_overlay(np.ascontiguousarray(rgb), instances, names))
            report.overlays.append(target)
            logger.info("%s: %d detections -> %s", path, len(instances), target)

        if not writer.images:
            why = "; ".join(f"{p}: {r}" for p, r in report.skipped)
            raise PoliteTeacherError(f"no image could be read ({why}); pass image files")
        categories = [{"id": int(to_dataset_id[i]), "name": n} for i, n in enumerate(names)]
        report.images_json, report.predictions_json = writer.finish(categories)
        report.stream = writer.stream_path
    return report
