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

from hydra.utils import instantiate
from omegaconf import DictConfig

from caulk.backbones import Backbone, create_backbone
from caulk.budget import early_stop_patience
from caulk.cache.data import CachedFeatureDataModule
from caulk.cache.extract import CachedFeatures
from caulk.cache.prefix import plan_prefix
from caulk.cache.store import load_or_extract
from caulk.cluster import is_global_zero
from caulk.engines import batched, solvers, suffix
from caulk.engines.strategy import Strategy, choose, fast_loop_device
from caulk.loggers import init_wandb_run
from caulk.peft import apply_peft
from caulk.plan import CurvePlan, PointPlan, curve_seeds, refresh_finished
from caulk.progress import Progress, progress_stream
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


#: engines from the most general (trains any config) to the most specialised
_GENERALITY = ("lightning", "cached", "batched_suffix", "batched_heads", "solver")


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
    strategy = min(strategies, key=lambda s: _GENERALITY.index(s.engine))
    if strategy.engine == "batched_suffix" and len(plan.points) < 2:
        return Strategy("cached", features, "one point: nothing to batch")
    return strategy


def make_context(plan: CurvePlan) -> CurveContext:
    """What the points of ``plan`` share: backbone, cached features and the engine."""
    backbone, features = curve_features(plan)
    return CurveContext(plan.cfg, backbone, curve_strategy(plan, features), plan.curve)


#: the engines that fit all pending points' heads at once, before the points run
_CURVE_FITS = ("batched_heads", "solver", "batched_suffix")


def _curve_heads(plan: CurvePlan, engine: str, features: CachedFeatures) -> dict[int, Any]:
    """The pending points' heads, fitted together by ``engine``; a failure of that computation
    becomes each point's failure (each still gets its record)."""
    groups: dict[int | None, list[int]] = {}
    for i, p in enumerate(plan.points):
        if p.done is None:
            groups.setdefault(p.group, []).append(i)
    if plan.curve and is_global_zero():  # one step for all points: one line, no per-point ones
        what = f"{sum(map(len, groups.values()))} points in one {engine} fit"
        label = f"{plan.cfg.model.name} {plan.cfg.peft.name}"
        print(f"[caulk] {what}  {label}", file=progress_stream(), flush=True)
    fit = batched.train_heads if engine == "batched_heads" else solvers.solve_points
    cfgs = [plan.cfg if key is None else plan.points[idx[0]].cfg for key, idx in groups.items()]
    if engine == "batched_heads" and len(groups) > 1 and batched.grid_shares_computation(cfgs):
        return _grid_heads(plan, cfgs, list(groups.values()), features)
    heads: dict[int, Any] = {}
    for key, pending in groups.items():  # else one computation per candidate of a tuned curve
        cfg = plan.cfg if key is None else plan.points[pending[0]].cfg
        try:
            fitted = fit(cfg, [plan.points[i].datamodule for i in pending], features)
        except Exception as e:
            log.warning("the %s fit of the curve failed: %s: %s", engine, type(e).__name__, e)
            fitted = [e] * len(pending)
        heads.update(zip(pending, fitted, strict=True))
    return heads


def _grid_heads(
    plan: CurvePlan, cfgs: list, groups: list[list[int]], features: CachedFeatures
) -> dict[int, Any]:
    """The heads of every candidate of a tuned curve, trained as one batched computation."""
    dms = [[plan.points[i].datamodule for i in idx] for idx in groups]
    try:
        fitted = batched.train_heads_grid(list(zip(cfgs, dms, strict=True)), features)
    except Exception as e:
        log.warning("the batched fit of the tune grid failed: %s: %s", type(e).__name__, e)
        fitted = [[e] * len(idx) for idx in groups]
    return {
        i: h for idx, hs in zip(groups, fitted, strict=True) for i, h in zip(idx, hs, strict=True)
    }


