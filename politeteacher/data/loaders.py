"""Training loaders (infinite, resumable) and the test loader; batch sizes are totals over workers.

A training loader yields, per iteration, this worker's list of mapped samples: dicts with the
:class:`~.mappers.WeakMapper`, ``(weak, strong)`` pairs of the same image with the
:class:`~.mappers.TwoViewMapper`. Batch *i* is a pure function of (SEED, rank, *i*)
(:class:`~.streams.IterationBatches`), so a loader started at ``start_iter`` continues an interrupted
run with exactly the batches the uninterrupted run drew, whatever DATALOADER.NUM_WORKERS is.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from detectron2.config import CfgNode
from detectron2.data import build_detection_test_loader
from detectron2.utils import comm
from torch.utils.data import DataLoader

from ..errors import PoliteTeacherError
from .mappers import TwoViewMapper, WeakMapper
from .streams import IterationBatches, draw_seed, iteration_loader

__all__ = ["build_labeled_loader", "build_unlabeled_loader", "build_test_loader", "per_worker_batch"]


def per_worker_batch(total: int, key: str, world: Optional[int] = None) -> int:
    """``total // world`` (default: this process group's size); an error naming the config ``key``
    unless it divides evenly. Training commands check their batch keys before launching
    (``engine.run.check_config``)."""
    world = comm.get_world_size() if world is None else world
    if total <= 0 or total % world:
        raise PoliteTeacherError(
            f"{key} = {total} is a total over {world} worker(s) and must divide evenly: pass a positive "
            f"multiple of {world}, e.g. {key} {max(world, total // world * world)}"
        )
    return total // world


def _build(cfg: CfgNode, dicts: Sequence[dict], mapper: Callable, key: str, seed_offset: int, what: str,
           start_iter: int) -> DataLoader:
    batch = per_worker_batch(int(cfg.SOLVER.get(key)), f"SOLVER.{key}")
    if not dicts:
        raise PoliteTeacherError(what)
    # A negative SEED (detectron2's "random") gives a random order; training commands draw one
    # SEED for all workers beforehand and record it (engine.run.prepare_training_cfg).
    seed = cfg.SEED + seed_offset if cfg.SEED >= 0 else draw_seed()
    stream = IterationBatches(
        dicts, mapper, batch, seed=seed, rank=comm.get_rank(),
        world_size=comm.get_world_size(), group_by_aspect=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
    )
    return iteration_loader(stream, start_iter, cfg.DATALOADER.NUM_WORKERS)


def build_labeled_loader(
    cfg: CfgNode, dicts: Sequence[dict], mapper: Optional[Callable] = None, start_iter: int = 0
) -> DataLoader:
    """The labelled images' batches from iteration ``start_iter`` on; SOLVER.IMS_PER_BATCH images
    per step in total. Default mapper: :class:`WeakMapper` (the baseline); Polite Teacher passes
    ``TwoViewMapper(cfg, labeled=True)`` for weak + strong labelled views. Seeded with cfg.SEED."""
    return _build(
        cfg, dicts, mapper or WeakMapper(cfg, is_train=True), "IMS_PER_BATCH", 0,
        "no labelled images to train on: the training set has no image with a non-crowd annotation",
        start_iter,
    )


def build_unlabeled_loader(
    cfg: CfgNode, dicts: Sequence[dict], mapper: Optional[Callable] = None, start_iter: int = 0
) -> DataLoader:
    """The unlabelled pool's batches from iteration ``start_iter`` on; SOLVER.IMS_PER_BATCH_UNLABELED
    images per step in total. Default mapper: ``TwoViewMapper(cfg, labeled=False)``. Seeded with
    cfg.SEED + 1 (another order than the labelled loader's)."""
    return _build(
        cfg, dicts, mapper or TwoViewMapper(cfg, is_train=True, labeled=False),
        "IMS_PER_BATCH_UNLABELED", 1,
        "the unlabelled pool is empty: use DATASETS.SPLIT.PERCENT below 100 (or a split file), "
        "or add folders to DATASETS.UNLABELED_IMAGE_DIRS",
        start_iter,
    )


def build_test_loader(cfg: CfgNode, dataset_name: str, mapper: Optional[Callable] = None):
    """detectron2's test loader over one dataset, with the weak test-time resize by default."""
    return build_detection_test_loader(
        cfg, dataset_name, mapper=mapper or WeakMapper(cfg, is_train=False)
    )
