import itertools

import numpy as np
import torch

from politeteacher.data.streams import IterationBatches, iteration_loader


def _dicts(n=10):
    # 7 landscape and 3 portrait images
    return [{"id": i, "width": 30 if i < 7 else 10, "height": 20} for i in range(n)]


def _mapper(d):
    # randomness from all three generators, as detectron2 and torchvision augmentations use them
    return (d["id"], float(np.random.rand()), float(torch.rand(1)))


def _take(loader, n):
    return list(itertools.islice(iter(loader), n))


def test_batches_are_a_pure_function_of_the_iteration():
    stream = IterationBatches(_dicts(), _mapper, batch_size=2, seed=3)
    full = _take(iteration_loader(stream, 0), 12)
    resumed = _take(iteration_loader(IterationBatches(_dicts(), _mapper, 2, seed=3), start_iter=5), 7)
    assert resumed == full[5:]
    assert _take(iteration_loader(IterationBatches(_dicts(), _mapper, 2, seed=4), 0), 12) != full


def test_batches_group_by_aspect_and_cover_each_group():
    stream = IterationBatches(_dicts(), _mapper, batch_size=3, seed=0)
    seen = set()
    for it in range(40):
        ids = stream.batch_indices(it)
        assert len({i < 7 for i in ids}) == 1  # one aspect group per batch
        seen.update(ids)
    assert seen == set(range(10))


def test_workers_keep_order_and_values():
    stream = IterationBatches(_dicts(), _mapper, batch_size=2, seed=1)
    assert _take(iteration_loader(stream, 2, num_workers=2), 6) == _take(iteration_loader(stream, 2), 6)


def test_ranks_draw_from_disjoint_shards():
    a = IterationBatches(_dicts(), _mapper, 2, seed=0, rank=0, world_size=2)
    b = IterationBatches(_dicts(), _mapper, 2, seed=0, rank=1, world_size=2)
    ids_a = {i for it in range(30) for i in a.batch_indices(it)}
    ids_b = {i for it in range(30) for i in b.batch_indices(it)}
    assert ids_a and ids_b and not ids_a & ids_b


def test_starting_a_loader_leaves_the_global_random_state_alone():
    # detectron2's trainer starts iterating inside the seeded training step: a draw from torch's
    # global generator there would change that step's randomness (first step after a resume).
    loader = iteration_loader(IterationBatches(_dicts(), _mapper, 2, seed=0), start_iter=4)
    before = torch.get_rng_state()
    next(iter(loader))
    assert torch.equal(torch.get_rng_state(), before)
