"""A curve: build the backbone once, plan the cache and the strategy, then run every point."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from caulk.backbones import Backbone, create_backbone
from caulk.cache.extract import CachedFeatures
from caulk.cache.prefix import plan_prefix
from caulk.cache.store import load_or_extract
from caulk.cluster import is_global_zero
from caulk.engines import solvers
from caulk.engines.base import CurveFit, FallBack
from caulk.engines.registry import get_engine
from caulk.engines.strategy import Strategy, choose, fast_loop_device
from caulk.loggers import init_wandb_run
from caulk.peft import apply_peft
from caulk.plan import CurvePlan, PointPlan, curve_seeds, refresh_finished
from caulk.progress import Progress
from caulk.run.guards import job_lock, sigterm_raises
from caulk.run.point import CurveContext, finish_wandb, initial_module, run_point
from caulk.run.wandb_curve import curve_run_config, curve_run_name, log_curve_end
from caulk.torch_env import skip_nvml_check_without_driver

log = logging.getLogger("caulk.train")


def cached_features(
    cfg: DictConfig, backbone: Backbone, probe_model, probe, datamodule
) -> CachedFeatures | None:
    """The frozen prefix's outputs over pool and test when caching applies (caulk.cache);
    ``probe_model`` is a copy of the backbone with ``probe``, the curve's PEFT method, applied."""
    cache = cfg.get("cache") or {}
    augmented = str(cfg.data.get("augment", "none")) != "none"  # augmentation and caching exclude
    if not cache.get("features", True) or augmented:
        return None
    prefix = plan_prefix(probe_model, probe)
    if prefix is None:
        return None
    datamodule.set_input_transform(backbone.data_config, augment=False)
    disk = cache.get("dir") if cache.get("disk", True) else None
    device = fast_loop_device(cfg.trainer)  # the GPU when the run uses one
    return load_or_extract(probe_model, prefix, datamodule, backbone.data_config, disk, device)


def open_curve_run(plan: CurvePlan):
    """The W&B run a curve logs all its points to (None for a single point or off rank 0)."""
    cfg = plan.cfg
    if not plan.curve or not plan.log_curve or not is_global_zero():
        return None
    config = curve_run_config(cfg, [p.n for p in plan.points], curve_seeds(cfg))
    return init_wandb_run(
        cfg.get("logger"), Path(cfg.paths.output_dir), curve_run_name(cfg), config
    )


def curve_features(plan: CurvePlan) -> tuple[Backbone, CachedFeatures | None]:
    """The curve's backbone and its cached prefix outputs (None when caching does not apply).

    The PEFT method is applied to a probe copy first, so bad input (LoRA targets matching
    nothing, a solver without cached features) fails here, before anything is written."""
    cfg = plan.cfg
    backbone = create_backbone(cfg.model, cfg.get("source_task"), cfg.paths.get("zoo_dir"))
    probe_model = copy.deepcopy(backbone.model)
    probe = apply_peft(probe_model, cfg.peft)
    solvers.check_solver_inputs(cfg, [p.datamodule for p in plan.points])  # before extraction
    features = cached_features(cfg, backbone, probe_model, probe, plan.points[0].datamodule)
    return backbone, features


def curve_strategy(plan: CurvePlan, features: CachedFeatures | None) -> Strategy:
    """The engine of the curve: ``choose()`` on its config, or, when its points train several
    configs (the candidates of a tuned curve), the most general engine any of them needs."""
    groups: dict[int | None, list] = {}
    for p in plan.points:
        groups.setdefault(p.group, []).append(p)
    strategies = [
        choose(
            plan.cfg if key is None else points[0].cfg, features, [p.step_budget for p in points]
        )
        for key, points in groups.items()
    ]
    strategy = min(strategies, key=lambda s: get_engine(s.engine).generality)
    if strategy.engine == "batched_suffix" and len(plan.points) < 2:
        return Strategy("cached", features, "one point: nothing to batch")
    return strategy


def make_context(plan: CurvePlan) -> CurveContext:
    """What the points of ``plan`` share: backbone, cached features and the engine."""
    backbone, features = curve_features(plan)
    return CurveContext(plan.cfg, backbone, curve_strategy(plan, features), plan.curve)


def _fit_curve(plan: CurvePlan, ctx: CurveContext) -> dict[int, Any]:
    """What the curve's engine fits for all pending points at once (nothing for engines that
    train one point at a time); an engine that finds it cannot batch these points hands them
    to the per-point ``cached`` engine, with the reason."""
    engine = get_engine(ctx.strategy.engine)
    if not engine.fits_curve:
        return {}
    curve = CurveFit(
        plan.cfg, plan.points, ctx.strategy.features, plan.curve and is_global_zero(),
        lambda i: initial_module(ctx, plan.points[i]),
    )  # fmt: skip
    try:
        return engine.fit(curve)
    except FallBack as e:
        log.info("the points train one by one: %s", e.reason)
        ctx.strategy = dataclasses.replace(ctx.strategy, engine="cached", reason=e.reason)
        return {}


