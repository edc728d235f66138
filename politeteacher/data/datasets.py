"""Dataset names a config can use, resolved at call time, and the checks that stop bad inputs early.

- COCO built-ins (``coco_2017_train``, ``coco_2017_val``, ...) under ``$DETECTRON2_DATASETS/coco``
  (default ``./datasets/coco``). detectron2 registers them when it is imported, with the variable as
  it was then; :func:`resolve_dataset` re-registers them with the variable as it is now.
- ``demo_train`` / ``demo_val`` / ``demo_test``: the generated shapes dataset, made on first use;
  ``demo_source_train`` / ``demo_source_val``: the generated set the demo model is pre-trained on.
- ``custom_train`` / ``custom_val``: ``DATASETS.CUSTOM.*`` COCO-format JSON + image folder.
- Raw image folders (``DATASETS.UNLABELED_IMAGE_DIRS``): :func:`load_image_folder`.

Every bad input raises :class:`PoliteTeacherError` with one line naming the path and what is expected.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Collection, Dict, List, Optional, Sequence, Tuple, Union

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin import _PREDEFINED_SPLITS_COCO
from detectron2.data.datasets.builtin_meta import _get_builtin_metadata
from detectron2.data.datasets.coco import load_coco_json
from PIL import Image

from ..errors import PoliteTeacherError
from ..io import IMAGE_EXTENSIONS, invalid_json, read_json
from .synthetic import CATEGORIES as DEMO_CATEGORIES
from .synthetic import SOURCE_CATEGORIES, datasets_root, demo_paths, ensure_demo_dataset, ensure_source_dataset, source_paths

logger = logging.getLogger(__name__)

__all__ = [
    "COCO_LAYOUT",
    "apply_dataset_classes",
    "dataset_json",
    "dataset_presence",
    "coco_locations",
    "datasets_root",
    "get_dataset_dicts",
    "image_files",
    "load_annotations",
    "load_image_folder",
    "oriented_size",
    "register_all",
    "register_coco_json",
    "resolve_dataset",
]

COCO_BUILTINS: Dict[str, Tuple[str, str]] = dict(_PREDEFINED_SPLITS_COCO["coco"])
COCO_LAYOUT = "$DETECTRON2_DATASETS/coco/{train2017,val2017,annotations}"
# Generated datasets, made on first use: name -> (split, paths, ensure, categories).
GENERATED = {
    **{f"demo_{split}": (split, demo_paths, ensure_demo_dataset, DEMO_CATEGORIES) for split in ("train", "val", "test")},
    **{f"demo_source_{split}": (split, source_paths, ensure_source_dataset, SOURCE_CATEGORIES) for split in ("train", "val")},
}
_EXIF_ORIENTATION = 0x0112


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _load_checked(json_file: str, image_root: str, name: Optional[str], layout: str,
                  check_images: bool = True) -> List[dict]:
    """load_coco_json, with every failure turned into one line naming the file; with
    ``check_images``, a missing first or last image (a wrong folder) is one too."""
    if not os.path.isfile(json_file):
        raise PoliteTeacherError(f"{json_file} not found: expected {layout}")
    try:
        dicts = load_coco_json(json_file, image_root, name)
    except json.JSONDecodeError as e:
        raise invalid_json(json_file, e, layout) from e
    except (KeyError, ValueError, TypeError, AssertionError, IndexError, AttributeError) as e:
        raise PoliteTeacherError(
            f"{json_file} is not a COCO instances file ({_first_line(e)}): expected a JSON object "
            "with 'images', 'annotations' and 'categories'"
        ) from e
    if image_root and check_images:
        for d in dicts[:1] + dicts[-1:]:  # a wrong image folder shows on the first file already
            if not os.path.isfile(d["file_name"]):
                raise PoliteTeacherError(
                    f"{d['file_name']} (listed in {json_file}) not found: expected the images "
                    f"of that file under {image_root}"
                )
    return dicts


# name -> (json_file, image_root) of what register_coco_json registered in this process.
_REGISTERED: Dict[str, Tuple[str, str]] = {}


def register_coco_json(
    name: str, json_file: Union[str, os.PathLike], image_root: Union[str, os.PathLike],
    layout: str = "", **metadata,
) -> None:
    """Register (or re-register) a COCO-format dataset whose loading errors are one-line
    PoliteTeacherErrors. ``layout`` is the expected layout quoted in those messages."""
    json_file, image_root = str(json_file), str(image_root)
    layout = layout or f"a COCO instances JSON for the images in {image_root}"
    DatasetCatalog.pop(name, None)
    MetadataCatalog.pop(name, None)
    DatasetCatalog.register(
        name, lambda: _load_checked(json_file, image_root, name, layout)
    )
    MetadataCatalog.get(name).set(
        json_file=json_file, image_root=image_root, evaluator_type="coco", **metadata
    )
    _REGISTERED[name] = (json_file, image_root)


def _ensure_registered(name: str, json_file: Path, image_root: Path, layout: str, **metadata) -> None:
    """Register ``name`` with these paths unless this module already did (detectron2's own
    import-time registration of a built-in name does not count: its errors are tracebacks)."""
    if _REGISTERED.get(name) != (str(json_file), str(image_root)) or name not in DatasetCatalog:
        register_coco_json(name, json_file, image_root, layout, **metadata)


def _categories_metadata(categories: Sequence[dict]) -> dict:
    """thing_classes and the id map exactly as detectron2's load_coco_json derives them."""
    cats = sorted(categories, key=lambda c: c["id"])
    return {
        "thing_classes": [c["name"] for c in cats],
        "thing_dataset_id_to_contiguous_id": {c["id"]: i for i, c in enumerate(cats)},
    }


