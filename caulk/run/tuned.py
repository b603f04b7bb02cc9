"""A tuned curve (``tune.policy: grid``): every candidate of every point trains as a unit of its
own (``<point dir>/tune/c<k>[_f<fold>]/record.json``, resumable, a failure recorded and not fatal
to the point), then each point keeps its best candidate on validation (``caulk.tune``).

- ``holdout``: the point's record is the chosen candidate's, with ``tune``, ``selected`` and
  ``candidates`` (each candidate's values, validation error and status);
- ``within_n``: the candidates train on the folds inside n; the chosen one then retrains on all n
  with no validation data, and that run is the point's record.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf, open_dict

from caulk.budget import step_budget
from caulk.cluster import finished_record
from caulk.plan import CurvePlan, PointPlan, point_cfg
from caulk.run.curve import curve_strategy, make_context, open_curve_run, run_curve
from caulk.run.point import finish_wandb
from caulk.run.record import Record
from caulk.run.wandb_curve import log_curve_end, log_curve_point
from caulk.tune import (
    Candidate,
    candidate_cfg,
    candidates,
    grid_of,
    pooled_error,
    select,
    validation_policy,
    within_n_splits,
)

log = logging.getLogger("caulk.train")
RECORD_FIELDS = {f.name for f in dataclasses.fields(Record)}


def _point_base_cfg(plan: CurvePlan, point: PointPlan):
    """The point's own config (its n and seed set), whatever its plan shares."""
    return point_cfg(plan.cfg, point.resolved["data"]["n"], point.seed)


def _subset_datamodule(dm, train_idx: np.ndarray, val_idx: np.ndarray):
    """A shallow copy of ``dm`` training on ``train_idx`` and validating on ``val_idx``."""
    sub = copy.copy(dm)
    sub.train_idx, sub.val_idx, sub.n = train_idx, val_idx, len(train_idx)
    return sub


def _unit(cfg, dm, output_dir: Path, seed: int, group: int, name: str) -> PointPlan:
    """One training unit (a candidate, or a candidate on a fold) as a point of a plan."""
    budget = step_budget(cfg, dm.n)
    if budget is not None:
        with open_dict(cfg):
            cfg.trainer.max_steps = budget
    resolved = OmegaConf.to_container(cfg, resolve=True)
    done = finished_record(output_dir, resolved)
    extra = {"tune_candidate": name}
    return PointPlan(dm.n, seed, cfg, resolved, dm, output_dir, done, budget, group, extra)


def candidate_units(plan: CurvePlan, point: PointPlan, grid: list[Candidate]) -> list[PointPlan]:
    """The units that choose ``point``'s candidate: one per candidate (holdout), or one per
    candidate and fold (within_n)."""
    base, dm = _point_base_cfg(plan, point), point.datamodule
    within = validation_policy(plan.cfg) == "within_n"
    splits = within_n_splits(dm.n, plan.cfg, point.seed) if within else [None]
    units = []
    for cand in grid:
        cfg = candidate_cfg(base, cand)
        for f, split in enumerate(splits):
            name = f"c{cand.index}" if split is None else f"c{cand.index}_f{f}"
            sub = dm
            if split is not None:
                sub = _subset_datamodule(dm, dm.train_idx[split[0]], dm.train_idx[split[1]])
            unit_cfg = cfg if split is None else cfg.copy()
            units.append(
                _unit(unit_cfg, sub, point.output_dir / "tune" / name, point.seed, cand.index, name)
            )
    return units


