"""The common transfer benchmarks through torchvision, with their canonical splits.

Each set is found under ``data.root`` in torchvision's own layout, so an existing torchvision
data folder works as is. ``data.download=true`` fetches it (needs network) into a temporary
folder first and moves it under ``data.root`` only once complete: a failed download leaves
nothing behind. Labels are read from torchvision's label attributes, never by decoding images.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torchvision.datasets as tvd
from torch.utils.data import ConcatDataset, Dataset

from caulk.data.base import ImageSplits, split_dataset
from caulk.data.registry import register_dataset
from caulk.errors import CaulkConfigError

DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TorchvisionSet:
    """How one torchvision dataset maps onto caulk's pool / test splits."""

    title: str
    cls_name: str  # class in torchvision.datasets
    num_classes: int
    train: dict[str, Any]  # constructor arguments of the training pool split
    test: dict[str, Any] | None  # of the official test split; None: seeded split of `train`
    labels_attr: str  # attribute holding the labels as ints
    required: tuple[str, ...]  # paths under data.root that must exist
    source: str  # what to fetch, for the missing-data message
    val: dict[str, Any] | None = None  # an official validation split, joined to the pool
    common: dict[str, Any] = field(default_factory=dict)  # arguments of every split

    def split_kwargs(self) -> dict[str, dict[str, Any] | None]:
        return {"train": self.train, "val": self.val, "test": self.test}


