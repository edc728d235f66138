"""What `politeteacher check-data` finds in a dataset: counts, the images a run cannot learn from or
read, the category-id map, and a grid of annotated images drawn by detectron2's Visualizer."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.data.detection_utils import read_image
from detectron2.utils.visualizer import Visualizer

from ..config import resolve_config
from ..io import write_files_atomic
from .checks import BOXES_ONLY_FLAG, SKIP_FLAG, find_bad_images
from .datasets import dataset_json, image_files, load_annotations, register_all

__all__ = ["CategoryRow", "DatasetReport", "FolderReport", "inspect_dataset", "inspect_folder", "named_sets", "save_grid"]


@dataclass
class CategoryRow:
    dataset_id: int  # the id in the JSON (what outputs keep)
    contiguous_id: int  # the model's class index
    name: str
    instances: int
    images: int


@dataclass
class DatasetReport:
    role: str  # train / val
    name: str
    json_file: str
    num_images: int
    num_instances: int  # not crowd
    num_crowd: int
    without_annotations: List[str]
    crowd_only: List[str]
    without_masks: int  # instances without a `segmentation`
    bad_images: List[Tuple[str, str]]  # (path, why)
    categories: List[CategoryRow]
    grid: str = ""

    def problems(self) -> List[str]:
        """What would stop a training run, one line each."""
        out = []
        if self.bad_images:
            out.append(f"{self.role} set {self.name}: {len(self.bad_images)} image(s) missing or unreadable "
                       f"(replace or remove them{'' if self.role == 'val' else ', or pass ' + SKIP_FLAG})")
        if self.without_masks:
            out.append(f"{self.role} set {self.name}: {self.without_masks} instance(s) without a mask "
                       f"(add masks{'' if self.role == 'val' else ', or pass ' + BOXES_ONLY_FLAG})")
        if not self.num_instances:
            out.append(f"{self.role} set {self.name}: no instance to learn from or to measure")
        return out


@dataclass
class FolderReport:
    folder: str
    num_images: int
    bad_images: List[Tuple[str, str]] = field(default_factory=list)

    def problems(self) -> List[str]:
        if self.bad_images:
            return [f"unlabelled folder {self.folder}: {len(self.bad_images)} unreadable image(s) "
                    f"(replace or remove them, or pass {SKIP_FLAG})"]
        return []


def named_sets(data_overrides: Sequence[str]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """What the data options (`cli.options.DataOptions.overrides`) name, registered and checked (missing files are
    one-line errors): ``(role, dataset name)`` for the training sets then the validation sets, and the
    unlabelled folders. Nothing comes from a preset."""
    cfg = register_all(resolve_config(overrides=["DATASETS.TRAIN", "()", "DATASETS.TEST", "()", *data_overrides]))
    sets = [("train", n) for n in cfg.DATASETS.TRAIN] + [("val", n) for n in cfg.DATASETS.TEST]
    return sets, list(cfg.DATASETS.UNLABELED_IMAGE_DIRS)


def _id_map(name: str, num_classes: int) -> List[int]:
    """Dataset category id of each contiguous id (the identity for sets registered without ids)."""
    id_map = MetadataCatalog.get(name).get("thing_dataset_id_to_contiguous_id", None) or {}
    by_contiguous = {c: i for i, c in id_map.items()}
    return [by_contiguous.get(c, c) for c in range(num_classes)]


def inspect_dataset(role: str, name: str) -> Tuple[DatasetReport, List[dict]]:
    """The report of the registered dataset ``name`` (every image decoded once), and its dicts."""
    dicts = load_annotations(name)
    classes = list(MetadataCatalog.get(name).get("thing_classes", None) or [])
    instances = np.zeros(len(classes), dtype=int)
    images = np.zeros(len(classes), dtype=int)
    without, crowd_only, no_mask, crowd = [], [], 0, 0
    for d in dicts:
        annotations = d.get("annotations", [])
        kept = [a for a in annotations if not a.get("iscrowd", 0)]
        crowd += len(annotations) - len(kept)
        if not annotations:
            without.append(d["file_name"])
        elif not kept:
            crowd_only.append(d["file_name"])
        no_mask += sum(1 for a in kept if "segmentation" not in a)
        for a in kept:
            instances[a["category_id"]] += 1
        for c in {a["category_id"] for a in kept}:
            images[c] += 1
    entries = [(d["file_name"], (d["width"], d["height"]) if "width" in d else None, name) for d in dicts]
    bad = [(path, why) for path, _, why in find_bad_images(entries)]
    json_file = dataset_json(name)
    report = DatasetReport(
        role=role, name=name, json_file=str(json_file or ""), num_images=len(dicts),
        num_instances=int(instances.sum()), num_crowd=crowd, without_annotations=without,
        crowd_only=crowd_only, without_masks=no_mask, bad_images=bad,
        categories=[CategoryRow(dataset_id, c, classes[c], int(instances[c]), int(images[c]))
                    for c, dataset_id in enumerate(_id_map(name, len(classes)))],
    )
    return report, dicts


def inspect_folder(folder: str) -> FolderReport:
    """Count and decode the raw images of an unlabelled folder."""
    files = [str(p) for p in image_files(folder)]
    bad = [(path, why) for path, _, why in find_bad_images([(p, None, folder) for p in files])]
    return FolderReport(folder=str(folder), num_images=len(files), bad_images=bad)


def save_grid(name: str, dicts: Sequence[dict], path: Path, count: int = 6, skip: Sequence[str] = (),
              tile: int = 320) -> Optional[Path]:
    """Draw ``count`` annotated images of ``name`` (spread over the set, unreadable ones left out) with
    their labels, ``tile`` pixels high each, three to a row, into the JPEG ``path``; None when the set
    has no annotated image to draw."""
    skipped = set(skip)
    candidates = [d for d in dicts if d.get("annotations") and d["file_name"] not in skipped]
    if not candidates:
        return None
    picks = sorted({int(i) for i in np.linspace(0, len(candidates) - 1, min(count, len(candidates)))})
    tiles = []
    for i in picks:
        d = candidates[i]
        image = read_image(d["file_name"], format="RGB")
        # drawn at the tile's scale, so labels have the same size on every tile
        drawn = Visualizer(image, MetadataCatalog.get(name), scale=tile / image.shape[0]).draw_dataset_dict(d)
        tiles.append(drawn.get_image()[:tile])
    rows = [tiles[i:i + 3] for i in range(0, len(tiles), 3)]
    canvas = np.full((tile * len(rows), max(sum(t.shape[1] for t in row) for row in rows), 3), 255, dtype=np.uint8)
    for r, row in enumerate(rows):
        x = 0
        for t in row:  # side by side, each as wide as its aspect ratio makes it
            canvas[r * tile:(r + 1) * tile, x:x + t.shape[1]] = t
            x += t.shape[1]
    ok, encoded = cv2.imencode(".jpg", canvas[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok  # encoding an uint8 RGB array to JPEG does not fail
    write_files_atomic([(Path(path), lambda f: f.write(encoded.tobytes()))])
    return Path(path)


def report_json(reports: Sequence, folders: Sequence[FolderReport]) -> dict:
    """Everything found, JSON-ready (report.json)."""
    return {"datasets": [asdict(r) for r in reports], "unlabeled_folders": [asdict(f) for f in folders]}