def _check_exists(json_file: Path, image_root: Path, layout: str) -> None:
    if not json_file.is_file():
        raise PoliteTeacherError(f"{json_file} not found: expected {layout}")
    if not image_root.is_dir():
        raise PoliteTeacherError(f"{image_root} not found: expected {layout}")


def _coco_paths(name: str, root: Optional[Path] = None) -> Tuple[Path, Path]:
    root = datasets_root() if root is None else Path(root)
    image_dir, json_file = COCO_BUILTINS[name]
    return root / json_file, root / image_dir


def coco_locations(root: Optional[Union[str, os.PathLike]] = None) -> Dict[str, Tuple[Path, Path]]:
    """name -> (annotation JSON, image folder) where COCO 2017 train and val are looked up."""
    return {name: tuple(_coco_paths(name, None if root is None else Path(root)))
            for name in ("coco_2017_train", "coco_2017_val")}


def dataset_presence(root: Optional[Union[str, os.PathLike]] = None) -> Dict[str, Tuple[str, bool]]:
    """For `doctor`: name -> (where it is looked up, present?) for COCO 2017 train and val."""
    out = {}
    for name, (json_file, image_root) in coco_locations(root).items():
        where = f"{image_root} + {json_file}"
        out[name] = (where, json_file.is_file() and image_root.is_dir())
    return out


def _read_custom(json_file: Path, image_root: Path, layout: str) -> dict:
    """Check a custom COCO JSON + image folder and return its category metadata."""
    _check_exists(json_file, image_root, layout)
    data = read_json(json_file, layout)
    cats = data.get("categories") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("images"), list)
        or not isinstance(data.get("annotations", []), list)
        or not cats
        or not all(isinstance(c, dict) and isinstance(c.get("id"), int) and "name" in c for c in cats)
    ):
        raise PoliteTeacherError(
            f"{json_file} is not a COCO instances file: expected a JSON object with 'images', "
            "'annotations' and a non-empty 'categories' list of {id, name}"
        )
    return _categories_metadata(cats)