def _candidate_summaries(
    grid: list[Candidate], units: list[PointPlan], records: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per candidate: its values, validation error (pooled over folds) and status."""
    out = []
    for cand in grid:
        mine = [(u, r) for u, r in zip(units, records, strict=True) if u.group == cand.index]
        ok = all(r["status"] == "ok" for _, r in mine)
        errors = [r.get("val_error") if r["status"] == "ok" else None for _, r in mine]
        sizes = [len(u.datamodule.val_idx) for u, _ in mine]
        val = pooled_error(errors, sizes) if ok else None
        failed = next((r for _, r in mine if r["status"] != "ok"), None)
        out.append(
            {
                "values": cand.values,
                "val_error": val,
                "status": "ok" if ok else failed["status"],
                **({} if ok else {"message": failed.get("message", "")}),
            }
        )
    return out


def tune_info(cfg) -> dict[str, Any]:
    """The ``tune`` field of a tuned point's record: the policy, validation and grid."""
    info = {"policy": "grid", "validation": validation_policy(cfg), "grid": grid_of(cfg)}
    if info["validation"] == "within_n":
        fraction = cfg.tune.get("fraction")
        info.update(folds=None if fraction is not None else int(cfg.tune.folds), fraction=fraction)
    info["selection"] = "lowest validation error; ties: the earlier candidate in grid order"
    return info


def _point_record(unit_records: list[dict[str, Any]], best: int | None, summaries) -> Record:
    """The chosen candidate's record as a Record (the first candidate's when none is usable)."""
    chosen = unit_records[0] if best is None else unit_records[best]
    return Record(**{k: copy.deepcopy(v) for k, v in chosen.items() if k in RECORD_FIELDS})


def _holdout_point(
    plan: CurvePlan, point: PointPlan, grid, units, records, summaries, best
) -> dict[str, Any]:
    """Write ``point``'s record from its chosen candidate's (holdout validation)."""
    record = _point_record(records, best, summaries)
    record.update(
        config=point.resolved,
        output_dir=str(point.output_dir.resolve()),
        curve=plan.curve,
        tune=tune_info(plan.cfg),
        tune_candidate=None,
        candidates=summaries,
        wall_time_s=round(sum(r.get("wall_time_s") or 0.0 for r in records), 3),
    )
    if best is None:
        first = next((c for c in summaries if c["status"] != "ok"), None)
        why = (
            f"every tune candidate failed; first: {first.get('message', '')}"
            if first
            else "no tune candidate has a validation error to choose by (is "
            "trainer.val_check_interval beyond trainer.max_steps?)"
        )
        record.update(status="failed", message=why)
        record.selected = None
    else:
        record.selected = {**grid[best].values, **(record.selected or {})}
    record.write(point.output_dir)
    return record.to_dict()


def _final_unit(plan: CurvePlan, point: PointPlan, grid, best: int, summaries) -> PointPlan:
    """The retrain of ``point``'s chosen candidate on all n, without validation data."""
    cfg = candidate_cfg(_point_base_cfg(plan, point), grid[best])
    dm = _subset_datamodule(point.datamodule, point.datamodule.train_idx, np.array([], dtype=int))
    unit = _unit(cfg, dm, point.output_dir, point.seed, best, name="")
    unit.resolved, unit.done = point.resolved, None  # relaunch: the point's record says its config
    unit.record_extra = {
        "tune": tune_info(plan.cfg),
        "selected": dict(grid[best].values),
        "candidates": summaries,
    }
    return unit


def run_tuned(plan: CurvePlan, start: float | None = None) -> list[dict[str, Any]]:
    """Run a tuned job: every pending point's candidates, the choice, then the point records
    (a retrain on all n under ``within_n``). The records of all points, in order."""
    start = time.perf_counter() if start is None else start
    if not plan.pending:
        log.info("all %d point(s) already have an ok record: skipped", len(plan.points))
        return [p.done for p in plan.points]
    grid = candidates(plan.cfg)
    todo = {i: candidate_units(plan, p, grid) for i, p in enumerate(plan.points) if p.done is None}
    units = [u for us in todo.values() for u in us]
    stage = CurvePlan(plan.cfg, True, units, log_curve=False)
    ctx = make_context(stage) if stage.pending else None
    unit_records = iter(run_curve(stage, start, ctx, strict=False))
    records: dict[int, dict[str, Any]] = {}
    finals = []
    within = validation_policy(plan.cfg) == "within_n"
    for i, us in todo.items():
        mine = [next(unit_records) for _ in us]
        summaries = _candidate_summaries(grid, us, mine)
        best = select([c["val_error"] for c in summaries])
        p = plan.points[i]
        chosen = "none (every candidate failed)" if best is None else grid[best].values
        log.info("point n=%s seed=%s: tune chose %s", p.n, p.seed, chosen)
        if within and best is not None:
            finals.append((i, _final_unit(plan, plan.points[i], grid, best, summaries)))
        else:
            first_of = [mine[[u.group for u in us].index(c.index)] for c in grid]
            records[i] = _holdout_point(plan, plan.points[i], grid, us, first_of, summaries, best)
    _log_points(plan, list(records.values()))
    if finals:
        final = CurvePlan(plan.cfg, plan.curve, [u for _, u in finals])
        if ctx is None:
            ctx = make_context(final)
        ctx.strategy = curve_strategy(final, ctx.strategy.features)
        done = run_curve(final, time.perf_counter(), ctx)
        records.update(zip([i for i, _ in finals], done, strict=True))
    refresh = [p.done for p in plan.points]
    return [records.get(i, refresh[i]) for i in range(len(plan.points))]


def _log_points(plan: CurvePlan, records: list[dict[str, Any]]) -> None:
    """Log the points chosen without a retrain (holdout) to the curve's W&B run."""
    if not records:
        return
    run = open_curve_run(plan)
    if run is None:
        return
    try:
        for record in records:
            log_curve_point(run, record)
        log_curve_end(run, records)
    finally:
        finish_wandb(run, failed=any(r["status"] != "ok" for r in records))
