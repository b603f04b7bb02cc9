"""Hydra callback: before Hydra creates a run's or a sweep's dirs, check that it can (one-line
error, exit 2) and note which dirs exist, so that a job rejected for bad input removes only what
it created (``caulk.errors.remove_created_output``)."""

from __future__ import annotations

import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from caulk.errors import CaulkConfigError, check_writable, remember_existing


def _prepare(path: str, what: str) -> None:
    try:
        check_writable(path, what)
    except CaulkConfigError as e:
        print(f"caulk: error: {e}", file=sys.stderr)
        sys.exit(2)
    remember_existing(path)


class RememberExistingDirs(Callback):
    """Checks and notes the run dir or the sweep dir before Hydra creates it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _prepare(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _prepare(config.hydra.sweep.dir, "hydra.sweep.dir")
