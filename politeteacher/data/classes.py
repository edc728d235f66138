"""The classes of a model, from its config alone: names and the dataset's category ids, without
registering, making or loading a dataset (what predict and the lean checkpoints need)."""
from __future__ import annotations

import json
from typing import Dict, List, Tuple

from detectron2.data import MetadataCatalog

from .datasets import GENERATED


def class_metadata(cfg) -> Tuple[List[str], Dict[int, int]]:
    """(class names, contiguous id -> dataset category id) for a config, without registering, making
    or loading a dataset (a demo run's config would otherwise generate the whole demo set for names).

    Names: DATASETS.CLASS_NAMES (a run's config.yaml records them), else the training set's categories,
    else "class <i>". Ids: the training set's category ids when they are known without loading it, else
    the contiguous ids (see `_training_categories`)."""
    num = cfg.MODEL.FCOS.NUM_CLASSES
    ids, dataset_names = _training_categories(cfg)
    names = list(cfg.DATASETS.CLASS_NAMES) or dataset_names
    if len(names) != num:
        names = [f"class {i}" for i in range(num)]
    if len(ids) != num:
        ids = list(range(num))
    return names, dict(enumerate(ids))


def _training_categories(cfg) -> Tuple[List[int], List[str]]:
    """(category ids, names) of the training set in detectron2's contiguous order (ids sorted), from
    what is known without loading it: the categories of DATASETS.CUSTOM.TRAIN_JSON when that file is
    at hand, the generated sets' categories (in code), or the metadata of a registered name (detectron2
    registers the COCO built-ins' on import). ([], []) otherwise."""
    name = cfg.DATASETS.TRAIN[0] if cfg.DATASETS.TRAIN else ""
    if cfg.DATASETS.CUSTOM.TRAIN_JSON:
        try:
            with open(cfg.DATASETS.CUSTOM.TRAIN_JSON) as f:
                cats = sorted((int(c["id"]), str(c["name"])) for c in json.load(f)["categories"])
        except (OSError, ValueError, KeyError, TypeError):  # not on this machine, or not COCO
            return [], []
    elif name in GENERATED:
        cats = sorted((c["id"], c["name"]) for c in GENERATED[name][3])
    elif name in MetadataCatalog.list():
        meta = MetadataCatalog.get(name)
        id_map, names = meta.get("thing_dataset_id_to_contiguous_id"), meta.get("thing_classes")
        if not id_map or not names or sorted(id_map.values()) != list(range(len(names))):
            return [], []
        cats = [(i, names[c]) for i, c in sorted(id_map.items(), key=lambda item: item[1])]
    else:
        return [], []
    return [i for i, _ in cats], [n for _, n in cats]
