"""Which engine trains a curve's points, chosen once per curve, with the reason when a faster one
cannot apply.

- ``batched_heads``: a linear probe on cached whole-backbone features, all points' heads trained
  as one computation (``caulk.engines.batched``);
- ``solver``: a linear probe with ``peft.solver`` lbfgs or ridge on cached whole-backbone
  features, every point solved to convergence over a λ grid (``caulk.engines.solvers``);
- ``batched_suffix``: every point's trainable suffix after a cached prefix (LoRA, adapters, ...
  with ``peft.last_k_blocks``) trained as one computation (``caulk.engines.suffix``);
- ``cached``: a cached prefix trained in caulk's light loop (``caulk.engines.cached``);
- ``lightning``: the Lightning Trainer, on images or on cached prefix outputs
  (``caulk.engines.lightning``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from caulk.budget import early_stop_patience
from caulk.cache.extract import CachedFeatures
from caulk.config import SOLVERS, is_int
from caulk.errors import CaulkConfigError

log = logging.getLogger("caulk.train")

_ALLOWED_CALLBACKS = ("ModelCheckpoint",)
#: ``cache.loop`` values that let caulk's own engines train a cached prefix (``fast``: the name
#: before the engines had one name each)
CACHED_LOOPS = ("cached", "fast")


def fast_loop_unsupported(cfg: Any) -> str | None:
    """Why the fast loop cannot reproduce this config's Trainer (None when it can)."""
    t = cfg.trainer
    steps, interval = t.get("max_steps"), t.get("val_check_interval")
    checks = {
        "trainer.max_steps must be a positive step budget": is_int(steps) and steps > 0,
        "trainer.max_epochs must be null or -1": t.get("max_epochs") in (None, -1),
        "trainer.val_check_interval must be an int number of steps": is_int(interval)
        and interval > 0,
        "trainer.check_val_every_n_epoch must be null": t.get("check_val_every_n_epoch") is None,
        "trainer.precision must be 32-true": str(t.get("precision", "32-true"))
        in ("32-true", "32"),
        "trainer.devices must be 1": t.get("devices", 1) in (1, "1", "auto"),
        "trainer.num_nodes must be 1": t.get("num_nodes", 1) in (1, "1"),
        "trainer.accumulate_grad_batches must be 1": t.get("accumulate_grad_batches", 1) == 1,
        "trainer.gradient_clip_val must be unset": not t.get("gradient_clip_val"),
        "trainer.limit_*_batches must be unset": not any(
            t.get(k) is not None for k in ("limit_train_batches", "limit_val_batches")
        ),
        "compile must be false (the light loop runs eager)": not cfg.get("compile", False),
        "only ModelCheckpoint callbacks": all(
            any(a in str(c.get("_target_", "")) for a in _ALLOWED_CALLBACKS)
            for c in (cfg.get("callbacks") or {}).values()
            if c
        ),
    }
    failed = [why for why, ok in checks.items() if not ok]
    return "; ".join(failed) or None


def fast_loop_device(trainer_cfg: Any) -> torch.device:
    """The device the light loop and the feature extraction run on: the run's GPU, if any."""
    acc = str(trainer_cfg.get("accelerator", "auto"))
    if acc in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


#: optimizers whose update is elementwise: stacking the heads of many points changes nothing
ELEMENTWISE_OPTIMIZERS = ("AdamW", "Adam", "SGD", "RMSprop", "Adagrad")


def budget_unsupported(cfg: Any, budgets: list[int | None]) -> str | None:
    """Why the points' step budgets (``budget.mode=epochs``) or early stopping rule out one
    shared computation of all points (which trains them all ``trainer.max_steps`` steps)."""
    own = {b for b in budgets if b is not None}
    if len(own) > 1:
        return "budget differs per point"
    if own and own != {cfg.trainer.get("max_steps")}:
        return "the step budget (budget.mode=epochs) differs from trainer.max_steps"
    if early_stop_patience(cfg) is not None:
        return "early stopping (budget.early_stop) stops each point at its own step"
    return None


