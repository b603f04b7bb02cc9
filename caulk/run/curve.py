"""A curve: build the backbone once, plan the cache and the strategy, then run every point."""

from __future__ import annotations

import copy
import logging
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from caulk.backbones import Backbone, create_backbone
from caulk.cache.extract import CachedFeatures
from caulk.cache.prefix import plan_prefix
from caulk.cache.store import load_or_extract
from caulk.cluster import is_global_zero
from caulk.engines import batched, solvers
from caulk.engines.strategy import choose, fast_loop_device
from caulk.loggers import init_wandb_run
from caulk.peft import apply_peft
from caulk.plan import CurvePlan, PointPlan, curve_seeds, refresh_finished
from caulk.progress import Progress, progress_stream
from caulk.run.guards import job_lock, sigterm_raises
from caulk.run.point import CurveContext, finish_wandb, run_point
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


def _curve_run(plan: CurvePlan):
    """The W&B run a curve logs all its points to (None for a single point or off rank 0)."""
    cfg = plan.cfg
    if not plan.curve or not is_global_zero():
        return None
    info = {
        "model": cfg.model.name,
        "peft": cfg.peft.name,
        "data": cfg.data.name,
        "curve_n": [p.n for p in plan.points],
        "curve_seeds": curve_seeds(cfg),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    name = f"{cfg.model.name}-{cfg.peft.name}-curve"
    return init_wandb_run(cfg.get("logger"), Path(cfg.paths.output_dir), name, info)


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


def _context(plan: CurvePlan) -> CurveContext:
    backbone, features = curve_features(plan)
    strategy = choose(plan.cfg, features, [p.step_budget for p in plan.points])
    return CurveContext(plan.cfg, backbone, strategy, plan.curve)


#: the engines that fit all pending points' heads at once, before the points run
_CURVE_FITS = ("batched_heads", "solver")


def _curve_heads(plan: CurvePlan, engine: str, features: CachedFeatures) -> dict[int, Any]:
    """The pending points' heads, fitted together by ``engine``; a failure of that computation
    becomes each point's failure (each still gets its record)."""
    pending = [i for i, p in enumerate(plan.points) if p.done is None]
    dms = [plan.points[i].datamodule for i in pending]
    if plan.curve and is_global_zero():  # one step for all points: one line, no per-point ones
        what = f"{len(pending)} points in one {engine} fit"
        label = f"{plan.cfg.model.name} {plan.cfg.peft.name}"
        print(f"[caulk] {what}  {label}", file=progress_stream(), flush=True)
    try:
        fit = batched.train_heads if engine == "batched_heads" else solvers.solve_points
        heads = fit(plan.cfg, dms, features)
    except Exception as e:
        log.warning("the %s fit of the curve failed: %s: %s", engine, type(e).__name__, e)
        heads = [e] * len(pending)
    return dict(zip(pending, heads, strict=True))


def _all_done(plan: CurvePlan) -> list[dict[str, Any]]:
    log.info("all %d point(s) already have an ok record: skipped", len(plan.points))
    return [p.done for p in plan.points]


def run_curve(plan: CurvePlan, start: float | None = None) -> list[dict[str, Any]]:
    """Run every pending point of ``plan``; the records of all its points, in order.

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
    ctx = _context(plan)  # bad input (e.g. a PEFT that matches nothing) fails here, unwritten
    lock = job_lock(plan.cfg.paths.output_dir) if is_global_zero() else nullcontext()
    with lock, sigterm_raises():
        refresh_finished(plan)  # another process may have run points while this one waited
        if not plan.pending:
            return _all_done(plan)
        if ctx.strategy.engine in _CURVE_FITS:
            ctx.heads = _curve_heads(plan, ctx.strategy.engine, ctx.strategy.features)
        records = _run_points(plan, ctx, start)
    failed = [r for r in records if r["status"] != "ok"]
    if plan.curve and failed:
        raise RuntimeError(
            f"{len(failed)} of {len(records)} curve points failed; first: {failed[0]['message']}"
        )
    return records


def _point_progress(plan: CurvePlan, ctx: CurveContext) -> Progress | None:
    """The progress of a curve's pending points (none for a single point, off rank 0, or when
    their heads were all fitted at once before)."""
    if not plan.curve or not is_global_zero() or ctx.strategy.engine in _CURVE_FITS:
        return None
    return Progress("point", len(plan.pending))


def _point_label(cfg: DictConfig, point: PointPlan) -> str:
    return f"{cfg.model.name} {cfg.peft.name} n={point.n} seed={point.seed}"


def _run_points(plan: CurvePlan, ctx: CurveContext, start: float) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    progress = _point_progress(plan, ctx)
    try:
        ctx.curve_run = _curve_run(plan)
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
        if progress is not None:
            progress.close()
        finish_wandb(ctx.curve_run, failed=any(r["status"] != "ok" for r in records))
    return records
