"""The Python entry for notebooks and scripts: train as ``python -m caulk.train`` would, read back.

``run_train(overrides)`` composes ``conf/train.yaml`` with the CLI's overrides, trains the job
in this process and returns its records; ``load(*sweep_dirs)`` reads the records under one or
more run or sweep dirs as one table. Both are re-exported lazily as ``caulk.run_train`` and
``caulk.load``, so ``import caulk`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from caulk.analysis.collect import collect_records
from caulk.cli import CONFIG_DIR, check_group_overrides
from caulk.errors import CaulkConfigError, one_line


def compose_train(
    overrides: Sequence[str] = (), output_dir: str | Path | None = None
) -> DictConfig:
    """``conf/train.yaml`` with ``overrides`` (the CLI's ``key=value`` strings), its output dir
    ``output_dir`` or else a fresh Hydra run dir (``logs/train/runs/<time>`` by default).

    Bad overrides raise CaulkConfigError with a one-line message.
    """
    if isinstance(overrides, str) or not all(isinstance(o, str) for o in overrides):
        raise CaulkConfigError(
            f"overrides must be a list of 'key=value' strings, e.g. ['model=vit_pico'], got {overrides!r}"
        )
    overrides = list(overrides)
    check_group_overrides(overrides)
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise CaulkConfigError(f"bad override in {overrides}: {one_line(e)}") from None
    run_dir = output_dir if output_dir is not None else OmegaConf.select(cfg, "hydra.run.dir")
    with open_dict(cfg):
        cfg.paths.output_dir = str(Path(run_dir))
        del cfg["hydra"]
    return cfg


def run_train(
    overrides: Sequence[str] = (), output_dir: str | Path | None = None
) -> list[dict[str, Any]]:
    """Train the job that ``python -m caulk.train OVERRIDES`` would (one point, or a curve with
    ``curve.n``/``curve.seeds``) in this process and return its records.

    The records are written under ``output_dir`` (default: a fresh ``logs/train/runs/<time>``
    below ``$CAULK_ROOT`` or the working dir), one ``record.json`` per point, as the CLI writes
    them; points already finished there with the same config are kept, as when a CLI job is
    relaunched. Bad input raises CaulkConfigError (one line) before any training.
    """
    cfg = compose_train(overrides, output_dir)
    # caulk.train pulls in torch and Lightning (~10 s): only when training, not for load()
    from caulk.train import train_curve

    return train_curve(cfg)


def load(*sweep_dirs: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """The records under ``sweep_dirs`` (run dirs, sweep dirs, any dir holding ``record.json``
    files) as one table: a row per record, ok and failed, scalar fields, plus ``record_path``.
    Dirs may be given one by one or as lists: ``load(a, b)`` is ``load([a, b])``."""
    sweep_dirs = tuple(_flat_paths(sweep_dirs))
    if not sweep_dirs:
        raise CaulkConfigError("load() needs at least one dir holding record.json files")
    return collect_records(list(sweep_dirs)).table


def _flat_paths(items: Sequence[Any]) -> list[str | Path]:
    """``items`` with lists and tuples of paths flattened; CaulkConfigError for anything else."""
    paths: list[str | Path] = []
    for item in items:
        if isinstance(item, (list, tuple)):
            paths += _flat_paths(item)
        elif isinstance(item, (str, Path)):
            paths.append(item)
        else:
            raise CaulkConfigError(
                f"load() takes dirs as str or Path (or lists of them), got {type(item).__name__}: "
                f"{item!r}"
            )
    return paths
