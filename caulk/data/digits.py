"""scikit-learn's bundled ``digits`` (1797 real 8x8 handwritten digits): runs offline."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from caulk.data.base import ArraySplits
from caulk.data.registry import register_dataset


def load_digits_splits(test_fraction: float, split_seed: int) -> ArraySplits:
    """Fixed stratified train-pool / test split of digits; images in [0, 1], shape (N, 1, 8, 8)."""
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]
    labels = bunch.target.astype(np.int64)
    idx = np.arange(len(labels))
    pool_idx, test_idx = train_test_split(
        idx, test_size=test_fraction, random_state=split_seed, stratify=labels
    )
    pool_idx, test_idx = np.sort(pool_idx), np.sort(test_idx)
    return ArraySplits(
        pool_x=torch.from_numpy(images[pool_idx]),
        pool_y=torch.from_numpy(labels[pool_idx]),
        test_x=torch.from_numpy(images[test_idx]),
        test_y=torch.from_numpy(labels[test_idx]),
        num_classes=10,
        name="digits",
    )


@register_dataset("digits")
def _load_digits(data_cfg) -> ArraySplits:
    return load_digits_splits(data_cfg.test_fraction, data_cfg.split_seed)
