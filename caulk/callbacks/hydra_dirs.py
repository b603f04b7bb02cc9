"""Hydra callback: note which dirs exist before Hydra creates a run's or a sweep's dirs, so that a
job rejected for bad input removes only what it created (``caulk.errors.remove_created_output``)."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from caulk.errors import remember_existing


class RememberExistingDirs(Callback):
    """Calls ``remember_existing`` on the run dir or the sweep dir before Hydra creates it."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        remember_existing(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        remember_existing(config.hydra.sweep.dir)
