"""Dataset registry: ``data.name`` -> a loader returning the dataset's splits (like timm's models)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from caulk.data.base import ArraySplits, ImageSplits
from caulk.errors import CaulkConfigError

Splits = ArraySplits | ImageSplits
SplitsLoader = Callable[[Any], Splits]
_LOADERS: dict[str, SplitsLoader] = {}


def register_dataset(name: str) -> Callable[[SplitsLoader], SplitsLoader]:
    """Register ``fn(data_cfg) -> splits`` under ``name``."""

    def wrap(fn: SplitsLoader) -> SplitsLoader:
        if name in _LOADERS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _LOADERS[name] = fn
        return fn

    return wrap


def load_splits(data_cfg: Any) -> Splits:
    """Load the pool and test split of ``data_cfg.name`` (raises CaulkConfigError if unknown)."""
    _import_builtin()
    loader = _LOADERS.get(data_cfg.name)
    if loader is None:
        raise CaulkConfigError(
            f"unknown dataset data.name={data_cfg.name!r}; known: {', '.join(sorted(_LOADERS))}"
        )
    return loader(data_cfg)


def _import_builtin() -> None:
    # import cycle: these modules import register_dataset from here to register themselves
    from caulk.data import digits, hf, imagefolder, torchvision_sets  # noqa: F401
