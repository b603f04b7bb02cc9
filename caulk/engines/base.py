"""The engine interface (``Engine``): what an engine is given for a whole curve (``CurveFit``)
and for one point (``PointJob``), and what it returns (``PointResult``)."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import DictConfig

from caulk.cache.extract import CachedFeatures
from caulk.module import TransferModule
from caulk.outcomes import encode_outcomes, split_digest
from caulk.progress import progress_stream

log = logging.getLogger("caulk.train")


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


@dataclass
class CurveFit:
    """What an engine that trains every pending point of a curve at once is given."""

    cfg: DictConfig  # the curve's config
    points: list  # the curve's PointPlans, in order (a point's index is its place here)
    features: CachedFeatures
    show: bool  # a curve on rank 0: it prints its one-line summary and progress
    initial_module: Callable[[int], TransferModule]  # point index -> its module before training

    def groups(self) -> dict[int | None, list[int]]:
        """The pending points' indices per config group (None: the curve's one config; else the
        candidates of a tuned curve)."""
        groups: dict[int | None, list[int]] = {}
        for i, p in enumerate(self.points):
            if p.done is None:
                groups.setdefault(p.group, []).append(i)
        return groups

    def group_cfg(self, key: int | None, indices: list[int]) -> DictConfig:
        """The config the points ``indices`` of group ``key`` train with."""
        return self.cfg if key is None else self.points[indices[0]].cfg

    def announce(self, text: str) -> None:
        """The curve's one line for its batched fit, e.g. ``[caulk] 12 points in one solver fit
        vit_pico linear`` (printed by a curve on rank 0 only)."""
        if self.show:
            label = f"{self.cfg.model.name} {self.cfg.peft.name}"
            print(f"[caulk] {text}  {label}", file=progress_stream(), flush=True)


class FallBack(Exception):
    """Raised by ``Engine.fit`` when it finds that it cannot train these points after all: they
    train one at a time with the ``cached`` engine, ``reason`` in their records."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Engine(ABC):
    """One way to train a curve's points, under one ``name`` (config, record ``train_loop``,
    progress and docs). ``fit`` trains every pending point of a curve at once (before the points
    run; engines that train one point at a time fit nothing); ``run`` trains or finishes one
    point, given what ``fit`` returned for it, and reports it."""

    name: ClassVar[str]
    generality: ClassVar[int]  # 0 trains any config; higher: more specialised
    fits_curve: ClassVar[bool] = False  # ``fit`` trains the points before they run
    shares_module: ClassVar[bool] = False  # the points of one group share one TransferModule
    #: ``fit`` steps every live point together, one step of each costing about the same
    work_by_steps: ClassVar[bool] = False

    def fit(self, curve: CurveFit) -> dict[int, Any]:
        """Point index -> what ``run`` needs of it (an Exception: that point's failure)."""
        return {}

    def work(self, point: Any) -> float:
        """A point's part of the curve ``fit``'s work, relative to the other points' (its
        record's ``wall_time_s`` gets that share of the fit's seconds): its step budget where
        the fit steps points together (equal under ``budget.mode=fixed``), else equal."""
        return float(point.step_budget or 1) if self.work_by_steps else 1.0

    @abstractmethod
    def run(self, job: PointJob, fitted: Any = None) -> PointResult:
        """The point's trained and tested result."""


def fit_groups(curve: CurveFit, name: str, fit: Callable) -> dict[int, Any]:
    """Each config group's pending points fitted together by ``fit(cfg, datamodules, features)``
    (one computation per candidate of a tuned curve); a failed computation becomes each of its
    points' failure (each still gets its record)."""
    fitted_points: dict[int, Any] = {}
    for key, pending in curve.groups().items():
        cfg = curve.group_cfg(key, pending)
        try:
            fitted = fit(cfg, [curve.points[i].datamodule for i in pending], curve.features)
        except Exception as e:
            log.warning("the %s fit of the curve failed: %s: %s", name, type(e).__name__, e)
            fitted = [e] * len(pending)
        fitted_points.update(zip(pending, fitted, strict=True))
    return fitted_points
