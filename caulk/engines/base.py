"""What every engine is given (``PointJob``) and what it returns (``PointResult``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from caulk.cache.extract import CachedFeatures
from caulk.module import TransferModule
from caulk.outcomes import encode_outcomes, split_digest


@dataclass
class PointJob:
    """One (n, seed) point ready to train: its config, module, data and where it writes."""

    cfg: DictConfig  # the point's config (the curve's when its points share it)
    resolved: dict[str, Any]  # the point's resolved config: checkpoints carry it
    point: dict[str, Any]  # the point's identity (model, peft, n, seed, ...): W&B logs it
    module: TransferModule
    datamodule: Any
    output_dir: Path
    loggers: list  # Lightning loggers of the point (CSV, W&B)
    scaling_run: Any  # the point's own W&B run, for its (n, error) (a curve logs its points itself)
    features: CachedFeatures | None = None
    compiled: bool = False


@dataclass
class PointResult:
    """The metrics of a trained and tested point (what goes into its record)."""

    test_error: float
    test_loss: float
    val_error: float | None
    n_test: int
    n_train_seen: int
    train_samples_per_epoch: int
    global_steps: int
    epochs: int
    resumed_from: str | None = None
    best_step: int | None = None  # early stopping: the step whose state was restored and tested
    selected: dict[str, Any] | None = None  # solver engine: the chosen λ
    candidates: list[dict[str, Any]] | None = None  # solver engine: each λ's validation error
    test_correct: str | None = None  # caulk.outcomes: which test rows it got right
    test_set: str | None = None  # caulk.outcomes.split_digest of the test labels


def result_from_metrics(
    metrics: dict[str, Any], module: TransferModule, resumed_from: str | None = None
) -> PointResult:
    """A PointResult from the metrics a Trainer (or the light loop) leaves behind."""
    val_error = metrics.get("val/error")
    return PointResult(
        test_error=float(metrics["test/error"]),
        test_loss=float(metrics["test/loss"]),
        val_error=None if val_error is None else float(val_error),
        n_test=int(metrics["test/n_test"]),
        n_train_seen=module.n_train_seen,
        train_samples_per_epoch=module.train_samples_per_epoch,
        global_steps=int(metrics["global_steps"]),
        epochs=int(metrics["epochs"]),
        resumed_from=resumed_from,
        best_step=metrics.get("best_step"),
        **outcome_fields(*module.take_test_outcomes(), int(metrics["test/n_test"])),
    )


def outcome_fields(correct, labels, n_test: int) -> dict[str, str | None]:
    """The record's ``test_correct`` and ``test_set`` from per-row outcomes and labels in test
    order; None for both when they do not cover the test split once (e.g. sharded under DDP)."""
    if correct is None or len(correct) != n_test:
        return {"test_correct": None, "test_set": None}
    return {"test_correct": encode_outcomes(correct), "test_set": split_digest(labels)}


def checkpoint_names(cfg: DictConfig) -> list[str]:
    """The file names ModelCheckpoint callbacks of ``cfg`` keep (their ``last.ckpt``)."""
    return [
        f"{c.get('filename') or 'last'}.ckpt"
        for c in (cfg.get("callbacks") or {}).values()
        if c and "ModelCheckpoint" in str(c.get("_target_", ""))
    ]
