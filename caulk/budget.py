"""Step budgets and early stopping of gradient-trained points (the ``budget`` config section).

``budget.mode: fixed`` trains every point ``trainer.max_steps`` steps. ``budget.mode: epochs``
gives each point a budget that grows with its own n: ``clamp(ceil(epochs * n / batch_size),
min_steps, max_steps)``, set as that point's ``trainer.max_steps`` (the cosine schedule follows)
and recorded as ``step_budget``. ``budget.early_stop`` (either mode) keeps the state with the lowest
validation error (ties: the earlier step) and restores it before testing (``best_step``).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any


def step_budget(cfg: Any, n: int) -> int | None:
    """The step budget of a point of ``cfg`` with ``n`` training examples; None under
    ``budget.mode: fixed`` (the point trains ``trainer.max_steps``)."""
    budget = cfg.get("budget") or {}
    if budget.get("mode", "fixed") == "fixed":
        return None
    return epochs_budget(
        budget["epochs"], n, cfg.data.batch_size, budget["min_steps"], budget["max_steps"]
    )


def epochs_budget(epochs: float, n: int, batch_size: int, min_steps: int, max_steps: int) -> int:
    """``clamp(ceil(epochs * n / batch_size), min_steps, max_steps)``, in exact arithmetic
    (``Fraction(str(epochs))``: 0.1 epochs is a tenth, not its binary neighbour)."""
    steps = math.ceil(Fraction(str(epochs)) * int(n) / int(batch_size))
    return min(max(steps, int(min_steps)), int(max_steps))


def early_stop_patience(cfg: Any) -> int | None:
    """The patience (validation checks without improvement) when early stopping is on, else None."""
    early = (cfg.get("budget") or {}).get("early_stop") or {}
    return int(early["patience"]) if early.get("enabled", False) else None