TORCHVISION_SETS: dict[str, TorchvisionSet] = {
    "cifar10": TorchvisionSet(
        "CIFAR-10", "CIFAR10", 10, {"train": True}, {"train": False}, "targets",
        ("cifar-10-batches-py",), "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "cifar100": TorchvisionSet(
        "CIFAR-100", "CIFAR100", 100, {"train": True}, {"train": False}, "targets",
        ("cifar-100-python",), "cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
    "svhn": TorchvisionSet(
        "SVHN", "SVHN", 10, {"split": "train"}, {"split": "test"}, "labels",
        ("train_32x32.mat", "test_32x32.mat"), "train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/",
    ),
    "stl10": TorchvisionSet(
        "STL-10", "STL10", 10, {"split": "train"}, {"split": "test"}, "labels",
        ("stl10_binary",), "stl10_binary.tar.gz from https://cs.stanford.edu/~acoates/stl10/",
    ),
    "flowers102": TorchvisionSet(
        "Flowers-102", "Flowers102", 102, {"split": "train"}, {"split": "test"}, "_labels",
        ("flowers-102/jpg", "flowers-102/imagelabels.mat", "flowers-102/setid.mat"),
        "102flowers.tgz, imagelabels.mat and setid.mat from https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
        val={"split": "val"},
    ),
    "pets": TorchvisionSet(
        "Oxford-IIIT Pets", "OxfordIIITPet", 37, {"split": "trainval"}, {"split": "test"}, "_labels",
        ("oxford-iiit-pet/images", "oxford-iiit-pet/annotations"),
        "images.tar.gz and annotations.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/pets/",
        common={"target_types": "category"},
    ),
    "dtd": TorchvisionSet(
        "DTD", "DTD", 47, {"split": "train"}, {"split": "test"}, "_labels",
        ("dtd/dtd/images", "dtd/dtd/labels"), "dtd-r1.0.1.tar.gz from https://www.robots.ox.ac.uk/~vgg/data/dtd/",
        val={"split": "val"}, common={"partition": 1},
    ),
    "eurosat": TorchvisionSet(
        "EuroSAT", "EuroSAT", 10, {}, None, "targets",
        ("eurosat/2750",), "EuroSAT.zip (RGB) from https://github.com/phelber/EuroSAT, unpacked as eurosat/2750/<class>/",
    ),
    "food101": TorchvisionSet(
        "Food-101", "Food101", 101, {"split": "train"}, {"split": "test"}, "_labels",
        ("food-101/images", "food-101/meta"), "food-101.tar.gz from https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
    ),
    "caltech101": TorchvisionSet(
        "Caltech-101", "Caltech101", 101, {}, None, "y",
        ("caltech101/101_ObjectCategories",), "caltech-101.zip from https://data.caltech.edu/records/mzrjq-6wc02, unpacked as caltech101/101_ObjectCategories/",
        common={"target_type": "category"},
    ),
}  # fmt: skip


def _missing(spec: TorchvisionSet, root: Path) -> list[str]:
    return [p for p in spec.required if not (root / p).exists()]


def _missing_message(name: str, spec: TorchvisionSet, root: Path, missing: list[str]) -> str:
    return (
        f"data={name}: {spec.title} not found under {root} (looked for {', '.join(missing)}: "
        f"torchvision's layout); fetch it with data.download=true (needs network), or unpack "
        f"{spec.source} there, or set data.root to a folder that has it"
    )


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """A default socket timeout, so a download on a black-holed network fails instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def download(name: str, spec: TorchvisionSet, root: Path) -> None:
    """Fetch every split into a temporary folder, then move it under ``root`` (all or nothing)."""
    cls = getattr(tvd, spec.cls_name)
    with tempfile.TemporaryDirectory(
        prefix=f".caulk-download-{name}-", dir=_nearest_existing(root)
    ) as tmp:
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                for kwargs in spec.split_kwargs().values():
                    if kwargs is not None:
                        cls(root=tmp, download=True, **spec.common, **kwargs)
        except Exception as e:
            raise CaulkConfigError(
                f"data={name}: downloading {spec.title} failed ({_one_line(e)}); without network, "
                f"unpack {spec.source} under {root} (layout {', '.join(spec.required)}) and run with "
                f"data.download=false"
            ) from None
        root.mkdir(parents=True, exist_ok=True)
        for entry in Path(tmp).iterdir():
            if not (root / entry.name).exists():
                shutil.move(str(entry), root / entry.name)


def open_split(name: str, spec: TorchvisionSet, root: Path, kwargs: dict[str, Any]) -> Dataset:
    """Instantiate one split (data known to be present); torchvision's errors become one line."""
    try:
        return getattr(tvd, spec.cls_name)(root=str(root), download=False, **spec.common, **kwargs)
    except Exception as e:
        raise CaulkConfigError(
            f"data={name}: {spec.title} under {root} is incomplete or corrupt ({_one_line(e)}); "
            f"re-fetch it with data.download=true or unpack {spec.source} there"
        ) from None


def _labels(ds: Dataset, attr: str) -> np.ndarray:
    return np.asarray(getattr(ds, attr), dtype=np.int64)


def load_torchvision_splits(name: str, data_cfg: Any) -> ImageSplits:
    """Pool (train [+ official val]) and test split of a torchvision set under ``data_cfg.root``."""
    spec = TORCHVISION_SETS[name]
    root = Path(os.path.expanduser(str(data_cfg.root))).resolve()
    missing = _missing(spec, root)
    if missing:
        if not data_cfg.get("download", False):
            raise CaulkConfigError(_missing_message(name, spec, root, missing))
        download(name, spec, root)
        missing = _missing(spec, root)
        if missing:
            raise CaulkConfigError(_missing_message(name, spec, root, missing))
    train = open_split(name, spec, root, spec.train)
    train_labels = _labels(train, spec.labels_attr)
    official_val_idx = None
    if spec.val is not None:
        val = open_split(name, spec, root, spec.val)
        official_val_idx = np.arange(len(train), len(train) + len(val))
        pool: Dataset = ConcatDataset([train, val])
        pool_labels = np.concatenate([train_labels, _labels(val, spec.labels_attr)])
    else:
        pool, pool_labels = train, train_labels
    if spec.test is not None:
        test = open_split(name, spec, root, spec.test)
        test_labels = _labels(test, spec.labels_attr)
    else:
        pool, pool_labels, test, test_labels = split_dataset(
            pool,
            pool_labels,
            int(data_cfg.split_seed),
            data_cfg.get("test_fraction"),
            data_cfg.get("train_per_class"),
        )
    return ImageSplits(
        pool=pool,
        pool_labels=pool_labels,
        test=test,
        test_labels=test_labels,
        num_classes=spec.num_classes,
        name=name,
        classes=list(getattr(train, "classes", None) or getattr(train, "categories", []) or [])
        or None,
        official_val_idx=official_val_idx,
    )


def _register(name: str) -> None:
    register_dataset(name)(lambda data_cfg: load_torchvision_splits(name, data_cfg))


for _name in TORCHVISION_SETS:
    _register(_name)
