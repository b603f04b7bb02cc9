"""The plan of a job: its (n, seed) points, their configs, data, dirs and finished records.

``make_plan(cfg)`` validates the config and every point before anything is built or trained, and
finds the points a relaunched sweep already finished (``caulk.cluster.finished_record``).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf, open_dict

from caulk.backbones import check_backbone_cfg
from caulk.budget import step_budget
from caulk.cluster import finished_record
from caulk.config import check_accelerator_available, check_config
from caulk.data import build_datamodule, load_splits
from caulk.errors import CaulkConfigError, check_writable
from caulk.peft import get_peft
from caulk.tune import check_tune
from caulk.zoo.build import check_source_cfg


def validate_config(cfg: DictConfig) -> None:
    """Checks that need nothing built; raise CaulkConfigError with a one-line message.

    Types and ranges: the schema (``caulk.config.check_config``); then what needs a registry or a
    file (architecture, weights source and file, zoo source task, peft method).
    """
    check_config(cfg)
    check_accelerator_available(cfg)
    check_backbone_cfg(cfg.model)
    if cfg.model.weights == "zoo":
        check_source_cfg(cfg.model, cfg.get("source_task"))
    get_peft(cfg.peft.name)(cfg.peft).validate()


def validate_candidate(cfg: DictConfig) -> None:
    """The checks of one tune candidate's config: the schema and its PEFT method's own."""
    check_config(cfg)
    get_peft(cfg.peft.name)(cfg.peft).validate()


def curve_seeds(cfg: DictConfig) -> list[Any]:
    seeds = cfg.get("curve", {}).get("seeds")
    return [cfg.seed] if seeds is None else list(seeds)


def curve_points(cfg: DictConfig) -> list[tuple[int | None, int]]:
    """The (n, seed) points this job runs: ``curve.n`` x ``curve.seeds``, or the single point."""
    ns = cfg.get("curve", {}).get("n")
    ns = [cfg.data.n] if ns is None else list(ns)
    return [(n, int(seed)) for n in ns for seed in curve_seeds(cfg)]


def is_curve(cfg: DictConfig) -> bool:
    c = cfg.get("curve") or {}
    return c.get("n") is not None or c.get("seeds") is not None


#: interpolations that cannot read a point's n or seed: Hydra's runtime values, the environment
_POINT_FREE_RESOLVERS = re.compile(r"\$\{(hydra|oc\.env):[^${}]*\}")
_ABSOLUTE_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")
_POINT_KEYS = ("seed", "data", "data.n")


def _interpolations(node: Any):
    """Every interpolation string in a config (a DictConfig/ListConfig, or its plain container)."""
    if OmegaConf.is_config(node):
        node = OmegaConf.to_container(node, resolve=False)  # interpolations stay strings
    values = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for value in values:
        if isinstance(value, str) and "${" in value:
            yield value
        else:
            yield from _interpolations(value)


def _may_read_point_keys(interpolation: str) -> bool:
    rest, before = interpolation, None
    while rest != before:  # innermost first: ${oc.env:A,${oc.env:HOME}/x}
        before, rest = rest, _POINT_FREE_RESOLVERS.sub("", rest)
    if any(m.group(1) in _POINT_KEYS for m in _ABSOLUTE_REFERENCE.finditer(rest)):
        return True
    return "${" in _ABSOLUTE_REFERENCE.sub("", rest)  # relative or resolver-made: cannot tell


def points_share_config(cfg: DictConfig) -> bool:
    """Whether the points of ``cfg``'s curve can all read their config from ``cfg`` itself, apart
    from their own ``data.n`` and ``seed``: no interpolation can read those two."""
    return not any(_may_read_point_keys(s) for s in _interpolations(cfg))


def resolve_points(
    cfg: DictConfig, points: list[tuple[int | None, int]], share: bool | None = None
) -> list[dict[str, Any]]:
    """The resolved config of every (n, seed) point: the curve config with its n and seed.

    Resolving costs tens of ms a point, so when no interpolation can read ``seed`` or ``data.n``
    the curve config is resolved once and each point sets its own two values; otherwise (a
    reference to them, a relative one, a custom resolver) every point is resolved on its own.
    ``share``: ``points_share_config(cfg)`` when the caller already has it.
    """
    share = points_share_config(cfg) if share is None else share
    if len(points) < 2 or not share:
        return [OmegaConf.to_container(point_cfg(cfg, *p), resolve=True) for p in points]
    base = OmegaConf.to_container(cfg, resolve=True)
    resolved = []
    for n, seed in points:
        config = copy.deepcopy(base)
        config["data"]["n"], config["seed"] = n, seed
        resolved.append(config)
    return resolved


def point_cfg(cfg: DictConfig, n: int | None, seed: int) -> DictConfig:
    """A copy of the curve config ``cfg`` with the point's n and seed."""
    point = cfg.copy()
    with open_dict(point):
        point.data.n = n
        point.seed = seed
    return point


def point_data_cfg(cfg: DictConfig, n: int | None) -> DictConfig:
    """``cfg.data`` with the point's n; interpolations in it still resolve against ``cfg``."""
    data = cfg.data.copy()
    with open_dict(data):
        data.n = n
    return data


