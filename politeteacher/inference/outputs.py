"""What predict writes, as it goes (see `politeteacher.predict` for the files and their contents)."""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
from detectron2.data.catalog import Metadata
from detectron2.utils.visualizer import ColorMode, Visualizer
from PIL import Image

from ..errors import PoliteTeacherError
from ..io import atomic_write, atomic_write_text, writable_folder

PREDICTIONS_FILE = "predictions.json"
IMAGES_FILE = "images.json"
STREAM_FILE = "predictions.jsonl"
CSV_FILE = "predictions.csv"
MASKS_DIR = "masks"
# What predict writes beside the overlays: a folder holding any of them holds earlier results.
RESULT_FILES = (STREAM_FILE, PREDICTIONS_FILE, IMAGES_FILE, CSV_FILE)
CSV_COLUMNS = ("file", "frame", "image_id", "instance", "class", "category_id", "score", "mask_score",
               "x", "y", "width", "height", "mask_file")


def first_free(stem: str, taken: Callable[[str], bool]) -> str:
    """`stem`, else `stem_2`, `stem_3`, ...: the first name that `taken` says is free."""
    name, k = stem, 1
    while taken(name):
        k += 1
        name = f"{stem}_{k}"
    return name


def render_overlay(rgb: np.ndarray, instances, names: Sequence[str]) -> np.ndarray:
    """The image (RGB) with the instances (masks, boxes, class names, scores) drawn by detectron2's
    Visualizer."""
    metadata = Metadata(name="politeteacher_predict", thing_classes=list(names))
    vis = Visualizer(rgb, metadata, instance_mode=ColorMode.IMAGE)
    return vis.draw_instance_predictions(instances).get_image()


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def output_folder(
    requested: os.PathLike | str, inputs: Sequence[Path], result_files: Sequence[str] = RESULT_FILES
) -> Path:
    """The folder a predict asked to write to `requested` uses (see `politeteacher.predict`;
    `result_files`: the files that mark earlier results, predict's by default); a PoliteTeacherError
    when it is a file or holds any of `inputs` (overlays would mix with them)."""
    base = Path(requested).expanduser().absolute()
    if base.exists() and not base.is_dir():
        raise PoliteTeacherError(f"output folder {base} is a file; pass a folder to --output-dir")
    folder, n = base, 1
    while (folder.exists() and not folder.is_dir()) or any((folder / f).exists() for f in result_files):
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
    image leaves nothing): per image its overlay, mask PNGs (`masks`), a line of STREAM_FILE and (`csv_rows`)
    rows of CSV_FILE, flushed at once; at the end (`finish`) the COCO files. It never replaces a file:
    overlays and masks take a free name, and the stream files are created exclusively, so two runs
    started into the same folder cannot mix."""

    def __init__(self, folder: Path, masks: bool = False, csv_rows: bool = False, class_of: Optional[dict] = None):
        self.folder = folder
        self.stream_path = folder / STREAM_FILE
        self.csv_path = folder / CSV_FILE if csv_rows else None
        self.masks = masks
        self.class_of = class_of or {}  # dataset category id -> class name, for the CSV
        self.images: List[dict] = []
        self.results: List[dict] = []
        self._used: set = set()
        self._stream = self._csv_file = self._csv = None

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc) -> None:
        for f in (self._stream, self._csv_file):
            if f is not None:
                f.close()

    def _open(self) -> None:
        writable_folder(self.folder, "--output-dir")
        try:
            self._stream = open(self.stream_path, "x", encoding="utf-8")
            if self.csv_path is not None:
                self._csv_file = open(self.csv_path, "x", encoding="utf-8", newline="")
                self._csv = csv.writer(self._csv_file)
                self._csv.writerow(CSV_COLUMNS)
                self._csv_file.flush()
        except FileExistsError:
            raise PoliteTeacherError(f"another predict started writing to {self.folder}; run again") from None

    def free_name(self, stem: str, suffix: str = ".png") -> str:
        """`stem`, else `stem_2`, ...: a name no file of this run and no file in the folder has
        (`<name><suffix>`, and `masks/<name>_1.png` when masks are written)."""
        name = first_free(stem, lambda n: n in self._used or (self.folder / f"{n}{suffix}").exists()
                          or (self.masks and (self.folder / MASKS_DIR / f"{n}_1.png").exists()))
        self._used.add(name)
        return name

    def add(self, image: dict, results: List[dict], name: str, overlay_png: Optional[bytes] = None,
            masks: Optional[np.ndarray] = None, overlay_ref: Optional[str] = None) -> Optional[Path]:
        """Write one image's outputs; `image` is its images.json entry, `name` a `free_name`, `masks`
        its instances' (N, H, W) bool masks in the order of `results`. Returns the overlay's path."""
        if self._stream is None:
            self._open()
        overlay = self.folder / f"{name}.png" if overlay_png is not None else None
        try:
            if overlay is not None:
                atomic_write(overlay, lambda f: f.write(overlay_png))
            if self.masks and masks is not None and len(results):
                (self.folder / MASKS_DIR).mkdir(exist_ok=True)
                for k, (r, m) in enumerate(zip(results, masks), start=1):
                    r["mask_file"] = f"{MASKS_DIR}/{name}_{k}.png"
                    png = png_bytes(np.asarray(m, dtype=np.uint8) * 255)
                    atomic_write(self.folder / r["mask_file"], lambda f: f.write(png))
            ref = overlay.name if overlay is not None else overlay_ref
            self._stream.write(json.dumps({"image": image, "overlay": ref, "predictions": results}) + "\n")
            self._stream.flush()
            if self._csv is not None:
                self._csv.writerows(self._csv_row(image, k, r) for k, r in enumerate(results, start=1))
                self._csv_file.flush()
        except OSError as e:
            raise PoliteTeacherError(
                f"cannot write to output folder {self.folder} ({e.strerror or e}); the {len(self.images)} "
                f"image(s) done are in {self.stream_path}"
            ) from e
        self.images.append(image)
        self.results += results
        return overlay

    def _csv_row(self, image: dict, k: int, r: dict) -> list:
        x, y, w, h = r["bbox"]
        return [image["file_name"], image.get("frame", ""), image["id"], k, self.class_of.get(r["category_id"], ""), r["category_id"],
                r["score"], r.get("mask_score", ""), x, y, w, h, r.get("mask_file", "")]

    def finish(self, categories: List[dict]) -> Tuple[Path, Path]:
        """Write images.json and predictions.json (atomically); returns their paths."""
        header = {"images": self.images, "annotations": [], "categories": categories}
        return (atomic_write_text(self.folder / IMAGES_FILE, json.dumps(header)),
                atomic_write_text(self.folder / PREDICTIONS_FILE, json.dumps(self.results)))