def _suffix_fits(plan: CurvePlan, ctx: CurveContext) -> dict[int, Any]:
    """The pending points trained as one ``batched_suffix`` computation (one per candidate
    when the candidates' configs or modules differ in more than their optimizers); the
    strategy falls back to the per-point ``cached`` engine, with the reason, when a module
    cannot be batched. A failure of a computation becomes each of its points' failure."""
    groups: dict[int | None, list[int]] = {}
    for i, p in enumerate(plan.points):
        if p.done is None:
            groups.setdefault(p.group, []).append(i)
    cfgs = [plan.points[idx[0]].cfg for idx in groups.values()]
    template, states = None, {}
    for i in (i for idx in groups.values() for i in idx):  # one module at a time: K states
        module = initial_module(ctx, plan.points[i])
        template = template or module
        states[i] = suffix.trainable_tensors(module)
    why = suffix.suffix_unsupported(template)
    if why:
        log.info("the points train one by one: %s", why)
        ctx.strategy = dataclasses.replace(ctx.strategy, engine="cached", reason=why)
        return {}
    shapes = {i: {n: t.shape for n, t in s.items()} for i, s in states.items()}
    together = batched.grid_shares_computation(cfgs, own=("trainer.max_steps",)) and all(
        v == shapes[next(iter(shapes))] for v in shapes.values()
    )
    parts = [list(groups.values())] if together else [[idx] for idx in groups.values()]
    if plan.curve and is_global_zero():
        print(f"[caulk] {len(states)} points in {len(parts)} batched_suffix fit(s)  "
              f"{plan.cfg.model.name} {plan.cfg.peft.name}", file=progress_stream(), flush=True)  # fmt: skip
    fits: dict[int, Any] = {}
    for part in parts:
        fits.update(_suffix_fit(plan, ctx, part, template, states))
    return fits


def _suffix_fit(plan, ctx, part: list[list[int]], template, states: dict) -> dict[int, Any]:
    """One batched_suffix computation over the candidates ``part`` (lists of point indices):
    one optimizer per candidate and step budget, over contiguous rows."""
    features = ctx.strategy.features
    budget = {i: _point_budget(plan.points[i]) for idx in part for i in idx}
    order, optimizers = [], []
    for idx in part:
        for b in sorted({budget[i] for i in idx}):
            rows = [i for i in idx if budget[i] == b]
            factory = instantiate(plan.points[rows[0]].cfg.optimizer)
            optimizers.append((factory, slice(len(order), len(order) + len(rows)), b))
            order += rows
    data = [CachedFeatureDataModule(plan.points[i].datamodule, features) for i in order]
    labels = (data[0].labels("pool"), data[0].labels("test"))
    steps, cfg = max(budget.values()), plan.points[order[0]].cfg
    label = f"{cfg.model.name} {cfg.peft.name}: {len(order)} points"
    show = plan.curve and is_global_zero()
    progress = Progress("batched step", steps, label, every=max(1, steps // 10)) if show else None
    try:
        fitted = suffix.fit_suffix_points(
            template, [states[i] for i in order], data, features, labels, cfg, optimizers,
            early_stop_patience(cfg), progress,
        )  # fmt: skip
    except Exception as e:
        log.warning("the batched_suffix fit of the curve failed: %s: %s", type(e).__name__, e)
        fitted = [e] * len(order)
    finally:
        if progress is not None:
            progress.close()
    return dict(zip(order, fitted, strict=True))


def _point_budget(point: PointPlan) -> int:
    """The point's step budget: its own (``budget.mode=epochs``) or ``trainer.max_steps``."""
    return int(point.step_budget or point.cfg.trainer.max_steps)


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
        if ctx.strategy.engine == "batched_suffix":
            ctx.heads = _suffix_fits(plan, ctx)
        elif ctx.strategy.engine in _CURVE_FITS:
            ctx.heads = _curve_heads(plan, ctx.strategy.engine, ctx.strategy.features)
        records = _run_points(plan, ctx, start)
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
    if not plan.curve or not is_global_zero() or ctx.strategy.engine in _CURVE_FITS:
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