def resolve_dataset(name: str, validate: bool = True) -> None:
    """Make ``name`` loadable from DatasetCatalog with paths as of now; with ``validate``, check
    that its files exist (a one-line PoliteTeacherError otherwise)."""
    if name in COCO_BUILTINS:
        json_file, image_root = _coco_paths(name)
        layout = f"{COCO_LAYOUT}; set DETECTRON2_DATASETS or see README"
        _ensure_registered(name, json_file, image_root, layout, **_get_builtin_metadata("coco"))
        if validate:
            _check_exists(json_file, image_root, layout)
    elif name in GENERATED:
        split, paths, ensure, categories = GENERATED[name]
        json_file, image_root = paths()[split]
        ensure()
        _ensure_registered(
            name, json_file, image_root,
            "a generated dataset; delete its folder to have it made again",
            **_categories_metadata(categories),
        )
    elif name not in DatasetCatalog.list():
        raise PoliteTeacherError(
            f"unknown dataset {name!r}: use a COCO name such as coco_2017_train / coco_2017_val "
            f"(under {COCO_LAYOUT}), demo_train / demo_val, or set DATASETS.CUSTOM.TRAIN_JSON etc."
        )


def register_all(cfg: CfgNode, validate: bool = True) -> CfgNode:
    """Make every dataset name ``cfg`` uses resolvable, and return a (defrosted) copy of ``cfg``.

    ``DATASETS.CUSTOM.TRAIN_JSON/TRAIN_IMAGES`` register ``custom_train`` and make it
    DATASETS.TRAIN (and, without a custom val set, DATASETS.TEST empty: nothing to evaluate on);
    ``VAL_JSON/VAL_IMAGES`` register ``custom_val`` and make it DATASETS.TEST.
    With ``validate``, missing files or folders (datasets and DATASETS.UNLABELED_IMAGE_DIRS) stop
    here with one line each; a broken COCO JSON stops when the dataset is loaded.
    """
    cfg = cfg.clone()
    cfg.defrost()
    custom = cfg.DATASETS.CUSTOM
    for split, key in (("train", "TRAIN"), ("val", "VAL")):
        json_file, images = custom.get(f"{key}_JSON"), custom.get(f"{key}_IMAGES")
        if not json_file and not images:
            continue
        if not json_file or not images:
            missing = f"DATASETS.CUSTOM.{key}_{'JSON' if not json_file else 'IMAGES'}"
            raise PoliteTeacherError(
                f"{missing} is not set: a custom {split} set needs both "
                f"DATASETS.CUSTOM.{key}_JSON (COCO instances JSON) and {key}_IMAGES (image folder)"
            )
        name = f"custom_{split}"
        layout = f"DATASETS.CUSTOM.{key}_JSON = a COCO instances JSON, images under {key}_IMAGES"
        meta = _read_custom(Path(json_file), Path(images), layout)
        register_coco_json(name, json_file, images, layout, **meta)
        if split == "train":
            cfg.DATASETS.TRAIN = (name,)
            if not custom.VAL_JSON:
                cfg.DATASETS.TEST = ()
        else:
            cfg.DATASETS.TEST = (name,)
    for name in list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST):
        resolve_dataset(name, validate=validate)
    if validate:
        for folder in cfg.DATASETS.UNLABELED_IMAGE_DIRS:
            if not Path(folder).is_dir():
                raise PoliteTeacherError(
                    f"{folder} not found: DATASETS.UNLABELED_IMAGE_DIRS expects folders of images"
                )
    return cfg


def get_dataset_dicts(name: str) -> List[dict]:
    """The dataset dicts of a name (resolved first), as detectron2 loads them (no filtering)."""
    resolve_dataset(name, validate=False)
    return DatasetCatalog.get(name)


def load_annotations(name: str) -> List[dict]:
    """The dataset dicts of ``name`` even when some of its images are missing (`check-data` reports
    each one, where loading for training stops at a wrong image folder)."""
    resolve_dataset(name, validate=True)
    if name not in _REGISTERED:  # registered by other code: load it as that code does
        return DatasetCatalog.get(name)
    json_file, image_root = _REGISTERED[name]
    return _load_checked(json_file, image_root, name, f"a COCO instances JSON for the images in {image_root}",
                         check_images=False)


