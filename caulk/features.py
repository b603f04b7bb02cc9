"""Feature caching for frozen backbones: pay for the frozen forward pass once per process.

When nothing inside the backbone trains (``peft=linear``) and training images are not augmented,
the backbone's output for every pool and test example is computed once, in eval mode, and every
point of a curve trains its head on those tensors. Batches come in the same order as on the
uncached path (same samplers and seeds), so results agree to floating-point noise (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from caulk.data.base import IndexedTensorDataset
from caulk.data.sharding import eval_loader, train_loader


@dataclass
class CachedFeatures:
    """Backbone outputs for the whole training pool and the test split, in dataset order."""

    pool: torch.Tensor
    test: torch.Tensor


@torch.no_grad()
def extract_features(backbone: nn.Module, datamodule, batch_size: int = 256) -> CachedFeatures:
    """Run the frozen ``backbone`` (eval mode) once over the pool and the test split."""
    was_training = backbone.training
    backbone.eval()
    try:
        out = {}
        for part in ("pool", "test"):
            loader = DataLoader(
                datamodule._dataset(part, None),
                batch_size=batch_size,
                shuffle=False,
                collate_fn=datamodule.transform.collate if datamodule.in_memory else None,
                num_workers=datamodule.loader_kwargs.get("num_workers", 0),
            )
            out[part] = torch.cat([backbone(x) for x, _, _ in loader]).contiguous()
    finally:
        backbone.train(was_training)
    return CachedFeatures(out["pool"], out["test"])


class CachedFeatureDataModule:
    """Wraps a DownstreamDataModule: same splits, samplers and seeds, features instead of images."""

    def __init__(self, datamodule, features: CachedFeatures):
        self.dm = datamodule
        self.features = features

    def __getattr__(self, name):  # n, pool_size, val_idx, num_classes, ... of the wrapped module
        return getattr(self.dm, name)

    def _loader(self, x: torch.Tensor, y: torch.Tensor, idx, shuffle: bool) -> DataLoader:
        t = torch.as_tensor(idx)
        ds = IndexedTensorDataset(x[t], y[t], t)
        if shuffle:  # the same exact-n, seeded, resumable samplers as the uncached path
            return train_loader(ds, int(self.dm.cfg.batch_size), self.dm.seed)
        return eval_loader(ds, int(self.dm.cfg.batch_size))

    def _labels(self, part: str) -> torch.Tensor:
        s = self.dm.splits
        return torch.as_tensor(s.pool_labels if part == "pool" else s.test_labels).long()

    def train_dataloader(self) -> DataLoader:
        return self._loader(
            self.features.pool, self._labels("pool"), self.dm.train_idx, shuffle=True
        )

    def val_dataloader(self) -> DataLoader | list:
        if len(self.dm.val_idx) == 0:
            return []
        return self._loader(
            self.features.pool, self._labels("pool"), self.dm.val_idx, shuffle=False
        )

    def test_dataloader(self) -> DataLoader:
        n = len(self.features.test)
        return self._loader(self.features.test, self._labels("test"), range(n), shuffle=False)
