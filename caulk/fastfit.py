"""A light training loop for cached prefixes: what the Lightning Trainer does, without its overhead.

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

import torch

_ALLOWED_CALLBACKS = ("ModelCheckpoint",)


def fast_loop_unsupported(cfg: Any) -> str | None:
    """Why the fast loop cannot reproduce this config's Trainer (None when it can)."""
    t = cfg.trainer
    steps, interval = t.get("max_steps"), t.get("val_check_interval")
    checks = {
        "trainer.max_steps must be a positive step budget": isinstance(steps, int) and steps > 0,
        "trainer.max_epochs must be null or -1": t.get("max_epochs") in (None, -1),
        "trainer.val_check_interval must be an int number of steps": isinstance(interval, int)
        and not isinstance(interval, bool)
        and interval > 0,
        "trainer.check_val_every_n_epoch must be null": t.get("check_val_every_n_epoch") is None,
        "trainer.precision must be 32-true": str(t.get("precision", "32-true"))
        in ("32-true", "32"),
        "trainer.devices must be 1": t.get("devices", 1) in (1, "1", "auto"),
        "trainer.accumulate_grad_batches must be 1": t.get("accumulate_grad_batches", 1) == 1,
        "trainer.gradient_clip_val must be unset": not t.get("gradient_clip_val"),
        "trainer.limit_*_batches must be unset": not any(
            t.get(k) is not None for k in ("limit_train_batches", "limit_val_batches")
        ),
        "only ModelCheckpoint callbacks": all(
            any(a in str(c.get("_target_", "")) for a in _ALLOWED_CALLBACKS)
            for c in (cfg.get("callbacks") or {}).values()
            if c
        ),
    }
    failed = [why for why, ok in checks.items() if not ok]
    return "; ".join(failed) or None


def fast_loop_device(trainer_cfg: Any) -> torch.device:
    acc = str(trainer_cfg.get("accelerator", "auto"))
    if acc in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _log(loggers: list, metrics: dict[str, float], step: int) -> None:
    for lg in loggers:
        lg.log_metrics(metrics, step=step)


@torch.no_grad()
def _evaluate(module, loader, split: str, device: torch.device) -> dict[str, float]:
    module.eval()
    for x, y, idx in loader:
        module._step((x.to(device), y.to(device), idx), split)
    acc, loss = getattr(module, f"{split}_acc"), getattr(module, f"{split}_loss")
    out = {f"{split}/error": float(1.0 - acc.compute()), f"{split}/loss": float(loss.compute())}
    acc.reset()
    loss.reset()
    return out


def fit_cached(module, data, trainer_cfg: Any, loggers: list | None = None) -> dict[str, Any]:
    """Train ``module`` on ``data`` (a CachedFeatureDataModule) like ``Trainer.fit``, then test it.

    Returns the metrics a Trainer leaves in ``callback_metrics`` (``test/error``, ``test/loss``,
    ``test/n_test``, last ``val/error``) plus ``global_steps`` and ``epochs``.
    """
    loggers = loggers or []
    if trainer_cfg.get("deterministic"):
        torch.use_deterministic_algorithms(True)
    device = fast_loop_device(trainer_cfg)
    module.to(device)
    max_steps, interval = int(trainer_cfg.max_steps), int(trainer_cfg.val_check_interval)
    log_every = int(trainer_cfg.get("log_every_n_steps", 50) or 50)
    params = module.trainable_parameters()
    optimizer = module.optimizer_factory(params)
    scheduler = None
    if module.scheduler != "none":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_steps)
    train_loader, val_loader = data.train_dataloader(), data.val_dataloader()
    metrics: dict[str, Any] = {}
    step = epochs = 0
    module.train()
    while step < max_steps:
        module.on_train_epoch_start()
        for x, y, idx in train_loader:
            loss = module._step((x.to(device), y.to(device), idx), "train")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            if step % log_every == 0:
                _log(loggers, {"train/loss": float(loss.detach()), "epoch": epochs}, step - 1)
            if val_loader and step % interval == 0:
                val = _evaluate(module, val_loader, "val", device)
                metrics.update(val)
                _log(loggers, {**val, "epoch": epochs}, step - 1)
                module.train()
            if step >= max_steps:
                break
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
            _log(loggers, {**train, "epoch": epochs}, step - 1)
        epochs += 1
    test = _evaluate(module, data.test_dataloader(), "test", device)
    test["test/n_test"] = float(module.test_count.compute())
    module.test_count.reset()
    _log(loggers, {**test, "epoch": epochs}, step)
    for lg in loggers:
        lg.save()
        lg.finalize("success")
    metrics.update(test)
    return {**metrics, "global_steps": step, "epochs": epochs}