@dataclass
class PointPlan:
    """One (n, seed) point of a job: its config, data and dir, and its record if already ok."""

    n: int
    seed: int
    cfg: DictConfig  # the point's config, or the curve's when its points share it
    resolved: dict[str, Any]
    datamodule: Any
    output_dir: Path
    done: dict[str, Any] | None
    step_budget: int | None = None  # budget.mode=epochs: its trainer.max_steps (None: fixed)
    group: int | None = None  # tune: the candidate it trains (points of one group share a config)
    record_extra: dict[str, Any] = field(default_factory=dict)  # fields added to its record


@dataclass
class CurvePlan:
    """A job's points (one for a single run), in order."""

    cfg: DictConfig
    curve: bool
    points: list[PointPlan]
    log_curve: bool = True  # False: no W&B curve run (the candidates of a tuned curve)

    @property
    def pending(self) -> list[PointPlan]:
        """The points still to train (no ok record made with their config)."""
        return [p for p in self.points if p.done is None]


def make_plan(cfg: DictConfig) -> CurvePlan:
    """Validate ``cfg`` and plan its points: one dataset load, every n checked before any work."""
    validate_config(cfg)
    check_writable(cfg.paths.output_dir, "paths.output_dir")
    curve, points = is_curve(cfg), curve_points(cfg)
    # a point's config is a copy of the curve's with its n and seed (a few ms each), unless no
    # interpolation can read those two: then every point reads the curve's and gets them passed
    share = points_share_config(cfg)
    if share:
        point_cfgs = [cfg] * len(points)
        data_cfgs = [point_data_cfg(cfg, n) for n, _ in points]
    else:
        point_cfgs = [point_cfg(cfg, n, seed) for n, seed in points]
        data_cfgs = [p.data for p in point_cfgs]
    splits = load_splits(data_cfgs[0])  # points differ only in n and seed: one load
    datamodules = []
    for (_, seed), data_cfg in zip(points, data_cfgs, strict=True):  # validates every n first
        pl.seed_everything(seed, workers=True, verbose=False)
        datamodules.append(build_datamodule(data_cfg, seed, splits))
    if len({(dm.n, s) for dm, (_, s) in zip(datamodules, points, strict=True)}) != len(points):
        raise CaulkConfigError(f"curve has repeated (n, seed) points: {points}")
    check_tune(cfg, [dm.n for dm in datamodules], validate_candidate)
    output_dir = Path(cfg.paths.output_dir)
    budgets = [step_budget(cfg, dm.n) for dm in datamodules]
    if budgets[0] is None:
        resolved = resolve_points(cfg, points, share)
    else:  # each point trains its own budget: its own config, resolved with it
        point_cfgs = budgeted_cfgs(cfg, points, point_cfgs, budgets, share)
        resolved = [OmegaConf.to_container(p, resolve=True) for p in point_cfgs]
    plans = []
    for i, ((_, seed), dm) in enumerate(zip(points, datamodules, strict=True)):
        point_dir = output_dir / f"n{dm.n}_s{seed}" if curve else output_dir
        done = finished_record(point_dir, resolved[i])
        plans.append(
            PointPlan(dm.n, seed, point_cfgs[i], resolved[i], dm, point_dir, done, budgets[i])
        )
    return CurvePlan(cfg, curve, plans)


def backbone_plans(plan: CurvePlan) -> list[CurvePlan]:
    """``plan`` split by the backbone its points resolve to (their ``model`` config), in order of
    first appearance: a curve whose ``model.init_seed`` or ``model.source_seed`` follows the run
    seed (``'${seed}'``) builds the backbone each of its points names. ``[plan]`` when all share
    one backbone."""
    keys = [json.dumps(p.resolved["model"], sort_keys=True) for p in plan.points]
    if len(set(keys)) < 2:
        return [plan]
    groups: dict[str, list[PointPlan]] = {}
    for key, point in zip(keys, plan.points, strict=True):
        groups.setdefault(key, []).append(point)
    plans = []
    for points in groups.values():
        cfg = plan.cfg.copy()
        with open_dict(cfg):
            cfg.model = OmegaConf.create(points[0].resolved["model"])
        plans.append(dataclasses.replace(plan, cfg=cfg, points=points))
    return plans


def budgeted_cfgs(
    cfg: DictConfig,
    points: list[tuple[int | None, int]],
    point_cfgs: list[DictConfig],
    budgets: list[int],
    share: bool,
) -> list[DictConfig]:
    """The points' configs, each with its step budget as ``trainer.max_steps`` (copies of the
    curve config when the points shared it)."""
    if share:
        point_cfgs = [point_cfg(cfg, n, seed) for n, seed in points]
    for pcfg, budget in zip(point_cfgs, budgets, strict=True):
        with open_dict(pcfg):
            pcfg.trainer.max_steps = budget
    return point_cfgs


def refresh_finished(plan: CurvePlan) -> None:
    """Look again for ok records of the pending points (written meanwhile by another process)."""
    for point in plan.pending:
        point.done = finished_record(point.output_dir, point.resolved)
