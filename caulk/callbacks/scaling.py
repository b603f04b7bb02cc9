"""Log each run as one point of a scaling curve: downstream error against n."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl


def log_scaling_point(run, point: dict[str, Any], metrics: dict[str, float]) -> None:
    """Log one (n, metrics) point to a W&B run with ``n`` as the x-axis of ``scaling/*``.

    W&B's ``define_metric`` only sets an x-axis within one run, so ``n``, ``seed``, ``model`` and
    ``peft`` also go into the run's config and summary, which is what cross-run scatter plots
    and the aggregate curves use.
    """
    run.define_metric("n")
    run.define_metric("scaling/*", step_metric="n")
    scaling = {f"scaling/{k.split('/')[-1]}": v for k, v in metrics.items()}
    run.log({"n": point["n"], "seed": point["seed"], **scaling})
    run.config.update(point, allow_val_change=True)
    run.summary.update({**point, **metrics})


class ScalingPointLogger(pl.Callback):
    """After testing, log the run's point (n, test error, ...) to its W&B run."""

    def __init__(self, point: dict[str, Any], run=None):
        self.point = dict(point)
        self.run = run

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.run is None:
            return
        metrics = {
            k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")
        }
        log_scaling_point(self.run, self.point, metrics)
