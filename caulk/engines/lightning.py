"""The ``lightning`` engine: Lightning's Trainer, on images or on cached prefix outputs."""

from __future__ import annotations

import sys
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from caulk.budget import early_stop_patience
from caulk.cache.data import CachedFeatureDataModule
from caulk.callbacks import ScalingPointLogger
from caulk.cluster import (
    RngStateCheckpoint,
    cluster_plugins,
    prepare_ddp_children,
    resume_checkpoint,
)
from caulk.engines.base import Engine, PointJob, PointResult, result_from_metrics
from caulk.engines.early_stop import BestStateCallback
from caulk.engines.guards import DivergenceGuard
from caulk.plan import is_curve


def _callbacks(job: PointJob) -> list[pl.Callback]:
    callbacks = [
        instantiate(c, dirpath=str(job.output_dir / "checkpoints"))
        if "ModelCheckpoint" in str(c.get("_target_", ""))
        else instantiate(c)
        for c in (job.cfg.get("callbacks") or {}).values()
        if c
    ]
    guards = [DivergenceGuard(), RngStateCheckpoint()]
    patience = early_stop_patience(job.cfg)
    if patience is not None:  # before the scaling logger: the best state is what gets tested
        callbacks.append(BestStateCallback(patience))
    return callbacks + [ScalingPointLogger(job.point, run=job.scaling_run), *guards]


def _shows_bar(job: PointJob, asked: bool) -> bool:
    """Lightning's bar: when asked for, on a single point (a curve has caulk's per-point progress),
    on a console (a bar in a log file is noise)."""
    return asked and not is_curve(job.cfg) and sys.stdout.isatty() and sys.stderr.isatty()


def _trainer(job: PointJob) -> pl.Trainer:
    kwargs = OmegaConf.to_container(job.cfg.trainer, resolve=True)
    kwargs["enable_progress_bar"] = _shows_bar(job, bool(kwargs.get("enable_progress_bar", True)))
    plugins = cluster_plugins()
    if plugins:
        kwargs["plugins"] = plugins
    prepare_ddp_children(kwargs)
    return pl.Trainer(
        **kwargs,
        logger=job.loggers or False,
        callbacks=_callbacks(job),
        default_root_dir=str(job.output_dir),
    )


class LightningEngine(Engine):
    """The Lightning Trainer, on images or on cached prefix outputs: trains any config."""

    name, generality = "lightning", 0

    def run(self, job: PointJob, fitted: Any = None) -> PointResult:
        """Fit and test the point with a Lightning Trainer (resuming from its last checkpoint)."""
        trainer = _trainer(job)
        ckpt_path = resume_checkpoint(job.output_dir, job.resolved)
        # Lightning unwraps the compiled module and runs the compiled forward
        module = torch.compile(job.module) if job.compiled else job.module
        if job.features is None:
            trainer.fit(module, datamodule=job.datamodule, ckpt_path=ckpt_path)
        else:
            cached = CachedFeatureDataModule(job.datamodule, job.features)
            train, val = cached.train_dataloader(), cached.val_dataloader() or None
            trainer.fit(module, train, val, ckpt_path=ckpt_path)
        val_error = trainer.callback_metrics.get("val/error")
        if job.features is None:
            trainer.test(module, datamodule=job.datamodule, verbose=False)
        else:
            trainer.test(module, cached.test_dataloader(), verbose=False)
        metrics = {
            **{k: v for k, v in trainer.callback_metrics.items() if k.startswith("test/")},
            "val/error": val_error,
            "global_steps": trainer.global_step,
            # completed epochs from the step count (Lightning's counter is off by one on resume)
            "epochs": trainer.global_step // max(1, trainer.num_training_batches),
        }
        best = [c for c in trainer.callbacks if isinstance(c, BestStateCallback)]
        if best:
            metrics.update(best[0].best.metrics())
        resumed = None if ckpt_path is None else str(ckpt_path)
        return result_from_metrics(metrics, job.module, resumed)
