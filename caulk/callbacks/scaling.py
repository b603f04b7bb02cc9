"""Log each run as one point of a scaling curve: downstream error against n."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.loggers import WandbLogger


class ScalingPointLogger(pl.Callback):
    """After testing, log the point (n, test error, ...) with ``n`` as the x-axis.

    W&B's ``define_metric`` only sets an x-axis within one run, so ``n``, ``seed``, ``model`` and
    ``peft`` also go into the run's config and summary, which is what cross-run scatter plots
    and the aggregate curves use.
    """

    def __init__(self, point: dict[str, Any]):
        self.point = dict(point)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
        }
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                run = logger.experiment
                run.define_metric("n")
                run.define_metric("scaling/*", step_metric="n")
                run.log(
                    {"n": self.point["n"], **{f"scaling/{k[5:]}": v for k, v in metrics.items()}}
                )
                run.config.update(self.point, allow_val_change=True)
                run.summary.update({**self.point, **metrics})
