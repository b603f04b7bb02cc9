"""Hydra callback: analyse a sweep when it ends (same code as ``python -m caulk.analyze``).

Hydra skips ``on_multirun_end`` when any job fails, and passes no job results; so the analysis
reads the records on disk, and the standalone CLI covers sweeps that ended with failures.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from caulk.analysis.console import format_analysis
from caulk.analysis.pipeline import analyze

log = logging.getLogger("caulk.analyze")


class AnalyzeOnMultirunEnd(Callback):
    """Run ``caulk.analyze`` on the sweep dir when a multirun ends (never fails the sweep)."""

    def __init__(
        self,
        enabled: bool = True,
        wandb: bool = False,
        wandb_mode: str = "auto",
        bootstrap: int = 200,
    ):
        self.enabled, self.bootstrap = enabled, bootstrap
        self.wandb_mode = wandb_mode if wandb else "off"

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        try:
            result = analyze(
                [config.hydra.sweep.dir],
                replicates=self.bootstrap,
                wandb_mode=self.wandb_mode,
                wandb_project=OmegaConf.select(config, "logger.wandb.project") or "caulk",
                wandb_group=OmegaConf.select(config, "logger.wandb.group"),  # else the sweep's
            )
            log.info(format_analysis(result))
        except Exception as e:  # the sweep itself succeeded: never fail it over its analysis
            log.warning(
                f"analysis of {config.hydra.sweep.dir} failed ({type(e).__name__}: {e}); "
                f"run `python -m caulk.analyze {config.hydra.sweep.dir}`"
            )
