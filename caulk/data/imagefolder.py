"""``data=imagefolder``: a user's own images in ``<class>/<image>`` folders.

Layout: ``data.root/data.train_dir/<class>/*.jpg`` (classes sorted by name, as torchvision's
ImageFolder does) and either ``data.root/data.test_dir/<class>/...`` with the same class names or,
with ``data.test_dir=null``, a seeded stratified ``data.test_fraction`` split of the train folder.
Images are checked once before any split is drawn (``data.scan_images``); unreadable ones are fatal
or skipped (``data.on_corrupt``), so n stays exact either way.
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from caulk.data.base import ImageSplits, split_dataset
from caulk.data.registry import register_dataset
from caulk.errors import CaulkConfigError

log = logging.getLogger(__name__)
SCAN_MODES = ("header", "decode", "off")
ON_CORRUPT = ("error", "skip")


class UnreadableImageError(RuntimeError):
    """An image file that PIL cannot read; the message names its path."""


def read_image(path: str) -> Image.Image:
    """Open and fully decode ``path``; failures raise UnreadableImageError naming the file."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy() if im.mode in ("RGB", "L") else im.convert("RGB")
    except Exception as e:
        raise UnreadableImageError(f"cannot read image {path} ({type(e).__name__}: {e})") from e


class ImageFileDataset(Dataset):
    """``(PIL image, label)`` for a list of ``(path, label)`` samples."""

    def __init__(self, samples: list[tuple[str, int]]):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, label = self.samples[i]
        return read_image(path), label


def _check_image(path: str, mode: str) -> str | None:
    try:
        with Image.open(path) as im:
            if mode == "header":
                im.verify()
            else:
                im.load()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def scan_images(paths: list[str], mode: str, workers: int | None = None) -> list[tuple[str, str]]:
    """``(path, error)`` for every unreadable image (``header``: PIL verify; ``decode``: full load)."""
    if mode == "off" or not paths:
        return []
    workers = workers or min(16, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        errors = list(pool.map(lambda p: _check_image(p, mode), paths, chunksize=64))
    return [(p, e) for p, e in zip(paths, errors, strict=True) if e is not None]


def _folder(root: Path, sub: str | None, key: str) -> Path:
    path = root / sub if sub else root
    if not path.is_dir():
        raise CaulkConfigError(
            f"data=imagefolder: {key} folder {path} does not exist (expected "
            f"{path}/<class>/<image> with one sub-folder per class; set data.root / data.{key})"
        )
    return path


def _samples(
    folder: Path, class_to_idx: dict[str, int], allow_empty: bool
) -> list[tuple[str, int]]:
    try:
        return make_dataset(
            str(folder), class_to_idx, extensions=IMG_EXTENSIONS, allow_empty=allow_empty
        )
    except FileNotFoundError as e:
        raise CaulkConfigError(f"data=imagefolder: {' '.join(str(e).split())}") from None


def _drop_unreadable(
    samples: list[tuple[str, int]], data_cfg: Any, root: Path, skipped: list[str]
) -> list[tuple[str, int]]:
    bad = scan_images([p for p, _ in samples], str(data_cfg.get("scan_images", "header")))
    if not bad:
        return samples
    first_path, first_error = bad[0]
    if data_cfg.get("on_corrupt", "error") == "error":
        raise CaulkConfigError(
            f"data=imagefolder: {len(bad)} unreadable image(s) under {root}, first {first_path} "
            f"({' '.join(first_error.split())}); fix or remove them, or set data.on_corrupt=skip"
        )
    bad_paths = {p for p, _ in bad}
    skipped.extend(sorted(bad_paths))
    message = f"data=imagefolder: skipped {len(bad)} unreadable image(s), first {first_path}"
    warnings.warn(message, stacklevel=2)
    log.warning(message)
    return [s for s in samples if s[0] not in bad_paths]


@register_dataset("imagefolder")
def load_imagefolder_splits(data_cfg: Any) -> ImageSplits:
    """Pool and test split of an ImageFolder tree (see the module docstring for the layout)."""
    if data_cfg.get("scan_images", "header") not in SCAN_MODES:
        raise CaulkConfigError(
            f"data.scan_images must be one of {', '.join(SCAN_MODES)}, got {data_cfg.scan_images!r}"
        )
    if data_cfg.get("on_corrupt", "error") not in ON_CORRUPT:
        raise CaulkConfigError(
            f"data.on_corrupt must be one of {', '.join(ON_CORRUPT)}, got {data_cfg.on_corrupt!r}"
        )
    if data_cfg.get("root") in (None, ""):
        raise CaulkConfigError("data=imagefolder needs data.root=DIR (the folder of class folders)")
    root = Path(os.path.expanduser(str(data_cfg.root))).resolve()
    test_dir = data_cfg.get("test_dir")
    if test_dir is not None and data_cfg.get("test_fraction") is not None:
        raise CaulkConfigError(
            "data=imagefolder: set data.test_dir (a separate test folder) or data.test_fraction "
            "(a seeded split), not both"
        )
    train_folder = _folder(root, data_cfg.get("train_dir"), "train_dir")
    try:
        classes, class_to_idx = find_classes(str(train_folder))
    except FileNotFoundError as e:
        raise CaulkConfigError(f"data=imagefolder: {' '.join(str(e).split())}") from None
    skipped: list[str] = []
    pool_samples = _drop_unreadable(
        _samples(train_folder, class_to_idx, False), data_cfg, root, skipped
    )
    if test_dir is not None:
        test_folder = _folder(root, test_dir, "test_dir")
        extra = sorted(set(find_classes(str(test_folder))[0]) - set(classes))
        if extra:
            raise CaulkConfigError(
                f"data=imagefolder: test folder {test_folder} has classes not in the train folder: "
                f"{', '.join(extra[:5])}"
            )
        test_samples = _drop_unreadable(
            _samples(test_folder, class_to_idx, True), data_cfg, root, skipped
        )
        pool: Dataset = ImageFileDataset(pool_samples)
        test: Dataset = ImageFileDataset(test_samples)
        pool_labels = np.array([y for _, y in pool_samples], dtype=np.int64)
        test_labels = np.array([y for _, y in test_samples], dtype=np.int64)
    else:
        if data_cfg.get("test_fraction") is None:
            raise CaulkConfigError(
                "data=imagefolder needs data.test_dir (a separate test folder) or "
                "data.test_fraction (a seeded split of the train folder)"
            )
        pool, pool_labels, test, test_labels = split_dataset(
            ImageFileDataset(pool_samples),
            np.array([y for _, y in pool_samples], dtype=np.int64),
            int(data_cfg.split_seed),
            test_fraction=data_cfg.test_fraction,
        )
    return ImageSplits(
        pool=pool,
        pool_labels=pool_labels,
        test=test,
        test_labels=test_labels,
        num_classes=len(classes),
        name="imagefolder",
        classes=classes,
        skipped_images=skipped,
    )
