"""Segment images, videos and camera frames: overlays and COCO-style results.

    from politeteacher.predict import predict
    report = predict(cfg, ["img.jpg", "folder/", "shots/*.png", "clip.mp4"], "runs/baseline/demo/model_final.pth", "out/")

The model is built once; images are decoded and resized by a loader worker while the model runs on the
previous batch (`batch_size` images per forward pass; images of different padded sizes go in separate
passes, so a batch gives each image the results it gets alone). Video files (VIDEO_EXTENSIONS) are read
frame by frame with OpenCV, after the images. Class names and dataset ids come from the checkpoint (lean
ones carry them) or the config (a run's config.yaml records them); no dataset is registered or read.

The output folder is the one asked for unless it holds earlier results (any of RESULT_FILES); then it
is the first free numbered one beside it (`out2`, `out3`, ...; Ultralytics' `runs/predict`,
`runs/predict2`). A folder holding input images is refused. Nothing in it is ever overwritten:
- `<image stem>.png`: the image with masks, boxes, class names and scores (detectron2's Visualizer),
  `<stem>_2.png`, ... when that name is taken (none with `overlays=False`); for a video, `<stem>.mp4`,
  the annotated video;
- `predictions.jsonl`: one JSON object per image or frame, appended and flushed as soon as it is done
  (so a killed run keeps them): {"image": its images.json entry, "overlay": file name,
  "predictions": its predictions.json entries};
- `masks/<name>_<k>.png` (`save_masks`): one PNG per instance (0 or 255, at the image's size), k = 1, 2,
  ... the instance's place in its image's predictions, whose entry names the file as "mask_file";
- `predictions.csv` (`save_txt`): one row per instance, CSV_COLUMNS (box x, y, width, height in pixels,
  as the JSON's bbox), streamed like the JSON lines;
- at the end, written atomically: `predictions.json`, COCO results, a list of {image_id, file_name,
  category_id (the dataset's id), bbox (xywh), score, segmentation (RLE), mask_score}; and
  `images.json`, a COCO header for those results ({images, categories, annotations: []}), so that
  `COCO("images.json").loadRes("predictions.json")` works. A video frame is an image entry with the
  video as file_name and its 0-based "frame".
Files that cannot be read as images are reported and skipped; the others are still written.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from .data.classes import class_metadata
from .errors import PoliteTeacherError
from .evaluation.coco import instances_to_coco_json_with_mask_scores
from .inference.model import Predictor, checkpoint_classes, read_checkpoint
from .inference.outputs import (
    CSV_FILE, IMAGES_FILE, MASKS_DIR, PREDICTIONS_FILE, RESULT_FILES, STREAM_FILE, ResultWriter, output_folder,
    png_bytes, render_overlay,
)
from .inference.progress import Progress
from .inference.sources import (
    IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, collect_images, collect_inputs, image_batches, is_video, open_video,
    video_frames,
)

logger = logging.getLogger(__name__)

__all__ = [
    "predict", "predict_webcam", "PredictReport", "Predictor", "collect_images", "class_metadata",
    "render_overlay", "output_folder", "ResultWriter", "default_batch_size",
    "IMAGE_EXTENSIONS", "VIDEO_EXTENSIONS", "RESULT_FILES", "STREAM_FILE", "PREDICTIONS_FILE", "IMAGES_FILE",
    "CSV_FILE", "MASKS_DIR",
]


@dataclass
class PredictReport:
    """What `predict` did: the folder it wrote to, overlays (and annotated videos) written, the JSON
    files, the inputs it skipped (path, why), and its speed."""

    output_dir: Optional[Path] = None
    overlays: List[Path] = field(default_factory=list)
    stream: Optional[Path] = None
    predictions_json: Optional[Path] = None
    images_json: Optional[Path] = None
    csv: Optional[Path] = None
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    num_images: int = 0
    num_detections: int = 0
    images_per_s: float = 0.0


def default_batch_size(device: str) -> int:
    """Images per forward pass when none is asked for: 8 on a GPU, 2 on the CPU (where larger batches
    gain nothing measurable and delay the first results)."""
    return 8 if str(device).startswith("cuda") else 2


class _Run:
    """The state one predict shares between its images and videos: model, classes, filters, writer."""

    def __init__(self, cfg, weights, which, threshold, classes, overlays):
        if not 0.0 <= threshold <= 1.0:
            raise PoliteTeacherError(f"--threshold must be in [0, 1], got {threshold:g}")
        checkpoint = read_checkpoint(weights)
        num = cfg.MODEL.FCOS.NUM_CLASSES
        carried, configured = checkpoint_classes(checkpoint, num), class_metadata(cfg)
        # Names given by the config (predict's --data / --dataset, or the run's config.yaml, which
        # names the classes as the checkpoint does) win; a lean checkpoint's own ids are the dataset's.
        use_carried = carried and (not cfg.DATASETS.CLASS_NAMES or carried[0] == configured[0])
        self.names, self.to_dataset_id = carried if use_carried else configured
        self.keep_classes = self._class_ids(classes)
        self.predictor = Predictor(cfg, weights, which, checkpoint=checkpoint)
        self.threshold, self.overlays = threshold, overlays

    def _class_ids(self, classes: Optional[Sequence[str]]) -> Optional[torch.Tensor]:
        if not classes:
            return None
        wanted = [c.strip() for item in classes for c in item.split(",") if c.strip()]
        unknown = [c for c in wanted if c not in self.names]
        if unknown:
            raise PoliteTeacherError(
                f"--classes: {', '.join(unknown)} not among the model's classes ({', '.join(self.names)})")
        return torch.tensor(sorted({self.names.index(c) for c in wanted}))

    def categories(self) -> List[dict]:
        return [{"id": int(self.to_dataset_id[i]), "name": n} for i, n in enumerate(self.names)]

    def class_of(self) -> Dict[int, str]:
        return {int(self.to_dataset_id[i]): n for i, n in enumerate(self.names)}

    def filter(self, instances):
        keep = instances.scores >= self.threshold
        if self.keep_classes is not None:
            keep &= torch.isin(instances.pred_classes, self.keep_classes)
        return instances[keep]

    def results(self, instances, entry: dict) -> List[dict]:
        results = instances_to_coco_json_with_mask_scores(instances, entry["id"])
        for r in results:
            r["category_id"] = int(self.to_dataset_id[r["category_id"]])
            r["file_name"] = entry["file_name"]
        return results

    def overlay_png(self, image: np.ndarray, instances) -> bytes:
        return png_bytes(self.overlay(image, instances))

    def overlay(self, image: np.ndarray, instances) -> np.ndarray:
        rgb = image[:, :, ::-1] if self.predictor.input_format == "BGR" else image
        if rgb.ndim == 2 or rgb.shape[2] == 1:
            rgb = np.repeat(rgb.reshape(rgb.shape[0], rgb.shape[1], 1), 3, axis=2)
        return render_overlay(np.ascontiguousarray(rgb), instances, self.names)

    def write(self, writer: ResultWriter, report: PredictReport, entry: dict, instances, name: str,
              image: Optional[np.ndarray], overlay_ref: Optional[str] = None,
              overlay_png: Optional[bytes] = None) -> Optional[np.ndarray]:
        """Write one image's (or frame's) results: its overlay is drawn from `image`, or given as
        `overlay_png`, or goes elsewhere (`overlay_ref`, e.g. a video). Returns what was drawn."""
        results = self.results(instances, entry)
        drawn = self.overlay(image, instances) if self.overlays and image is not None else None
        if drawn is not None and overlay_ref is None:
            overlay_png = png_bytes(drawn)
        masks = instances.pred_masks.numpy() if writer.masks and instances.has("pred_masks") else None
        target = writer.add(entry, results, name, overlay_png, masks, overlay_ref)
        if target is not None:
            report.overlays.append(target)
        report.num_images += 1
        report.num_detections += len(instances)
        return drawn


def predict(
    cfg,
    inputs: Sequence[str],
    weights: str,
    output_dir: os.PathLike | str,
    threshold: float = 0.5,
    which: str = "teacher",
    *,
    batch_size: Optional[int] = None,
    classes: Optional[Sequence[str]] = None,
    overlays: bool = True,
    save_masks: bool = False,
    save_txt: bool = False,
    workers: Optional[int] = None,
    progress: Optional[bool] = None,
) -> PredictReport:
    """Run the model on every image and video of `inputs` (files, folders, globs); keep detections with
    score >= `threshold` (and of `classes`, names, if given); write results to `output_dir`, or to the
    next free numbered folder when it holds earlier results (see the module doc).

    `batch_size`: images per forward pass (default `default_batch_size`); `workers`: loader processes
    decoding images (default 1 for several images, 0 for one); `progress`: a bar (default: when stderr
    is a terminal; else a line every 10 s). Raises PoliteTeacherError when no input is an image or video
    it can read, or when the output folder holds input images or cannot be written."""
    files, skipped = collect_inputs(inputs, "segment")
    batch_size = default_batch_size(cfg.MODEL.DEVICE) if batch_size is None else batch_size
    if batch_size < 1:
        raise PoliteTeacherError(f"--batch-size must be at least 1, got {batch_size}")
    out = output_folder(output_dir, files)
    run = _Run(cfg, weights, which, threshold, classes, overlays)
    images = [f for f in files if not is_video(f)]
    videos = [f for f in files if is_video(f)]
    workers = (1 if len(images) > 1 else 0) if workers is None else workers

    report = PredictReport(output_dir=out, skipped=list(skipped))
    bar = Progress(len(images), bar=progress) if images else None
    start = time.monotonic()
    try:
        with ResultWriter(out, masks=save_masks, csv_rows=save_txt, class_of=run.class_of()) as writer:
            batches = image_batches(images, run.predictor.prepare, run.predictor.input_format, batch_size,
                                    workers, keep_original=overlays)
            # Overlays are drawn by a thread while the model runs on the next batch (its convolutions
            # release the GIL); a batch's results are written once its overlays are done.
            drawer = ThreadPoolExecutor(1) if overlays else None
            pending: List[tuple] = []

            def write_pending():
                for entry, instances, name, drawing in pending:
                    run.write(writer, report, entry, instances, name, None,
                              overlay_png=drawing.result() if drawing is not None else None)
                    bar.update(1)
                pending.clear()

            try:
                for batch in batches:
                    readable = [x for x in batch if x["error"] is None]
                    for x in batch:
                        if x["error"] is not None:
                            logger.warning("skipping %s: %s", x["path"], x["error"])
                            report.skipped.append((str(x["path"]), x["error"]))
                            bar.update(1)
                    outputs = run.predictor.run(readable) if readable else []
                    write_pending()
                    for x, instances in zip(readable, outputs):
                        instances = run.filter(instances)
                        entry = {"id": len(writer.images) + len(pending) + 1, "file_name": str(x["path"].resolve()),
                                 "height": int(x["height"]), "width": int(x["width"])}
                        drawing = drawer.submit(run.overlay_png, x["original"].numpy(), instances) if drawer else None
                        pending.append((entry, instances, writer.free_name(x["path"].stem), drawing))
                write_pending()
            finally:
                if drawer is not None:
                    drawer.shutdown(cancel_futures=True)
            if bar is not None:
                bar.close()
            for video in videos:
                _predict_video(run, writer, report, video, batch_size, progress)
            if not writer.images:
                why = "; ".join(f"{p}: {r}" for p, r in report.skipped)
                raise PoliteTeacherError(f"no image could be read ({why}); pass image files")
            report.images_json, report.predictions_json = writer.finish(run.categories())
            report.stream, report.csv = writer.stream_path, writer.csv_path
    finally:
        if bar is not None:
            bar.close()
    report.images_per_s = report.num_images / max(time.monotonic() - start, 1e-9)
    return report


def _frame_batches(frames: Iterable[np.ndarray], size: int):
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _predict_frames(run: _Run, writer: ResultWriter, report: PredictReport, frames: Iterable[np.ndarray],
                    source: str, name: str, batch_size: int, on_overlay, progress: Progress,
                    overlay_ref: Optional[str]) -> None:
    """Frames of one video or camera: results per frame (entries with "frame"), overlays to `on_overlay`."""
    index = 0
    for batch in _frame_batches(frames, batch_size):
        for frame, instances in zip(batch, run.predictor.run([run.predictor.prepare(f) for f in batch])):
            instances = run.filter(instances)
            entry = {"id": len(writer.images) + 1, "file_name": source, "frame": index,
                     "height": int(frame.shape[0]), "width": int(frame.shape[1])}
            drawn = run.write(writer, report, entry, instances, writer.free_name(f"{name}_{index:06d}"), frame,
                              overlay_ref)
            if drawn is not None:
                on_overlay(drawn)
            index += 1
        progress.update(len(batch))


def _predict_video(run: _Run, writer: ResultWriter, report: PredictReport, video: Path, batch_size: int,
                   progress: Optional[bool]) -> None:
    """One video file: the annotated video `<stem>.mp4` (same frame rate and size) and per-frame results."""
    capture = open_video(str(video), str(video))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    name = writer.free_name(video.stem, ".mp4")
    target = writer.folder / f"{name}.mp4"
    out = {"writer": None}

    def add_frame(rgb: np.ndarray) -> None:
        if out["writer"] is None:  # opened at the first frame: its size is the video's
            h, w = rgb.shape[:2]
            out["writer"] = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        out["writer"].write(np.ascontiguousarray(rgb[:, :, ::-1]))

    bar = Progress(total, unit="frame", bar=progress)
    try:
        _predict_frames(run, writer, report, video_frames(capture, run.predictor.input_format),
                        str(video.resolve()), name, batch_size, add_frame, bar,
                        overlay_ref=target.name if run.overlays else None)
    finally:
        bar.close()
        capture.release()
        if out["writer"] is not None:
            out["writer"].release()
            report.overlays.append(target)


def predict_webcam(
    cfg,
    camera: int,
    weights: str,
    output_dir: os.PathLike | str,
    threshold: float = 0.5,
    which: str = "teacher",
    *,
    classes: Optional[Sequence[str]] = None,
    save_masks: bool = False,
    save_txt: bool = False,
    max_frames: Optional[int] = None,
    show: Optional[bool] = None,
) -> PredictReport:
    """Segment the frames of camera `camera` until it stops, Ctrl-C (or q / Esc in the window), or
    `max_frames`. `show`: a window (default: when OpenCV has a GUI and a display exists); otherwise each
    annotated frame is written as `webcam<N>_<frame>.png`. Results as for a video (see the module doc)."""
    capture = open_video(camera, f"webcam {camera}")
    out_dir = output_folder(output_dir, [])
    run = _Run(cfg, weights, which, threshold, classes, overlays=True)
    if show is None:
        show = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and _has_gui()
    report = PredictReport(output_dir=out_dir)
    window = f"politeteacher webcam {camera}"

    def on_overlay(rgb):
        if show:
            cv2.imshow(window, np.ascontiguousarray(rgb[:, :, ::-1]))
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                raise KeyboardInterrupt

    bar = Progress(max_frames, unit="frame")
    try:
        with ResultWriter(out_dir, masks=save_masks, csv_rows=save_txt, class_of=run.class_of()) as writer:
            try:
                _predict_frames(run, writer, report, video_frames(capture, run.predictor.input_format, max_frames),
                                f"webcam:{camera}", f"webcam{camera}", 1, on_overlay, bar,
                                overlay_ref="window" if show else None)
            except KeyboardInterrupt:  # the way to stop a camera: keep what was done
                pass
            if writer.images:
                report.images_json, report.predictions_json = writer.finish(run.categories())
                report.stream, report.csv = writer.stream_path, writer.csv_path
    finally:
        bar.close()
        capture.release()
        if show:
            cv2.destroyAllWindows()
    report.images_per_s = bar.rate()
    return report


def _has_gui() -> bool:
    return re.search(r"GUI:\s+NONE", cv2.getBuildInformation()) is None
