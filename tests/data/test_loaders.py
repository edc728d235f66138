import itertools

import pytest
import torch
from detectron2.data import DatasetCatalog

from politeteacher.data import loaders
from politeteacher.data.datasets import register_all
from politeteacher.data.loaders import (
    build_labeled_loader,
    build_test_loader,
    build_unlabeled_loader,
    per_worker_batch,
)
from politeteacher.data.mappers import TwoViewMapper
from politeteacher.data.splits import labeled_and_unlabeled
from politeteacher.errors import PoliteTeacherError


@pytest.fixture
def pools(toy_cfg):
    cfg = register_all(toy_cfg)
    cfg.DATASETS.SPLIT.PERCENT = 50.0
    return cfg, *labeled_and_unlabeled(cfg)


def _take(loader, n):
    return list(itertools.islice(iter(loader), n))


def test_labeled_loader_yields_batches_of_the_total(pools):
    cfg, labeled, _ = pools
    batches = _take(build_labeled_loader(cfg, labeled), 4)
    for batch in batches:
        assert isinstance(batch, list) and len(batch) == cfg.SOLVER.IMS_PER_BATCH == 4
        assert all("instances" in d for d in batch)
        assert len({d["width"] > d["height"] for d in batch}) == 1  # grouped by aspect ratio
    ids = {d["image_id"] for b in batches for d in b}
    assert ids <= {d["image_id"] for d in labeled} and len(ids) > 4  # shuffled through the pool


def test_unlabeled_loader_yields_view_pairs(pools):
    cfg, _, unlabeled = pools
    for batch in _take(build_unlabeled_loader(cfg, unlabeled), 3):
        assert len(batch) == cfg.SOLVER.IMS_PER_BATCH_UNLABELED == 2
        for weak, strong in batch:
            assert weak["file_name"] == strong["file_name"]
            assert "instances" not in weak and "instances" not in strong


def test_labeled_two_view_loader(pools):
    cfg, labeled, _ = pools
    batch = _take(build_labeled_loader(cfg, labeled, TwoViewMapper(cfg, labeled=True)), 1)[0]
    assert len(batch) == 4 and all("instances" in v for pair in batch for v in pair)


def _ids(batches):
    return [[d["image_id"] for d in b] for b in batches]


def test_loader_order_follows_the_seed(pools):
    cfg, labeled, _ = pools

    def order(seed):
        cfg.SEED = seed
        return _ids(_take(build_labeled_loader(cfg, labeled), 3))

    assert order(5) == order(5) and order(5) != order(6)


def test_a_loader_started_later_continues_the_same_batches(pools):
    """What --resume relies on: starting at iteration 3 gives batches 3, 4, ... of a loader started
    at 0, images and augmentation (flip) alike."""
    cfg, labeled, _ = pools
    cfg.SEED = 3
    whole = _take(build_labeled_loader(cfg, labeled), 6)
    later = _take(build_labeled_loader(cfg, labeled, start_iter=3), 3)
    assert _ids(later) == _ids(whole[3:])
    for a, b in zip(whole[3:], later):
        assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a, b))


def test_batch_totals_must_divide_over_workers(pools, monkeypatch):
    cfg, labeled, unlabeled = pools
    cfg.SOLVER.IMS_PER_BATCH = 0
    with pytest.raises(PoliteTeacherError, match="SOLVER.IMS_PER_BATCH = 0"):
        build_labeled_loader(cfg, labeled)
    monkeypatch.setattr(loaders.comm, "get_world_size", lambda: 3)
    assert per_worker_batch(6, "SOLVER.IMS_PER_BATCH") == 2
    cfg.SOLVER.IMS_PER_BATCH_UNLABELED = 4
    with pytest.raises(PoliteTeacherError, match="SOLVER.IMS_PER_BATCH_UNLABELED = 4 .* multiple of 3"):
        build_unlabeled_loader(cfg, unlabeled)


def test_empty_pools_are_errors(pools):
    cfg, _, _ = pools
    with pytest.raises(PoliteTeacherError, match="no labelled images"):
        build_labeled_loader(cfg, [])
    with pytest.raises(PoliteTeacherError, match="unlabelled pool is empty"):
        build_unlabeled_loader(cfg, [])


def test_test_loader(pools):
    cfg, _, _ = pools
    batches = list(build_test_loader(cfg, "custom_train"))
    assert len(batches) == len(DatasetCatalog.get("custom_train")) == 22
    assert all(len(b) == 1 and min(b[0]["image"].shape[1:]) == 64 for b in batches)
