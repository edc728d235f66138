"""The dataset file (`--data FILE`): where a dataset's files are, written once instead of four to six
flags on every command (as Ultralytics' data YAML and mmdetection's dataset configs do).

    # politeteacher dataset file; relative paths are relative to this file
    train_json: annotations/train.json   # COCO instances JSON of the annotated images
    train_images: images/train           # their folder
    val_json: annotations/val.json       # optional: the validation set
    val_images: images/val
    unlabeled_images: [raw/]             # optional: folders of raw images for the unlabelled pool
    split: splits/train_10pct_seed1.json # optional: which annotated images count as labelled
    classes: [cat, dog]                  # optional: the class names, checked against the JSON

Instead of a JSON and its folder, ``train`` / ``val`` may name a registered dataset
(``coco_2017_train``). Every entry becomes the config key its flag sets (:func:`data_file_overrides`),
so flags and trailing ``KEY VALUE`` pairs still override it, and the run's config.yaml records the file
under DATASETS.DATA_FILE.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import yaml

from ..errors import PoliteTeacherError
from ..io import read_json

__all__ = ["DataFile", "data_file_overrides", "load_data_file", "starter_data_file"]

_PATHS = ("train_json", "train_images", "val_json", "val_images", "split")
_KEYS = (*_PATHS, "train", "val", "unlabeled_images", "classes")


@dataclass(frozen=True)
class DataFile:
    """A loaded dataset file: paths absolute, entries that are absent empty."""

    path: Path
    train_json: Optional[Path] = None
    train_images: Optional[Path] = None
    val_json: Optional[Path] = None
    val_images: Optional[Path] = None
    split: Optional[Path] = None
    train: str = ""
    val: str = ""
    unlabeled_images: Tuple[Path, ...] = ()
    classes: Tuple[str, ...] = ()

    def class_names(self) -> List[str]:
        """``classes``, else the names of the training JSON's categories in id order (detectron2's
        contiguous order), else []."""
        if self.classes or self.train_json is None:
            return list(self.classes)
        data = read_json(self.train_json, "a COCO instances JSON")
        cats = data.get("categories", []) if isinstance(data, dict) else []
        return [str(c["name"]) for c in sorted(cats, key=lambda c: c["id"])]


def _error(path: Path, what: str) -> PoliteTeacherError:
    return PoliteTeacherError(f"dataset file {path}: {what}")


def load_data_file(path: Union[str, os.PathLike]) -> DataFile:
    """Read and check a dataset file: known keys, the right types, JSON and folder given together,
    and every path it names present. Relative paths are taken from the file's folder."""
    path = Path(path).expanduser().absolute()
    if not path.is_file():
        raise PoliteTeacherError(f"dataset file {path} not found; `politeteacher split` writes a starter one, "
                                 "or see README, 'Your own data in 10 minutes'")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise _error(path, f"not valid YAML ({' '.join(str(e).split())})") from e
    if not isinstance(raw, dict):
        raise _error(path, "expected a mapping such as `train_json: annotations/train.json`")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise _error(path, f"unknown key(s) {', '.join(map(str, unknown))}; known keys: {', '.join(_KEYS)}")
    for key in (*_PATHS, "train", "val"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise _error(path, f"{key} must be a path or name (a string), got {raw[key]!r}")
    for key in ("unlabeled_images", "classes"):
        if isinstance(raw.get(key), str):
            raw[key] = [raw[key]]
        if raw.get(key) is not None and not (isinstance(raw[key], list) and all(isinstance(v, str) for v in raw[key])):
            raise _error(path, f"{key} must be a list of strings, got {raw[key]!r}")

    def resolved(value: str) -> Path:
        p = Path(value).expanduser()
        return (p if p.is_absolute() else path.parent / p).resolve()

    entries = {key: resolved(raw[key]) for key in _PATHS if raw.get(key)}
    for part in ("train", "val"):
        given = [k for k in (f"{part}_json", f"{part}_images") if k in entries]
        if len(given) == 1:
            other = f"{part}_images" if given[0].endswith("json") else f"{part}_json"
            raise _error(path, f"{given[0]} needs {other} too")
        if given and raw.get(part):
            raise _error(path, f"{part} (a dataset name) and {part}_json both name the {part} set; keep one")
    if "train_json" in entries and raw.get("val"):
        # a custom training set takes the preset's test set away (data.datasets.register_all)
        raise _error(path, "with train_json, give the validation set as val_json and val_images")
    for key, p in entries.items():
        exists = p.is_dir() if key.endswith("images") else p.is_file()
        if not exists:
            raise _error(path, f"{key} {p} not found")
    unlabeled = tuple(resolved(v) for v in raw.get("unlabeled_images") or ())
    for folder in unlabeled:
        if not folder.is_dir():
            raise _error(path, f"unlabeled_images folder {folder} not found")
    return DataFile(path=path, train=raw.get("train") or "", val=raw.get("val") or "",
                    unlabeled_images=unlabeled, classes=tuple(raw.get("classes") or ()), **entries)


def data_file_overrides(data: DataFile) -> List[str]:
    """The config overrides (``KEY VALUE``) that say what ``data`` says."""
    out = ["DATASETS.DATA_FILE", str(data.path)]
    for key, value in (
        ("DATASETS.CUSTOM.TRAIN_JSON", data.train_json), ("DATASETS.CUSTOM.TRAIN_IMAGES", data.train_images),
        ("DATASETS.CUSTOM.VAL_JSON", data.val_json), ("DATASETS.CUSTOM.VAL_IMAGES", data.val_images),
        ("DATASETS.SPLIT.FILE", data.split),
    ):
        if value is not None:
            out += [key, str(value)]
    if data.train:
        out += ["DATASETS.TRAIN", repr((data.train,))]
    if data.val:
        out += ["DATASETS.TEST", repr((data.val,))]
    if data.unlabeled_images:
        out += ["DATASETS.UNLABELED_IMAGE_DIRS", repr([str(p) for p in data.unlabeled_images])]
    if data.classes:
        out += ["DATASETS.CLASS_NAMES", repr(list(data.classes))]
    return out


def starter_data_file(train_json: Path, train_images: Path, split: Path) -> str:
    """The text of the dataset file `politeteacher split` writes beside its split: the training set and
    the split filled in, the other entries as comments to complete."""
    filled = {"train_json": str(train_json), "train_images": str(train_images), "split": str(split)}
    return (
        "# politeteacher dataset file (README, 'Your own data in 10 minutes'): pass it as --data.\n"
        "# Relative paths are relative to this file.\n"
        + yaml.safe_dump(filled, sort_keys=False)
        + "# val_json: annotations/val.json\n"
        "# val_images: images/val\n"
        "# unlabeled_images: [raw_images/]\n"
    )
