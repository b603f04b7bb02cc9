"""The downstream LightningDataModule: pool -> (validation hold-out, training subset), fixed test."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from caulk.config import is_int
from caulk.data.base import (
    ArraySplits,
    ImageSplits,
    IndexedImageDataset,
    IndexedTensorDataset,
    ToBackboneInput,
)
from caulk.data.registry import Splits, load_splits
from caulk.data.sharding import eval_loader, train_loader
from caulk.data.subsets import check_n, few_shot_subset, nested_stratified_order, vtab1k_split
from caulk.data.transforms import check_augment_policy, eval_transform, image_mode, train_transform
from caulk.errors import CaulkConfigError

PROTOCOLS = ("subset", "few_shot", "vtab1k")
VTAB1K_STAGES = ("tune", "final")
VAL_POLICIES = ("holdout", "official")


def _auto_workers() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(8, (cpus or 1) - 1))


def loader_settings(data_cfg: Any, in_memory: bool) -> dict[str, Any]:
    """DataLoader keyword arguments from ``data.num_workers/pin_memory/persistent_workers``.

    ``auto``: in-memory tensors (digits) load in the main process; image datasets use up to 8
    workers (one core left to the trainer), kept alive across epochs; memory is pinned when CUDA
    is available (the trainer's ``accelerator=auto`` then picks the GPU).
    """
    workers = data_cfg.get("num_workers", "auto")
    if workers == "auto":
        workers = 0 if in_memory else _auto_workers()
    if not is_int(workers) or workers < 0:
        raise CaulkConfigError(
            f"data.num_workers must be 'auto' or an integer >= 0, got {workers!r}"
        )
    settings: dict[str, Any] = {"num_workers": workers}
    for key, auto in (
        ("pin_memory", torch.cuda.is_available()),
        ("persistent_workers", workers > 0),
    ):
        value = data_cfg.get(key, "auto")
        value = auto if value == "auto" else value
        if not isinstance(value, bool):
            raise CaulkConfigError(f"data.{key} must be true, false or 'auto', got {value!r}")
        settings[key] = value
    if settings["persistent_workers"] and workers == 0:
        raise CaulkConfigError("data.persistent_workers=true needs data.num_workers > 0")
    return settings


def _choice(data_cfg: Any, key: str, default: str, allowed: tuple[str, ...]) -> str:
    value = data_cfg.get(key, default)
    if value not in allowed:
        raise CaulkConfigError(f"data.{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


class DownstreamDataModule(pl.LightningDataModule):
    """Training subset (nested, stratified, per seed), validation held out, full test split.

    Protocols (``data.protocol``):
    - ``subset``: the first ``data.n`` examples of the pool's seeded stratified order (nested in n).
    - ``few_shot``: exactly ``data.shots`` examples per class (n = shots * classes, nested in shots).
    - ``vtab1k``: VTAB-1k: ``data.vtab1k_stage=tune`` trains on 800 and validates on 200;
      ``final`` trains on those 1000 without validation; both fixed by ``split_seed``.

    Validation policy (``subset``/``few_shot``): ``data.val_policy=holdout`` holds ``val_size``
    examples out of the pool once, with ``split_seed`` (stratified, independent of n and of the
    run seed), so every point of a curve validates on the same examples; ``official`` uses the
    dataset's official validation split (Flowers-102, DTD). Validation never overlaps training or
    test examples.
    """

    def __init__(self, splits: Splits, data_cfg: Any, seed: int):
        super().__init__()
        self.splits = splits
        self.cfg = data_cfg
        self.seed = int(seed)
        self.transform: ToBackboneInput | None = None
        self.eval_transform = self.train_transform = None
        self.in_memory = isinstance(splits, ArraySplits)
        self.augment = check_augment_policy(str(data_cfg.get("augment", "none")))
        if self.in_memory and self.augment != "none":
            raise CaulkConfigError(f"data.augment applies to image datasets, not {splits.name}")
        self.loader_kwargs = loader_settings(data_cfg, self.in_memory)
        protocol = _choice(data_cfg, "protocol", "subset", PROTOCOLS)
        labels = splits.pool_labels
        _check_labels(splits)
        if protocol == "vtab1k":
            self._vtab1k(labels)
        else:
            self._hold_out_validation(labels)
            pool_labels = labels[self.train_pool_idx]
            if protocol == "few_shot":
                self._few_shot(pool_labels)
            else:
                self._subset(pool_labels)

    def _hold_out_validation(self, labels: np.ndarray) -> None:
        policy = _choice(self.cfg, "val_policy", "holdout", VAL_POLICIES)
        official = getattr(self.splits, "official_val_idx", None)
        if policy == "official":
            if official is None:
                raise CaulkConfigError(
                    f"data.val_policy=official: {self.splits.name} has no official validation "
                    f"split; use data.val_policy=holdout"
                )
            self.val_idx = np.sort(official)
            self.train_pool_idx = np.setdiff1d(np.arange(len(labels)), self.val_idx)
            return
        val_size = int(self.cfg.val_size)
        if val_size < 0 or val_size >= len(labels):
            raise CaulkConfigError(
                f"data.val_size={val_size} must be in [0, {len(labels)}) (the pool size)"
            )
        split_order = nested_stratified_order(labels, int(self.cfg.split_seed) + 10_007)
        self.val_idx = np.sort(split_order[:val_size])
        self.train_pool_idx = np.sort(split_order[val_size:])

    def _subset(self, pool_labels: np.ndarray) -> None:
        n = self.cfg.n if self.cfg.n is not None else len(self.train_pool_idx)
        check_n(n, len(self.train_pool_idx), self.splits.num_classes, bool(self.cfg.stratify))
        self.n = int(n)
        if self.cfg.stratify:
            order = nested_stratified_order(pool_labels, self.seed)
        else:
            order = np.random.default_rng(self.seed).permutation(len(pool_labels))
        self.train_idx = self.train_pool_idx[order[: self.n]]

    def _few_shot(self, pool_labels: np.ndarray) -> None:
        shots = self.cfg.get("shots")
        missing = sorted(set(range(self.splits.num_classes)) - set(np.unique(pool_labels)))
        if missing:
            raise CaulkConfigError(
                f"data.protocol=few_shot: class {missing[0]} has no examples in the training pool"
            )
        chosen = few_shot_subset(pool_labels, shots, self.seed)
        self._check_fixed_n(len(chosen), "few_shot", f"data.shots * classes = {len(chosen)}")
        self.n = len(chosen)
        self.train_idx = self.train_pool_idx[chosen]

    def _vtab1k(self, labels: np.ndarray) -> None:
        stage = _choice(self.cfg, "vtab1k_stage", "tune", VTAB1K_STAGES)
        train, val = vtab1k_split(labels, int(self.cfg.split_seed))
        if stage == "final":
            train, val = np.sort(np.concatenate([train, val])), val[:0]
        self._check_fixed_n(len(train), "vtab1k", f"{len(train)} for vtab1k_stage={stage}")
        self.val_idx, self.train_pool_idx, self.train_idx = val, train, train
        self.n = len(train)

    def _check_fixed_n(self, n: int, protocol: str, why: str) -> None:
        if self.cfg.n is not None and self.cfg.n != n:
            raise CaulkConfigError(
                f"data.n={self.cfg.n} conflicts with data.protocol={protocol}, which fixes n "
                f"({why}); leave data.n=null"
            )

    def set_input_transform(self, data_config: dict[str, Any], augment: bool = True) -> None:
        """Use the backbone's timm data config (size, interpolation, mean, std, crop) for all splits.

        Training images also get the ``data.augment`` policy unless ``augment=False`` (paths that
        cache or probe frozen features must pass False: their features must not be augmented).
        """
        self.transform = ToBackboneInput(data_config)
        if not self.in_memory:
            self.mode = image_mode(data_config)
            self.eval_transform = eval_transform(data_config)
            policy = self.augment if augment else "none"
            self.train_transform = (
                self.eval_transform if policy == "none" else train_transform(data_config, policy)
            )

    @property
    def pool_size(self) -> int:
        return len(self.train_pool_idx)

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @property
    def n_test(self) -> int:
        return len(self.splits.test_labels)

    def dataset(self, part: str, idx: np.ndarray | None, train: bool = False):
        s = self.splits
        if isinstance(s, ArraySplits):
            x, y = (s.pool_x, s.pool_y) if part == "pool" else (s.test_x, s.test_y)
            if idx is None:
                return IndexedTensorDataset(x, y)
            t = torch.as_tensor(idx)
            return IndexedTensorDataset(x[t], y[t], t)
        source, labels = (s.pool, s.pool_labels) if part == "pool" else (s.test, s.test_labels)
        positions = np.arange(len(labels)) if idx is None else idx
        transform = self.train_transform if train else self.eval_transform
        return IndexedImageDataset(source, labels, positions, transform, self.mode)

    def _loader(self, ds, shuffle: bool) -> DataLoader:
        """Training: exact-n, seeded, resumable batches; evaluation: one uneven shard per rank."""
        if self.transform is None:
            raise RuntimeError("call set_input_transform(backbone.data_config) before loading data")
        collate = self.transform.collate if self.in_memory else None
        if shuffle:
            return train_loader(
                ds, int(self.cfg.batch_size), self.seed, collate_fn=collate, **self.loader_kwargs
            )
        return eval_loader(ds, int(self.cfg.batch_size), collate_fn=collate, **self.loader_kwargs)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("pool", self.train_idx, train=True), shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        if len(self.val_idx) == 0:
            return []
        return self._loader(self.dataset("pool", self.val_idx), shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test", None), shuffle=False)


def _check_labels(splits: Splits) -> None:
    for part, labels in (("training pool", splits.pool_labels), ("test split", splits.test_labels)):
        if len(labels) and (labels.min() < 0 or labels.max() >= splits.num_classes):
            raise CaulkConfigError(
                f"data={splits.name}: {part} labels must lie in [0, {splits.num_classes}), "
                f"got [{labels.min()}, {labels.max()}]"
            )
    if isinstance(splits, ImageSplits) and len(splits.test_labels) == 0:
        raise CaulkConfigError(f"data={splits.name}: the test split is empty")


def build_datamodule(
    data_cfg: Any, seed: int, splits: Splits | None = None
) -> DownstreamDataModule:
    """Load the named dataset and cut its splits; validates n before any model is built.

    ``splits``: the already loaded splits of the same ``data_cfg`` (a curve's points differ only in
    n and seed, so they share one load); never modified.
    """
    return DownstreamDataModule(load_splits(data_cfg) if splits is None else splits, data_cfg, seed)
