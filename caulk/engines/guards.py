"""What an engine refuses to call a result: a non-finite loss, or a test loss that only a run gone
astray reaches (``Diverged``, with its step), and a point whose optimizer never stepped
(``TrainedNothing``)."""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

#: a test cross-entropy above this multiple of the uniform guess's (ln K) is divergence
DIVERGED_LOSS_FACTOR = 100.0


class Diverged(RuntimeError):
    """The training diverged: its loss became non-finite at ``step`` (or ``why``)."""

    def __init__(self, step: int, why: str | None = None):
        super().__init__(why or f"the training loss became non-finite at step {step}")
        self.step = step


class TrainedNothing(RuntimeError):
    """A point whose optimizer never stepped: its error says nothing about n."""


def check_loss(loss: torch.Tensor, step: int) -> None:
    """Raise ``Diverged`` when ``loss`` is not finite."""
    if not bool(torch.isfinite(loss).all()):
        raise Diverged(step)


def check_test_loss(test_loss: float, num_classes: int, steps: int) -> None:
    """Raise ``Diverged`` when the test cross-entropy is not finite or above
    ``DIVERGED_LOSS_FACTOR`` times the uniform guess's ln K: a head that far off (logits in the
    hundreds at least) has blown up, even where every loss stayed finite (e.g. ``peft.lr=1e30``)."""
    limit = DIVERGED_LOSS_FACTOR * math.log(max(num_classes, 2))
    if not math.isfinite(test_loss):
        raise Diverged(steps)
    if test_loss > limit:
        raise Diverged(
            steps,
            f"the test loss {test_loss:.3g} is above {limit:.3g} ({DIVERGED_LOSS_FACTOR:g} x "
            f"ln(K={num_classes}), the uniform guess's loss): the training diverged (lower peft.lr)",
        )


class DivergenceGuard(pl.Callback):
    """Ends Lightning's fit with ``Diverged`` at the first step whose loss is not finite."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None:
            check_loss(loss.detach(), trainer.global_step)
