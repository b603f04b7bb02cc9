"""Exact-n batch samplers: every example once per epoch on any number of ranks, resumable mid-epoch.

``DistributedSampler`` pads the last shard with repeated examples (pytorch#25162), which trains
on more than n examples and counts some test examples twice. caulk builds its own samplers
instead (the trainer runs with ``use_distributed_sampler=False``):

- ``TrainBatchSampler``: one seeded permutation of the n training examples per epoch, the same on
  every rank; with world size 1 the batches are exactly those of
  ``DataLoader(shuffle=True, generator=...)``; with w ranks each optimizer step splits a global
  chunk into w near-equal batches, so all ranks take the same number of steps and no example is
  repeated or dropped.
- ``ShardSampler``: evaluation order, rank r takes examples r, r+w, ... (uneven shards, no
  padding); metrics are summed over ranks (torchmetrics sync), so each example counts once.

Both read the rank and world size when iterated (after the trainer set up the process group).
``ResumableLoader`` is a DataLoader whose ``state_dict`` lets Lightning resume mid-epoch with
the same batches an uninterrupted run would have drawn.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from caulk.errors import CaulkConfigError


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the initialized process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _split(total: int, parts: int) -> list[int]:
    """``parts`` sizes summing to ``total``, differing by at most one (larger first)."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def train_batches(perm: list[int], batch_size: int, rank: int, world: int) -> list[list[int]]:
    """This rank's batches of one epoch's permutation (see ``TrainBatchSampler``)."""
    n = len(perm)
    if world == 1:
        return [perm[i : i + batch_size] for i in range(0, n, batch_size)]
    steps = math.ceil(n / (batch_size * world))
    if n < steps * world:
        raise CaulkConfigError(
            f"n={n} is too small to give each of {world} ranks a batch at every step; "
            f"use fewer devices or a larger n"
        )
    sizes = _split(n, steps * world)
    starts = [sum(sizes[:j]) for j in range(len(sizes))]
    return [
        perm[starts[j] : starts[j] + sizes[j]] for j in (s * world + rank for s in range(steps))
    ]


class TrainBatchSampler(Sampler[list[int]]):
    """Shuffled batches of dataset positions, one permutation per epoch from ``generator``.

    The generator is the DataLoader's, so with one rank the sequence of random draws (the
    loader's base seed, then the permutation) matches ``DataLoader(shuffle=True)`` exactly.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n = n
        self.batch_size = batch_size
        self.generator = generator
        self.epoch_state: torch.Tensor | None = None  # generator state before this epoch's draw
        self.consumed = 0  # batches handed out in the current epoch
        self._resume: tuple[torch.Tensor, int] | None = None

    def __len__(self) -> int:
        _, world = rank_and_world()
        return math.ceil(self.n / (self.batch_size * world))

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = rank_and_world()
        skip = 0
        if self._resume is not None:
            state, skip = self._resume
            self.generator.set_state(state)
            self._resume = None
        self.epoch_state = self.generator.get_state()
        perm = torch.randperm(self.n, generator=self.generator).tolist()
        if world == 1:  # RandomSampler also draws an empty tail permutation
            torch.randperm(self.n, generator=self.generator)
        batches = train_batches(perm, self.batch_size, rank, world)
        self.consumed = skip
        for batch in batches[skip:]:
            self.consumed += 1
            yield batch

    def resume(self, state: torch.Tensor, skip: int) -> None:
        """Make the next epoch replay the saved permutation, skipping ``skip`` batches."""
        self._resume = (state, skip)


class ShardSampler(Sampler[int]):
    """Positions ``rank, rank + w, ...`` of ``range(n)`` in order: uneven shards, no padding."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        rank, world = rank_and_world()
        return len(range(rank, self.n, world))

    def __iter__(self) -> Iterator[int]:
        rank, world = rank_and_world()
        return iter(range(rank, self.n, world))


class ResumableLoader(DataLoader):
    """A training DataLoader that Lightning can checkpoint and resume mid-epoch.

    ``state_dict`` holds the generator state that drew the current epoch's permutation and the
    number of batches the model has trained on in that epoch; loading it replays that
    permutation and skips those batches.
    """

    batches_done = 0  # counted by TransferModule.training_step (Lightning prefetches batches)

    def __iter__(self):
        pending = self.batch_sampler._resume
        self.batches_done = 0 if pending is None else pending[1]
        return super().__iter__()

    def state_dict(self) -> dict[str, Any]:
        sampler: TrainBatchSampler = self.batch_sampler
        state = sampler.epoch_state
        return {
            "generator": None if state is None else state.clone(),
            "batches_done": int(self.batches_done),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("generator") is not None:
            self.batch_sampler.resume(state["generator"], int(state["batches_done"]))


def train_loader(dataset, batch_size: int, seed: int, **kwargs: Any) -> ResumableLoader:
    """The training loader: exact-n shards, seeded shuffling, resumable."""
    generator = torch.Generator().manual_seed(seed)
    sampler = TrainBatchSampler(len(dataset), batch_size, generator)
    return ResumableLoader(dataset, batch_sampler=sampler, generator=generator, **kwargs)


def eval_loader(dataset, batch_size: int, **kwargs: Any) -> DataLoader:
    """An evaluation loader: each rank takes its own uneven shard, in order."""
    return DataLoader(dataset, batch_size=batch_size, sampler=ShardSampler(len(dataset)), **kwargs)
