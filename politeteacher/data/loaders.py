"""Infinite, shuffled, aspect-ratio-grouped training loaders; batch sizes are totals over workers.

A loader whose mapper returns one dict yields ``list[dict]`` (detectron2's usual batch). A loader
whose mapper returns a view pair (:class:`~.mappers.TwoViewMapper`) yields ``(weak_list,
strong_list)``: two lists of the per-worker batch size, element i of both being the same image.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

from detectron2.config import CfgNode
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data.samplers import TrainingSampler
from detectron2.utils import comm

from ..errors import PoliteTeacherError
from .mappers import TwoViewMapper, WeakMapper

__all__ = ["build_labeled_loader", "build_unlabeled_loader", "build_test_loader", "per_worker_batch"]


def per_worker_batch(total: int, key: str) -> int:
    """``total // world size``; an error naming the config ``key`` unless it divides evenly."""
    world = comm.get_world_size()
    if total <= 0 or total % world:
        raise PoliteTeacherError(
            f"{key} = {total} is a total over all {world} worker(s): it must be a positive "
            f"multiple of {world}"
        )
    return total // world


class _Sized:
    """Wraps a mapper so that detectron2's aspect-ratio grouping (which reads ``width`` and
    ``height``) also works for view pairs; :func:`_collate` unwraps the batch again."""

    def __init__(self, mapper: Callable):
        self.mapper = mapper

    def __call__(self, dataset_dict: dict):
        out = self.mapper(dataset_dict)
        if out is None:  # detectron2's MapDataset retries another image
            return None
        first = out[0] if isinstance(out, tuple) else out
        return {"width": first["width"], "height": first["height"], "item": out}


def _collate(batch: List[dict]):
    items = [b["item"] for b in batch]
    if isinstance(items[0], tuple):
        return tuple(list(view) for view in zip(*items))
    return items


def _build(cfg: CfgNode, dicts: Sequence[dict], mapper: Callable, key: str, seed_offset: int, what: str):
    total = int(cfg.SOLVER.get(key))
    per_worker_batch(total, f"SOLVER.{key}")
    if not dicts:
        raise PoliteTeacherError(what)
    seed = cfg.SEED + seed_offset if cfg.SEED >= 0 else None
    return build_detection_train_loader(
        list(dicts),
        mapper=_Sized(mapper),
        sampler=TrainingSampler(len(dicts), shuffle=True, seed=seed),
        total_batch_size=total,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=_collate,
    )


def build_labeled_loader(cfg: CfgNode, dicts: Sequence[dict], mapper: Optional[Callable] = None):
    """Infinite loader over the labelled dicts; SOLVER.IMS_PER_BATCH images per step in total.
    Default mapper: :class:`WeakMapper` (the baseline); pass ``TwoViewMapper(cfg, labeled=True)``
    for Polite Teacher's weak + strong labelled views. Shuffled with seed cfg.SEED."""
    return _build(
        cfg, dicts, mapper or WeakMapper(cfg, is_train=True), "IMS_PER_BATCH", 0,
        "no labelled images to train on: the training set has no image with a non-crowd annotation",
    )


def build_unlabeled_loader(cfg: CfgNode, dicts: Sequence[dict], mapper: Optional[Callable] = None):
    """Infinite loader over the unlabelled pool; SOLVER.IMS_PER_BATCH_UNLABELED images per step in
    total. Default mapper: ``TwoViewMapper(cfg, labeled=False)``. Shuffled with seed cfg.SEED + 1
    (another order than the labelled loader's)."""
    return _build(
        cfg, dicts, mapper or TwoViewMapper(cfg, is_train=True, labeled=False),
        "IMS_PER_BATCH_UNLABELED", 1,
        "the unlabelled pool is empty: use DATASETS.SPLIT.PERCENT below 100 (or a split file), "
        "or add folders to DATASETS.UNLABELED_IMAGE_DIRS",
    )


def build_test_loader(cfg: CfgNode, dataset_name: str, mapper: Optional[Callable] = None):
    """detectron2's test loader over one dataset, with the weak test-time resize by default."""
    return build_detection_test_loader(
        cfg, dataset_name, mapper=mapper or WeakMapper(cfg, is_train=False)
    )
