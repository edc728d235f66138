"""Deterministic infinite batch streams: the batch of iteration *i* is a pure function of (seed, rank, i).

detectron2's training loaders draw from a sampler whose position is lost when a run stops, and their
augmentations draw from global random state, so a resumed run sees other images than an uninterrupted
one would. Here every iteration's image indices come from a seeded per-group permutation, and every
image is mapped under its own seed, so `--resume` at iteration N continues with exactly the batches an
uninterrupted run would have drawn at N, N+1, ... whatever the number of loader workers.
"""
from __future__ import annotations

import contextlib
import random
from functools import lru_cache
from typing import Callable, Iterator, List, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def draw_seed() -> int:
    """A fresh random seed in [0, 2**31), for SEED < 0 (detectron2's "random")."""
    return random.SystemRandom().randrange(2**31)


@contextlib.contextmanager
def seeded(*key: int):
    """Run a block with python, numpy and torch CPU random state seeded from `key`, then restore them."""
    seed = int(np.random.SeedSequence(list(key)).generate_state(1)[0])
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed)
        random.seed(seed)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


class IterationBatches(Dataset):
    """Item `i` is the list of mapped samples of iteration `i` for one worker process (rank).

    Images are grouped by aspect (landscape / portrait) so a batch pads little; each iteration picks a
    group with probability proportional to its size and takes the next `batch_size` images of that
    group's seeded permutation. Ranks draw from disjoint shards when a group is large enough.
    """

    def __init__(
        self,
        dicts: Sequence[dict],
        mapper: Callable[[dict], object],
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        group_by_aspect: bool = True,
    ):
        if not dicts:
            raise ValueError("a batch stream needs at least one image")
        self.dicts, self.mapper = list(dicts), mapper
        self.batch_size, self.seed, self.rank = batch_size, seed, rank
        groups: List[List[int]] = [[], []]
        for i, d in enumerate(self.dicts):
            landscape = d.get("width", 1) >= d.get("height", 1)
            groups[int(landscape) if group_by_aspect else 0].append(i)
        groups = [g for g in groups if g]
        self.groups = [g[rank::world_size] if len(g) >= world_size else g for g in groups]
        sizes = np.array([len(g) for g in self.groups], dtype=np.float64)
        self.group_p = sizes / sizes.sum()

    def __len__(self) -> int:  # an infinite stream; DataLoader only needs the sampler
        return np.iinfo(np.int64).max

    @lru_cache(maxsize=8)
    def _permutation(self, group: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, self.rank, group, epoch]).permutation(len(self.groups[group]))

    def batch_indices(self, iteration: int) -> List[int]:
        rng = np.random.default_rng([self.seed, self.rank, iteration, 0x5EED])
        g = int(rng.choice(len(self.groups), p=self.group_p))
        members, out = self.groups[g], []
        for j in range(self.batch_size):
            epoch, k = divmod(iteration * self.batch_size + j, len(members))
            out.append(members[int(self._permutation(g, epoch)[k])])
        return out

    def __getitem__(self, iteration: int) -> list:
        batch = []
        for j, i in enumerate(self.batch_indices(iteration)):
            with seeded(self.seed, self.rank, iteration, j):
                batch.append(self.mapper(self.dicts[i]))
        return batch


class _CountFrom(Sampler):
    def __init__(self, start: int):
        self.start = start

    def __iter__(self) -> Iterator[int]:
        i = self.start
        while True:
            yield i
            i += 1


def _as_is(batch):
    return batch


def iteration_loader(stream: IterationBatches, start_iter: int = 0, num_workers: int = 0) -> DataLoader:
    """An infinite loader over `stream` starting at iteration `start_iter`; order is kept with workers.

    The loader has a generator of its own: creating an iterator draws a base seed from it (unused:
    every sample is mapped under its own seed), which from torch's global generator would shift the
    random state of the step that first iterates (detectron2's SimpleTrainer does so inside the
    seeded training step): a resumed run's first step would sample other mask regions than the
    uninterrupted run did at that iteration."""
    return DataLoader(
        stream,
        sampler=_CountFrom(start_iter),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_as_is,
        persistent_workers=num_workers > 0,
        generator=torch.Generator(),
    )
