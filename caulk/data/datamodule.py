"""The downstream LightningDataModule: pool -> (validation hold-out, nested n-subset), fixed test."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from caulk.data.base import ArraySplits, IndexedTensorDataset, ToBackboneInput
from caulk.data.subsets import check_n, nested_stratified_order
from caulk.errors import CaulkConfigError

DATASETS = ("digits",)


def load_splits(data_cfg: Any) -> ArraySplits:
    """Load a dataset's pool and test split by name (offline datasets only, for now)."""
    if data_cfg.name == "digits":
        from caulk.data.digits import load_digits_splits

        return load_digits_splits(data_cfg.test_fraction, data_cfg.split_seed)
    raise CaulkConfigError(
        f"unknown dataset data.name={data_cfg.name!r}; known: {', '.join(DATASETS)}"
    )


class DownstreamDataModule(pl.LightningDataModule):
    """Training subset of size n (nested, stratified, per seed), validation held out, full test.

    Validation policy: ``val_size`` examples are held out of the training pool once, with
    ``split_seed`` (stratified, independent of n and of the run seed), so every point of a curve
    validates on the same examples; they never overlap the n-subset or the test split.
    """

    def __init__(self, splits: ArraySplits, data_cfg: Any, seed: int):
        super().__init__()
        self.splits = splits
        self.cfg = data_cfg
        self.seed = int(seed)
        self.transform: ToBackboneInput | None = None
        labels = splits.pool_y.numpy()
        val_size = int(data_cfg.val_size)
        if val_size < 0 or val_size >= len(labels):
            raise CaulkConfigError(
                f"data.val_size={val_size} must be in [0, {len(labels)}) (the pool size)"
            )
        split_order = nested_stratified_order(labels, int(data_cfg.split_seed) + 10_007)
        self.val_idx = np.sort(split_order[:val_size])
        self.train_pool_idx = np.sort(split_order[val_size:])
        pool_labels = labels[self.train_pool_idx]
        n = data_cfg.n if data_cfg.n is not None else len(self.train_pool_idx)
        check_n(n, len(self.train_pool_idx), splits.num_classes, bool(data_cfg.stratify))
        self.n = int(n)
        if data_cfg.stratify:
            order = nested_stratified_order(pool_labels, self.seed)
        else:
            order = np.random.default_rng(self.seed).permutation(len(pool_labels))
        self.train_idx = self.train_pool_idx[order[: self.n]]

    def set_input_transform(self, data_config: dict[str, Any]) -> None:
        """Use the backbone's timm data config (size, interpolation, mean, std) for every split."""
        self.transform = ToBackboneInput(data_config)

    @property
    def pool_size(self) -> int:
        return len(self.train_pool_idx)

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @property
    def n_test(self) -> int:
        return len(self.splits.test_y)

    def _dataset(self, x: torch.Tensor, y: torch.Tensor, idx: np.ndarray | None):
        if idx is None:
            return IndexedTensorDataset(x, y)
        t = torch.as_tensor(idx)
        return IndexedTensorDataset(x[t], y[t], t)

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        if self.transform is None:
            raise RuntimeError("call set_input_transform(backbone.data_config) before loading data")
        return DataLoader(
            ds,
            batch_size=int(self.cfg.batch_size),
            shuffle=shuffle,
            num_workers=int(self.cfg.num_workers),
            collate_fn=self.transform.collate,
            generator=torch.Generator().manual_seed(self.seed) if shuffle else None,
            persistent_workers=int(self.cfg.num_workers) > 0,
        )

    def train_dataloader(self) -> DataLoader:
        s = self.splits
        return self._loader(self._dataset(s.pool_x, s.pool_y, self.train_idx), shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        if len(self.val_idx) == 0:
            return []
        s = self.splits
        return self._loader(self._dataset(s.pool_x, s.pool_y, self.val_idx), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        s = self.splits
        return self._loader(self._dataset(s.test_x, s.test_y, None), shuffle=False)


def build_datamodule(data_cfg: Any, seed: int) -> DownstreamDataModule:
    """Load the named dataset and cut its splits; validates n before any model is built."""
    return DownstreamDataModule(load_splits(data_cfg), data_cfg, seed)
