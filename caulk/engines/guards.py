"""What an engine refuses to call a result: a non-finite loss (``Diverged``, with its step) and a
point whose optimizer never stepped (``TrainedNothing``)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch


class Diverged(RuntimeError):
    """The training loss became non-finite at ``step``."""

    def __init__(self, step: int):
        super().__init__(f"the training loss became non-finite at step {step}")
        self.step = step


class TrainedNothing(RuntimeError):
    """A point whose optimizer never stepped: its error says nothing about n."""


def check_loss(loss: torch.Tensor, step: int) -> None:
    """Raise ``Diverged`` when ``loss`` is not finite."""
    if not bool(torch.isfinite(loss).all()):
        raise Diverged(step)


class DivergenceGuard(pl.Callback):
    """Ends Lightning's fit with ``Diverged`` at the first step whose loss is not finite."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            check_loss(loss.detach(), trainer.global_step)
