"""What a training run checks once, on the launching process, before any worker starts.

- The split file belongs to the training dataset (:func:`~.splits.split_for`).
- Every annotation has a mask, unless INPUT.BOXES_ONLY says to train without the mask losses.
- Every image the run will read (the training dataset, the unlabelled folders, the test sets)
  decodes completely and, for a COCO-format set, has the width and height its JSON gives, after
  the EXIF orientation as detectron2's ``read_image`` applies it. The first bad image otherwise
  stops training at some iteration (or in a data-loading process) with an error that does not name
  the file. Bad images stop the command with a list of them all; with
  DATALOADER.SKIP_BAD_IMAGES, bad training and unlabelled images are left out instead: their paths
  go into DATALOADER.SKIPPED_IMAGES, which the workers' loaders drop without looking again.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

from detectron2.config import CfgNode
from PIL import Image

from ..errors import PoliteTeacherError
from .datasets import (
    _first_line, apply_dataset_classes, dataset_json, get_dataset_dicts, image_files, oriented_size, register_all,
)
from .splits import split_for

logger = logging.getLogger(__name__)

__all__ = ["check_evaluation_data", "check_training_data", "find_bad_images", "read_size"]

SKIP_FLAG = "--skip-bad-images (DATALOADER.SKIP_BAD_IMAGES True)"
BOXES_ONLY_FLAG = "--boxes-only (INPUT.BOXES_ONLY True)"

# (path, expected (width, height) or None, where the image comes from)
Entry = Tuple[str, Optional[Tuple[int, int]], str]


def read_size(path: str) -> Tuple[Optional[Tuple[int, int]], str]:
    """``((width, height), "")`` of an image decoded completely, EXIF orientation applied, or
    ``(None, why it cannot be read)``."""
    try:
        with Image.open(path) as im:
            im.load()  # the whole file: a truncated or corrupt one fails here, not in training
            return oriented_size(im), ""
    except FileNotFoundError:
        return None, "not found"
    except Image.UnidentifiedImageError:
        return None, "not an image (Pillow does not recognise its format)"
    except Exception as e:  # any file may be given: whatever fails is the reason to report
        return None, f"cannot be decoded ({_first_line(e)})"


def find_bad_images(entries: Sequence[Entry]) -> List[Tuple[str, str, str]]:
    """``(path, source, reason)`` of every entry whose image cannot be read or whose size is not
    the expected one, in the order of ``entries``. Each file is decoded once, in a thread pool
    (Pillow decodes without holding the GIL)."""
    paths = list(dict.fromkeys(path for path, _, _ in entries))
    with ThreadPoolExecutor() as pool:
        found: Dict[str, Tuple[Optional[Tuple[int, int]], str]] = dict(zip(paths, pool.map(read_size, paths)))
    bad = []
    for path, expected, source in entries:
        size, reason = found[path]
        if size is not None and expected is not None and size != expected:
            reason = (f"is {size[0]}x{size[1]} (width x height, after EXIF rotation) but the JSON "
                      f"says {expected[0]}x{expected[1]}")
        if reason:
            bad.append((path, source, reason))
    return bad


def _dataset_entries(name: str, dicts: Sequence[dict]) -> List[Entry]:
    json_file = dataset_json(name)
    source = f"{name} ({json_file})" if json_file else name
    return [(d["file_name"], (d["width"], d["height"]) if "width" in d else None, source) for d in dicts]


def _listing(bad: Sequence[Tuple[str, str, str]]) -> str:
    """One line per bad image, under a line per source."""
    by_source: Dict[str, List[str]] = {}
    for path, source, reason in bad:
        by_source.setdefault(source, []).append(f"\n    {path}: {reason}")
    return "".join(f"\n  {source}:" + "".join(lines) for source, lines in by_source.items())


def _check_images(train: Dict[str, List[dict]], folders: Sequence[str], test: Dict[str, List[dict]],
                  skip: bool) -> List[str]:
    """Check the images of the training datasets, the unlabelled folders and the test datasets (see
    the module doc); return the paths of the bad training and unlabelled ones, to be skipped."""
    train_entries = [e for name, dicts in train.items() for e in _dataset_entries(name, dicts)]
    for folder in folders:
        train_entries += [(str(path), None, f"unlabelled images {folder}") for path in image_files(folder)]
    test_entries = [e for name, dicts in test.items() for e in _dataset_entries(name, dicts)]
    start = time.perf_counter()
    bad_train, bad_test = find_bad_images(train_entries), find_bad_images(test_entries)
    total = len(train_entries) + len(test_entries)
    logger.info("Checked %d images in %.1f s: %d bad", total, time.perf_counter() - start,
                len(bad_train) + len(bad_test))
    if bad_train and not skip:
        raise PoliteTeacherError(
            f"{len(bad_train) + len(bad_test)} of the {total} images cannot be used (listed below): "
            f"replace or remove them, or pass {SKIP_FLAG} to train without the training and "
            "unlabelled ones" + _listing(bad_train + bad_test)
        )
    if bad_test:
        raise PoliteTeacherError(
            f"{len(bad_test)} of the {len(test_entries)} validation images cannot be used (listed "
            "below): replace them, or remove them from their JSON (AP counts every image it lists, "
            "so --skip-bad-images does not apply to them)" + _listing(bad_test)
        )
    for path, source, reason in bad_train:
        logger.warning("Skipping %s (%s): %s", path, source, reason)
    if bad_train:
        logger.warning("Skipped %d of the %d training and unlabelled images (DATALOADER.SKIP_BAD_IMAGES)",
                       len(bad_train), len(train_entries))
    return list(dict.fromkeys(path for path, _, _ in bad_train))


def _check_masks(name: str, dicts: Sequence[dict], validation: bool) -> None:
    """Refuse instance annotations without a mask (``segmentation``): training would give them a
    zero mask loss without a word, and evaluating masks against them fails."""
    instances = [(d, a) for d in dicts for a in d.get("annotations", ()) if not a.get("iscrowd", 0)]
    box_only = [(d, a) for d, a in instances if "segmentation" not in a]
    if not box_only:
        return
    json_file = dataset_json(name)
    what = (f"{len(box_only)} of the {len(instances)} annotations of dataset {name}"
            + (f" ({json_file})" if json_file else "")
            + f" have no 'segmentation' (e.g. in {box_only[0][0]['file_name']})")
    if validation:
        raise PoliteTeacherError(f"{what}: mask AP is computed against them; add their masks, or "
                                 "leave this validation set out")
    raise PoliteTeacherError(f"{what}: CenterMask learns its masks from them; add their masks "
                             f"(polygons or RLE), or pass {BOXES_ONLY_FLAG} to train without the mask losses")


def check_training_data(cfg: CfgNode) -> CfgNode:
    """Check the split, the masks and the images of a training run (see the module doc), after
    :func:`~.datasets.register_all` / :func:`~.datasets.apply_dataset_classes`; return a copy of
    ``cfg`` whose DATALOADER.SKIPPED_IMAGES lists the images to leave out (empty unless
    DATALOADER.SKIP_BAD_IMAGES)."""
    train = {name: get_dataset_dicts(name) for name in cfg.DATASETS.TRAIN}
    split_for(cfg, [d for dicts in train.values() for d in dicts])  # before the slow image check
    test = {name: get_dataset_dicts(name) for name in cfg.DATASETS.TEST}
    if not cfg.INPUT.BOXES_ONLY:
        for name, dicts in train.items():
            _check_masks(name, dicts, validation=False)
    for name, dicts in test.items():
        _check_masks(name, dicts, validation=True)
    skipped = _check_images(train, cfg.DATASETS.UNLABELED_IMAGE_DIRS, test, cfg.DATALOADER.SKIP_BAD_IMAGES)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.DATALOADER.SKIPPED_IMAGES = skipped
    return cfg


def check_evaluation_data(cfg: CfgNode) -> CfgNode:
    """The checks of :func:`check_training_data` for DATASETS.TEST only (what `eval` reads):
    every annotation has a mask, every image decodes and has its JSON's size. Returns ``cfg``."""
    test = {name: get_dataset_dicts(name) for name in cfg.DATASETS.TEST}
    for name, dicts in test.items():
        _check_masks(name, dicts, validation=True)
    _check_images({}, (), test, skip=False)
    return cfg


def setup_datasets(cfg: CfgNode) -> CfgNode:
    """register_all + apply_dataset_classes + `check_training_data` (the split, the
    annotations' masks and every image the run will read): what a training command runs, once, on
    the launching process, before building a model."""
    return check_training_data(apply_dataset_classes(register_all(cfg)))
