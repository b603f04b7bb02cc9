"""Early stopping on validation with the best state restored, shared by the light loop and the
Lightning engine (``BestStateCallback``) so both stop at the same step and test the same state."""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
import torch


class BestState:
    """The best validation state of a run, kept in memory: the lowest validation error (ties: the
    earlier step) and the trainable tensors then; stop after ``patience`` checks without a better
    error."""

    def __init__(self, patience: int):
        self.patience = int(patience)
        self.best_error = math.inf
        self.best_step: int | None = None
        self.since = 0  # validation checks since the best one
        self.state: dict[str, torch.Tensor] | None = None

    def update(self, module, error: float, step: int) -> bool:
        """Record the check at ``step`` (optimizer steps taken); whether training should stop."""
        if error < self.best_error:
            self.best_error, self.best_step, self.since = float(error), int(step), 0
            self.state = {k: v.detach().clone() for k, v in module.trainable_state_dict().items()}
        else:
            self.since += 1
        return self.since >= self.patience

    @torch.no_grad()
    def restore(self, module) -> None:
        """Put the best state back into ``module`` (nothing when no check ran)."""
        if self.state is None:
            return
        for k, v in module.trainable_state_dict().items():
            v.copy_(self.state[k].to(v.device))

    def metrics(self) -> dict[str, Any]:
        """What the record takes from early stopping: ``best_step`` and the best ``val/error``."""
        if self.best_step is None:
            return {"best_step": None}
        return {"best_step": self.best_step, "val/error": self.best_error}

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs to go on stopping (and restoring) the same way."""
        keys = ("best_error", "best_step", "since", "state")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The inverse of ``state_dict``."""
        for k, v in state.items():
            setattr(self, k, v)


class BestStateCallback(pl.Callback):
    """``BestState`` for the Lightning Trainer: checks ``val/error`` after each validation, stops
    the run after ``patience`` checks without improvement, restores the best state at the end."""

    def __init__(self, patience: int):
        self.best = BestState(patience)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        error = trainer.callback_metrics.get("val/error")
        if trainer.sanity_checking or error is None:
            return
        if self.best.update(pl_module, float(error), trainer.global_step):
            trainer.should_stop = True

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.best.restore(pl_module)

    def state_dict(self) -> dict[str, Any]:
        return self.best.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best.load_state_dict(state_dict)
