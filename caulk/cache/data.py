"""Cached prefix outputs served as the batches the uncached path would draw (same samplers, seeds)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from caulk.cache.extract import CachedFeatures
from caulk.data.sharding import eval_loader, train_loader


class IndexedBatches(torch.utils.data.Dataset):
    """(x, y, index) rows of tensors, fetched a batch at a time (no per-row collation)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        self.x, self.y, self.index = x, y, index

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], self.index[i]

    def __getitems__(self, rows: list[int]):
        t = torch.as_tensor(rows)
        return self.x[t], self.y[t], self.index[t]


def take_batch(batch):
    """The collate function of ``IndexedBatches``: a fetched batch is already collated."""
    return batch


class CachedFeatureDataModule:
    """Wraps a DownstreamDataModule: same splits, samplers and seeds, cached tensors for images."""

    def __init__(self, datamodule, features: CachedFeatures):
        self.dm = datamodule
        self.features = features

    def __getattr__(self, name):  # n, pool_size, val_idx, num_classes, ... of the wrapped module
        return getattr(self.dm, name)

    def _loader(self, x: torch.Tensor, y: torch.Tensor, idx, shuffle: bool) -> DataLoader:
        t = torch.as_tensor(idx)
        ds = IndexedBatches(x[t], y[t], t)
        batch_size = int(self.dm.cfg.batch_size)
        if shuffle:  # the same exact-n, seeded, resumable samplers as the uncached path
            return train_loader(ds, batch_size, self.dm.seed, collate_fn=take_batch)
        return eval_loader(ds, batch_size, collate_fn=take_batch)

    def labels(self, part: str) -> torch.Tensor:
        """The labels of the whole ``pool`` or ``test`` split, in dataset order."""
        s = self.dm.splits
        return torch.as_tensor(s.pool_labels if part == "pool" else s.test_labels).long()

    def train_dataloader(self) -> DataLoader:
        return self._loader(
            self.features.pool, self.labels("pool"), self.dm.train_idx, shuffle=True
        )

    def val_dataloader(self) -> DataLoader | list:
        if len(self.dm.val_idx) == 0:
            return []
        return self._loader(self.features.pool, self.labels("pool"), self.dm.val_idx, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        n = len(self.features.test)
        return self._loader(self.features.test, self.labels("test"), range(n), shuffle=False)