def batched_heads_unsupported(
    cfg: Any, features, budgets: list[int | None] | None = None
) -> str | None:
    """Why the heads of a curve's points cannot train as one batched computation (None: they can).

    ``budgets``: the points' own step budgets (None each under ``budget.mode=fixed``)."""
    why = budget_unsupported(cfg, budgets or [])
    if why:
        return why
    opt = cfg.optimizer.get("_target_", "")
    checks = {
        "cache.batch_points is off": (cfg.get("cache") or {}).get("batch_points", True),
        "the prefix is not the whole backbone": features.plan.depth is None,
        f"optimizer {opt} is not elementwise": opt.rsplit(".", 1)[-1] in ELEMENTWISE_OPTIMIZERS,
        "scheduler must be cosine or none": cfg.get("scheduler", "cosine") in ("cosine", "none"),
    }
    failed = [why for why, ok in checks.items() if not ok]
    return "; ".join(failed) or fast_loop_unsupported(cfg)


#: PEFT methods whose trainable tensors can all sit after a cached prefix (``last_k_blocks``)
SUFFIX_METHODS = ("lora", "adapter", "ssf", "bitfit", "partial")


def batched_suffix_unsupported(cfg: Any) -> str | None:
    """Why the points of a curve whose prefix is cached cannot train their suffixes as one
    computation (None: they can; the modules' own check, ``caulk.engines.suffix``, follows).
    Per-point step budgets (``budget.mode=epochs``) and early stopping are kept per point."""
    opt = cfg.optimizer.get("_target_", "")
    checks = {
        "cache.batch_points is off": (cfg.get("cache") or {}).get("batch_points", True),
        f"peft {cfg.peft.name} is not one of {', '.join(SUFFIX_METHODS)}": cfg.peft.name
        in SUFFIX_METHODS,
        "peft.dropout > 0 (each point would draw its own masks)": not cfg.peft.get("dropout"),
        f"optimizer {opt} is not elementwise": opt.rsplit(".", 1)[-1] in ELEMENTWISE_OPTIMIZERS,
        "scheduler must be cosine or none": cfg.get("scheduler", "cosine") in ("cosine", "none"),
    }
    failed = [why for why, ok in checks.items() if not ok]
    return "; ".join(failed) or None


@dataclass(frozen=True)
class Strategy:
    """How a curve's points train: the engine, the cached features it trains on (None: images),
    and why no faster engine applies (None when the fastest one does)."""

    engine: str  # its name in ``caulk.engines.registry.ENGINES`` (the record's ``train_loop``)
    features: CachedFeatures | None = None
    reason: str | None = None
    solver: str | None = None  # the solver engine's peft.solver


def choose(
    cfg: Any, features: CachedFeatures | None, budgets: list[int | None] | None = None
) -> Strategy:
    """The fastest engine that reproduces ``cfg``'s training on ``features`` (None: no cache);
    ``budgets``: the points' own step budgets (``caulk.budget.step_budget``), if any. The
    ``solver`` engine when ``peft.solver`` asks for one (which needs cached features)."""
    solver = str((cfg.get("peft") or {}).get("solver", "sgd"))
    if solver in SOLVERS:
        if features is None or features.plan.depth is not None:
            raise CaulkConfigError(
                f"peft.solver={solver} needs cached features of the whole backbone "
                "(a linear probe with cache.features=true and data.augment=none)"
            )
        return Strategy("solver", features, solver=solver)
    if features is None:
        return Strategy("lightning", None, "no cached prefix")
    if (cfg.get("cache") or {}).get("loop", "cached") not in CACHED_LOOPS:
        return Strategy("lightning", features, "cache.loop=lightning")
    why = fast_loop_unsupported(cfg)
    if why:
        log.info("cached prefix trains through Lightning: %s", why)
        return Strategy("lightning", features, why)
    if features.plan.depth is not None:
        why = batched_suffix_unsupported(cfg)
        return Strategy("cached", features, why) if why else Strategy("batched_suffix", features)
    why = batched_heads_unsupported(cfg, features, budgets)
    if why:
        return Strategy("cached", features, why)
    return Strategy("batched_heads", features)
