"""The ``cached`` engine: a light training loop for cached prefixes: what the Lightning Trainer does, without its overhead.

On cached tensors a step of a linear head costs well under a millisecond, while a Lightning step
costs several (hooks, logging, progress tracking), so a cached curve would be bound by the
framework. ``fit_cached`` reproduces the Trainer's run of ``TransferModule`` step for step: same
optimizer and cosine schedule over the same step budget, the same batches from the same seeded
samplers (the same DataLoaders, iterated the same way), validation every ``val_check_interval``
steps, the same train/eval modes and the same counts (``n_train_seen``, ``global_steps``, epochs).
Results equal the Lightning path to floating-point noise (tested). It applies only to trainer
settings it reproduces (``fast_loop_unsupported`` says why not); everything else goes through
Lightning.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch

from caulk.atomic import write_atomic
from caulk.budget import early_stop_patience
from caulk.cache.data import CachedFeatureDataModule
from caulk.callbacks import log_scaling_point
from caulk.engines.base import (
    Engine,
    PointJob,
    PointResult,
    checkpoint_names,
    result_from_metrics,
)
from caulk.engines.early_stop import BestState
from caulk.engines.guards import check_loss
from caulk.engines.strategy import fast_loop_device


def log_metrics(loggers: list, metrics: dict[str, float], step: int) -> None:
    for lg in loggers:
        lg.log_metrics(metrics, step=step)


def replay_logs(loggers: list, history: list[tuple[int, dict[str, float]]]) -> None:
    """Log the metrics a batched fit recorded for one point, then close the loggers."""
    for step, metrics in history:
        log_metrics(loggers, metrics, step)
    for lg in loggers:
        lg.save()
        lg.finalize("success")


@torch.no_grad()
def _evaluate(module, loader, split: str, device: torch.device) -> dict[str, float]:
    module.eval()
    for x, y, idx in loader:
        module.shared_step((x.to(device), y.to(device), idx), split)
    acc, loss = getattr(module, f"{split}_acc"), getattr(module, f"{split}_loss")
    out = {f"{split}/error": float(1.0 - acc.compute()), f"{split}/loss": float(loss.compute())}
    acc.reset()
    loss.reset()
    return out


def _end_epoch(module, loggers: list, step: int, epochs: int) -> None:
    """What the Trainer does at an epoch's end: keep the fullest epoch's counts, log train metrics."""
    if len(module.train_seen) > module.n_train_seen:
        module.n_train_seen = len(module.train_seen)
        module.train_samples_per_epoch = module.train_drawn
    acc, loss_metric = module.train_acc, module.train_loss
    if acc.update_count:
        train = {
            "train/error": float(1.0 - acc.compute()),
            "train/loss": float(loss_metric.compute()),
        }
        acc.reset()
        loss_metric.reset()
        log_metrics(loggers, {**train, "epoch": epochs}, step - 1)


def _scheduler(module, optimizer, max_steps: int):
    if module.scheduler == "none":
        return None
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_steps)


def fit_cached(
    module, data, trainer_cfg: Any, loggers: list | None = None, patience: int | None = None
) -> dict[str, Any]:
    """Train ``module`` on ``data`` (a CachedFeatureDataModule) like ``Trainer.fit``, then test it.

    ``patience``: early stopping on validation (``caulk.engines.early_stop.BestState``), the best
    state restored before the test. Returns the metrics a Trainer leaves in ``callback_metrics``
    (``test/error``, ``test/loss``, ``test/n_test``, last ``val/error``, or the best one and
    ``best_step`` under early stopping) plus ``global_steps`` and ``epochs``.
    """
    loggers = loggers or []
    if trainer_cfg.get("deterministic"):
        torch.use_deterministic_algorithms(True)
    device = fast_loop_device(trainer_cfg)
    module.to(device)
    max_steps, interval = int(trainer_cfg.max_steps), int(trainer_cfg.val_check_interval)
    log_every = int(trainer_cfg.get("log_every_n_steps", 50) or 50)
    optimizer = module.optimizer_factory(module.trainable_parameters())
    scheduler = _scheduler(module, optimizer, max_steps)
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
    best = None if patience is None else BestState(patience)
    metrics: dict[str, Any] = {}
    step = epochs = 0
    stop = False
    module.train()
    while step < max_steps and not stop:
        module.on_train_epoch_start()
        for x, y, idx in train_loader:
            loss = module.shared_step((x.to(device), y.to(device), idx), "train")
            check_loss(loss.detach(), step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            if step % log_every == 0:
                log_metrics(
                    loggers, {"train/loss": float(loss.detach()), "epoch": epochs}, step - 1
                )
            if val_loader and step % interval == 0:
                val = _evaluate(module, val_loader, "val", device)
                metrics.update(val)
                log_metrics(loggers, {**val, "epoch": epochs}, step - 1)
                module.train()
                stop = best is not None and best.update(module, val["val/error"], step)
            if step >= max_steps or stop:
                break
        _end_epoch(module, loggers, step, epochs)
        epochs += 1
    if best is not None:
        best.restore(module)
        metrics.update(best.metrics())
    metrics.update(_test(module, data, device, loggers, step, epochs))
    # completed epochs, as the Lightning path records them
    return {**metrics, "global_steps": step, "epochs": step // max(1, len(train_loader))}


def _test(module, data, device, loggers: list, step: int, epochs: int) -> dict[str, float]:
    """Test ``module``, log the result and close the loggers."""
    test = _evaluate(module, data.test_dataloader(), "test", device)
    test["test/n_test"] = float(module.test_count.compute())
    module.test_count.reset()
    log_metrics(loggers, {**test, "epoch": epochs}, step)
    for lg in loggers:
        lg.save()
        lg.finalize("success")
    return test


def save_checkpoint(
    module, path, global_step: int, epochs: int, hparams: dict[str, Any] | None = None
) -> None:
    """What ModelCheckpoint keeps of a TransferModule (trainable tensors + plain config, by
    default the module's own hparams), loadable with ``torch.load(weights_only=True)``; written
    atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in module.trainable_state_dict().items()}
    ckpt = {
        "state_dict": state,
        "hyper_parameters": dict(module.hparams if hparams is None else hparams),
        "global_step": int(global_step),
        "epoch": int(epochs),
        "pytorch-lightning_version": pl.__version__,
        "caulk_train_loop": "cached",  # no optimizer state: a cached point is rerun, not resumed
    }
    write_atomic(path, lambda tmp: torch.save(ckpt, tmp))


def finish_point(job: PointJob, metrics: dict[str, Any]) -> PointResult:
    """Log the point's scaling values and keep its checkpoints, as Lightning's callbacks would."""
    if job.scaling_run is not None:
        tests = {k: v for k, v in metrics.items() if k.startswith("test/")}
        log_scaling_point(job.scaling_run, job.point, tests)
    for name in checkpoint_names(job.cfg):  # ModelCheckpoint's last.ckpt
        path = job.output_dir / "checkpoints" / name
        save_checkpoint(
            job.module, path, metrics["global_steps"], metrics["epochs"], hparams=job.resolved
        )
    return result_from_metrics(metrics, job.module)


class CachedEngine(Engine):
    """One point at a time in caulk's light loop on the cached prefix outputs."""

    name, generality = "cached", 1

    def run(self, job: PointJob, fitted: Any = None) -> PointResult:
        """Fit and test the point in the light loop on its cached prefix outputs."""
        data = CachedFeatureDataModule(job.datamodule, job.features)
        patience = early_stop_patience(job.cfg)
        metrics = fit_cached(job.module, data, job.cfg.trainer, job.loggers, patience)
        return finish_point(job, metrics)
