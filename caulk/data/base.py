"""Dataset splits (in-memory tensors or image datasets) and the transform to a backbone's input."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from caulk.data.subsets import seeded_test_split


@dataclass
class ArraySplits:
    """A dataset as tensors: the training pool and the fixed test split."""

    pool_x: torch.Tensor
    pool_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    name: str

    @property
    def pool_labels(self) -> np.ndarray:
        return self.pool_y.numpy()

    @property
    def test_labels(self) -> np.ndarray:
        return self.test_y.numpy()


@dataclass
class ImageSplits:
    """A dataset of images: the training pool and the test split as map-style datasets.

    ``pool[i]`` / ``test[i]`` return ``(image, ...)`` with a PIL image first; labels come from
    ``pool_labels`` / ``test_labels``, read without decoding any image. ``official_val_idx``
    marks the pool positions of an official validation split (``data.val_policy=official``).
    """

    pool: Dataset
    pool_labels: np.ndarray
    test: Dataset
    test_labels: np.ndarray
    num_classes: int
    name: str
    classes: list[str] | None = None
    official_val_idx: np.ndarray | None = None
    skipped_images: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pool_labels = np.asarray(self.pool_labels, dtype=np.int64)
        self.test_labels = np.asarray(self.test_labels, dtype=np.int64)
        if len(self.pool_labels) != len(self.pool) or len(self.test_labels) != len(self.test):
            raise ValueError(f"{self.name}: labels and images differ in length")


def split_dataset(
    dataset: Dataset,
    labels: np.ndarray,
    seed: int,
    test_fraction: float | None = None,
    train_per_class: int | None = None,
) -> tuple[Dataset, np.ndarray, Dataset, np.ndarray]:
    """``(pool, pool_labels, test, test_labels)``: ``dataset`` split by ``seeded_test_split``.

    For a dataset without an official test split; ``labels`` are the labels of ``dataset``.
    """
    pool_idx, test_idx = seeded_test_split(labels, seed, test_fraction, train_per_class)
    return (
        Subset(dataset, pool_idx.tolist()),
        labels[pool_idx],
        Subset(dataset, test_idx.tolist()),
        labels[test_idx],
    )


class IndexedImageDataset(Dataset):
    """(transformed image, label, index) for the given positions of an image dataset.

    ``index`` is the position in the source split (the pool or the test set), so callbacks can
    count distinct examples seen.
    """

    def __init__(self, source: Dataset, labels: np.ndarray, positions: np.ndarray, transform, mode):
        self.source, self.labels = source, labels
        self.positions = np.asarray(positions, dtype=np.int64)
        self.transform, self.mode = transform, mode

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        j = int(self.positions[i])
        image = self.source[j][0]
        if image.mode != self.mode:
            image = image.convert(self.mode)
        return self.transform(image), int(self.labels[j]), j


class IndexedTensorDataset(Dataset):
    """(x, y, index) triples; the index lets callbacks count distinct examples seen."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor | None = None):
        self.x, self.y = x, y
        self.index = torch.arange(len(y)) if index is None else index

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], self.index[i]


_INTERP = {"bicubic": "bicubic", "bilinear": "bilinear", "nearest": "nearest"}


class ToBackboneInput:
    """Resize to the backbone's input size, make 3 channels, normalise with its mean/std.

    Follows timm's data config (``resolve_model_data_config``): input_size, interpolation,
    mean, std. Applied batch-wise so small raw images never get materialised at 224 px.
    """

    def __init__(self, data_config: dict[str, Any]):
        _, self.h, self.w = data_config["input_size"]
        self.mode = _INTERP.get(data_config.get("interpolation", "bilinear"), "bilinear")
        self.in_chans = data_config["input_size"][0]
        self.mean = torch.tensor(data_config["mean"]).view(1, -1, 1, 1)
        self.std = torch.tensor(data_config["std"]).view(1, -1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.h, self.w):
            kw = {} if self.mode == "nearest" else {"align_corners": False}
            x = F.interpolate(x, size=(self.h, self.w), mode=self.mode, **kw).clamp_(0.0, 1.0)
        if x.shape[1] == 1 and self.in_chans == 3:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std

    def collate(self, batch):
        xs, ys, idx = zip(*batch, strict=True)
        return self(torch.stack(xs)), torch.stack(ys), torch.stack(idx)
