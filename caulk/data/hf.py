"""``data=hf``: a Hugging Face datasets repo, a local copy of one, or local parquet / arrow files.

Needs the optional extra ``pip install caulk[hf]`` (the ``datasets`` package). Labels are read
from the Arrow label column, never by decoding images. With ``data.download=false`` (default) a
hub repo must already be in the cache under ``data.root/hf``: the hub is never contacted.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import huggingface_hub.constants as hub_constants
import numpy as np
from torch.utils.data import Dataset

from caulk.data.base import ImageSplits, split_dataset
from caulk.data.registry import register_dataset
from caulk.errors import CaulkConfigError

BUILDERS = {".parquet": "parquet", ".arrow": "arrow"}


def import_datasets() -> Any:
    """The optional ``datasets`` package; CaulkConfigError naming the extra when it is missing."""
    try:
        import datasets  # optional dependency: the extra caulk[hf]
    except ImportError:
        raise CaulkConfigError(
            "data=hf needs the optional `datasets` package: pip install 'caulk[hf]'"
        ) from None
    return datasets


class HFImageDataset(Dataset):
    """``(PIL image, label)`` rows of a datasets.Dataset (images decoded on access only)."""

    def __init__(self, ds: Any, image_column: str, labels: np.ndarray):
        self.ds = ds.select_columns([image_column])
        self.image_column, self.labels = image_column, labels

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return self.ds[int(i)][self.image_column], int(self.labels[i])


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Keep datasets / huggingface_hub off the network (their offline flags are read at import)."""
    datasets = import_datasets()
    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    if offline:
        datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:300]


def _builder(files: list[str]) -> str:
    suffixes = {Path(f).suffix for f in files}
    if len(suffixes) != 1 or next(iter(suffixes)) not in BUILDERS:
        raise CaulkConfigError(
            f"data.data_files must all be .parquet or all .arrow files, got {sorted(suffixes)}"
        )
    return BUILDERS[suffixes.pop()]


def load_dataset_dict(data_cfg: Any) -> Any:
    """The DatasetDict named by data.path / data.data_files (see the module docstring)."""
    datasets = import_datasets()
    cache_dir = str(Path(os.path.expanduser(str(data_cfg.root))) / "hf")
    data_files = data_cfg.get("data_files")
    path = data_cfg.get("path")
    try:
        if data_files:
            files = {
                k: [str(v)] if isinstance(v, str) else [str(x) for x in v]
                for k, v in data_files.items()
            }
            expanded = [f for fs in files.values() for f in fs]
            for f in expanded:
                if not glob.glob(os.path.expanduser(f)):
                    raise CaulkConfigError(f"data=hf: no file matches data.data_files entry {f}")
            return datasets.load_dataset(_builder(expanded), data_files=files, cache_dir=cache_dir)
        if not path:
            raise CaulkConfigError(
                "data=hf needs data.path (a hub repo id or local folder) or data.data_files"
            )
        local = Path(os.path.expanduser(str(path)))
        if local.is_dir() and (local / "dataset_dict.json").exists():
            return datasets.load_from_disk(str(local))
        if local.is_dir():
            return datasets.load_dataset(str(local), cache_dir=cache_dir)
        if local.exists() or str(path).startswith((".", "/", "~")):
            raise CaulkConfigError(
                f"data=hf: {local} is not a dataset folder (expected parquet/arrow files or a "
                f"save_to_disk folder); use data.data_files for single files"
            )
        offline = not data_cfg.get("download", False)
        try:
            with _hub_offline(offline):
                return datasets.load_dataset(
                    str(path),
                    name=data_cfg.get("config_name"),
                    revision=data_cfg.get("revision"),
                    cache_dir=cache_dir,
                )
        except Exception as e:
            remedy = (
                f"it is not in the cache {cache_dir}: run once with data.download=true (needs "
                f"network), or copy its parquet files and set data.path / data.data_files"
                if offline
                else "check the repo id and the network, or copy its files and set data.path"
            )
            raise CaulkConfigError(
                f"data=hf: cannot load {path} ({_one_line(e)}); {remedy}"
            ) from None
    except CaulkConfigError:
        raise
    except Exception as e:
        raise CaulkConfigError(
            f"data=hf: cannot load {path or dict(data_files)} ({_one_line(e)})"
        ) from None


def _split(dd: Any, name: str, key: str) -> Any:
    if name not in dd:
        raise CaulkConfigError(
            f"data.{key}={name!r} is not a split of this dataset; splits: {', '.join(dd)}"
        )
    return dd[name]


def _label_column(ds: Any, column: str) -> np.ndarray:
    return np.asarray(ds.data.column(column).to_pylist())


@register_dataset("hf")
def load_hf_splits(data_cfg: Any) -> ImageSplits:
    """Pool and test split of a Hugging Face image-classification dataset."""
    datasets = import_datasets()
    dd = load_dataset_dict(data_cfg)
    image_col, label_col = str(data_cfg.image_column), str(data_cfg.label_column)
    train = _split(dd, str(data_cfg.train_split), "train_split")
    for col, key in ((image_col, "image_column"), (label_col, "label_column")):
        if col not in train.column_names:
            raise CaulkConfigError(
                f"data.{key}={col!r} is not a column; columns: {', '.join(train.column_names)}"
            )
    if not isinstance(train.features[image_col], datasets.Image):
        train = train.cast_column(image_col, datasets.Image())
    feature = train.features[label_col]
    raw_train = _label_column(train, label_col)
    if isinstance(feature, datasets.ClassLabel):
        classes = list(feature.names)
        encode = np.asarray
    else:
        classes_raw = np.unique(raw_train)
        classes = [str(c) for c in classes_raw]
        lookup = {c: i for i, c in enumerate(classes_raw.tolist())}

        def encode(values: np.ndarray) -> np.ndarray:
            unknown = set(values.tolist()) - set(lookup)
            if unknown:
                raise CaulkConfigError(
                    f"data=hf: test labels not in the train split: {sorted(unknown)[:5]}"
                )
            return np.array([lookup[v] for v in values.tolist()], dtype=np.int64)

    train_labels = np.asarray(encode(raw_train), dtype=np.int64)
    if data_cfg.get("test_split") is not None:
        test = _split(dd, str(data_cfg.test_split), "test_split")
        if not isinstance(test.features[image_col], datasets.Image):
            test = test.cast_column(image_col, datasets.Image())
        test_labels = np.asarray(encode(_label_column(test, label_col)), dtype=np.int64)
        pool: Dataset = HFImageDataset(train, image_col, train_labels)
        test_ds: Dataset = HFImageDataset(test, image_col, test_labels)
        pool_labels = train_labels
    else:
        if data_cfg.get("test_fraction") is None:
            raise CaulkConfigError(
                "data=hf needs data.test_split or data.test_fraction (a seeded split)"
            )
        pool, pool_labels, test_ds, test_labels = split_dataset(
            HFImageDataset(train, image_col, train_labels),
            train_labels,
            int(data_cfg.split_seed),
            test_fraction=data_cfg.test_fraction,
        )
    return ImageSplits(
        pool=pool,
        pool_labels=pool_labels,
        test=test_ds,
        test_labels=test_labels,
        num_classes=len(classes),
        name="hf",
        classes=classes,
    )