def _fit_shares(plan: CurvePlan, ctx: CurveContext, seconds: float) -> dict[int, float]:
    """Each fitted point's share of the curve fit's ``seconds``, by its engine's ``work``: the
    fit's time goes to the points it trained, not all to the first (the adaptive rule's cost
    model reads it per point). Nothing when the points fell back to one at a time."""
    if not ctx.heads:
        return {}
    engine = get_engine(ctx.strategy.engine)
    work = {i: engine.work(plan.points[i]) for i in ctx.heads}
    total = sum(work.values())
    return {i: seconds * w / total for i, w in work.items()}


class CurvePointsFailed(RuntimeError):
    """Some points of a curve failed (each has its failed record); the others ran."""


def _all_done(plan: CurvePlan) -> list[dict[str, Any]]:
    log.info("all %d point(s) already have an ok record: skipped", len(plan.points))
    return [p.done for p in plan.points]


def run_curve(
    plan: CurvePlan,
    start: float | None = None,
    ctx: CurveContext | None = None,
    strict: bool = True,
) -> list[dict[str, Any]]:
    """Run every pending point of ``plan``; the records of all its points, in order.
    ``ctx``: the shared backbone and engine when the caller made them (``make_context``);
    ``strict=False``: failed points of a curve are only recorded (the tune candidates).

    One process at a time runs a job dir (a second waits, then skips what the first finished).
    A failed point of a curve leaves a failed record, the others still run, and the curve then
    raises; a single point's failure raises at once (after writing its record). SIGTERM records
    the point in progress as interrupted and exits 143.
    """
    start = time.perf_counter() if start is None else start
    skip_nvml_check_without_driver()  # after Lightning's import, which turns the check on
    if plan.cfg.trainer.get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if not plan.pending:  # a re-launched sweep: nothing left to do here
        return _all_done(plan)
    ctx = ctx or make_context(plan)  # bad input (a PEFT matching nothing) fails here, unwritten
    lock = job_lock(plan.cfg.paths.output_dir) if is_global_zero() else nullcontext()
    with lock, sigterm_raises():
        refresh_finished(plan)  # another process may have run points while this one waited
        if not plan.pending:
            return _all_done(plan)
        fit_start = time.perf_counter()
        ctx.heads = _fit_curve(plan, ctx)
        ctx.fit_seconds = _fit_shares(plan, ctx, time.perf_counter() - fit_start)
        records = _run_points(plan, ctx, start + sum(ctx.fit_seconds.values()))
    failed = [r for r in records if r["status"] != "ok"]
    if plan.curve and failed and strict:
        raise CurvePointsFailed(
            f"{len(failed)} of {len(records)} curve points failed; first: {failed[0]['message']}"
        )
    return records


def _log_curve_end(run, records: list[dict[str, Any]]) -> None:
    try:
        log_curve_end(run, records)
    except Exception as e:  # e.g. the W&B service died with a preempted job: never mask that
        log.warning("could not log the curve's table to W&B: %s: %s", type(e).__name__, e)


def _point_progress(plan: CurvePlan, ctx: CurveContext) -> Progress | None:
    """The progress of a curve's pending points (none for a single point, off rank 0, or when
    their heads were all fitted at once before)."""
    if not plan.curve or not is_global_zero() or get_engine(ctx.strategy.engine).fits_curve:
        return None
    return Progress("point", len(plan.pending))


def _point_label(cfg: DictConfig, point: PointPlan) -> str:
    candidate = point.record_extra.get("tune_candidate")  # a tuned curve's unit: which one
    unit = f" tune {candidate}" if candidate else ""
    return f"{cfg.model.name} {cfg.peft.name} n={point.n} seed={point.seed}{unit}"


def _run_points(plan: CurvePlan, ctx: CurveContext, start: float) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    progress = _point_progress(plan, ctx)
    try:
        ctx.curve_run = open_curve_run(plan)
        for i, point in enumerate(plan.points):
            if point.done is not None:
                log.info(
                    "point n=%s seed=%s already has an ok record: skipped", point.n, point.seed
                )
                records.append(point.done)
                continue
            if progress is not None:
                progress.begin(_point_label(plan.cfg, point))
            records.append(run_point(ctx, point, i, start).to_dict())
            if progress is not None:
                progress.end()
            start = time.perf_counter()
    finally:
        if ctx.curve_run is not None:
            _log_curve_end(ctx.curve_run, records)
        if progress is not None:
            progress.close()
        finish_wandb(ctx.curve_run, failed=any(r["status"] != "ok" for r in records))
    return records