def dataset_json(name: str) -> Optional[Path]:
    """The annotation JSON a registered dataset was loaded from, or None."""
    json_file = MetadataCatalog.get(name).get("json_file")
    return Path(json_file) if json_file else None


def _thing_classes(name: str) -> List[str]:
    meta = MetadataCatalog.get(name)
    if meta.get("thing_classes") is None:
        DatasetCatalog.get(name)  # loading a COCO JSON fills in its classes
    classes = meta.get("thing_classes")
    if not classes:
        raise PoliteTeacherError(f"dataset {name!r} has no categories (thing_classes); cannot train on it")
    return list(classes)


def apply_dataset_classes(cfg: CfgNode) -> CfgNode:
    """Return a copy of ``cfg`` whose class count (MODEL.FCOS.NUM_CLASSES, MODEL.ROI_HEADS.NUM_CLASSES)
    and DATASETS.CLASS_NAMES follow the training set's categories (run :func:`register_all` first).
    Category ids of COCO-format sets stay in outputs through the dataset's
    ``thing_dataset_id_to_contiguous_id`` metadata. A test set with other classes is an error, and so
    are class names given beforehand (a dataset file's ``classes``, a run's config.yaml) that differ."""
    names = list(cfg.DATASETS.TRAIN)
    if not names:
        raise PoliteTeacherError("DATASETS.TRAIN is empty: name a training dataset")
    classes = _thing_classes(names[0])
    expected = list(cfg.DATASETS.CLASS_NAMES)
    if expected and expected != classes:
        raise PoliteTeacherError(
            f"dataset {names[0]!r} has the classes {classes}, not {expected} (DATASETS.CLASS_NAMES: the "
            "dataset file's `classes`, or the run's config.yaml): fix the list, or use data with those classes"
        )
    for other in names[1:] + list(cfg.DATASETS.TEST):
        other_classes = _thing_classes(other)
        if other_classes != classes:
            raise PoliteTeacherError(
                f"dataset {other!r} has {len(other_classes)} classes that differ from those of "
                f"{names[0]!r} ({len(classes)}): train and test sets must share their categories"
            )
    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.FCOS.NUM_CLASSES = len(classes)
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = len(classes)
    cfg.DATASETS.CLASS_NAMES = classes
    return cfg


def oriented_size(image: Image.Image) -> Tuple[int, int]:
    """(width, height) of an opened image once its EXIF orientation is applied, as detectron2's
    ``read_image`` applies it (which treats an unreadable EXIF block as no orientation)."""
    width, height = image.size
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # as detectron2: a broken EXIF block must not stop the image from loading
        orientation = None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)  # 90-degree turns


def image_files(folder: Union[str, os.PathLike]) -> List[Path]:
    """The images under ``folder`` (recursively, by extension, hidden files skipped), sorted and
    resolved; a one-line PoliteTeacherError when the folder is missing or holds none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PoliteTeacherError(f"{folder} not found: expected a folder of images ({', '.join(IMAGE_EXTENSIONS)})")
    files = sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )
    if not files:
        raise PoliteTeacherError(f"no images in {folder}: expected files ending in {', '.join(IMAGE_EXTENSIONS)}")
    return [p.resolve() for p in files]


def load_image_folder(folder: Union[str, os.PathLike], skip: Collection[str] = ()) -> List[dict]:
    """Dataset dicts (file_name, height, width, image_id) for every image under ``folder``
    (see :func:`image_files`) whose path is not in ``skip``. The image id is the string
    ``"unlabeled:<absolute path>"``, which cannot clash with a COCO-format set's integer ids.
    Sizes follow the EXIF orientation, as detectron2's ``read_image`` does."""
    dicts = []
    for path in image_files(folder):
        if str(path) in skip:
            continue
        try:
            with Image.open(path) as im:
                width, height = oriented_size(im)
        except (OSError, SyntaxError, ValueError) as e:
            raise PoliteTeacherError(f"{path} is not a readable image ({_first_line(e)}): remove or replace it") from e
        dicts.append({"file_name": str(path), "height": height, "width": width,
                      "image_id": f"unlabeled:{path}"})
    return dicts
