"""One point: build its module, let the curve's engine train it, write its record whatever happens."""

from __future__ import annotations

import copy
import dataclasses
import logging
import platform
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from caulk import __version__
from caulk.backbones import Backbone, count_params
from caulk.cluster import is_global_zero
from caulk.engines.base import PointJob, PointResult
from caulk.engines.guards import Diverged, TrainedNothing, check_test_loss
from caulk.engines.registry import get_engine
from caulk.engines.strategy import Strategy
from caulk.loggers import (
    csv_logger,
    init_wandb_run,
    lightning_wandb_logger,
    offline_run_dir,
    print_sync_hint,
)
from caulk.module import TransferModule
from caulk.peft import ADAPTER_NAME, apply_peft, export_adapter
from caulk.plan import PointPlan
from caulk.run.guards import Terminated
from caulk.run.record import Record
from caulk.run.wandb_curve import log_curve_point, run_label
from caulk.threads import current as current_threads

log = logging.getLogger("caulk.train")


@dataclass
class CurveContext:
    """What the points of one curve share: config, backbone, strategy, W&B curve run."""

    cfg: Any
    backbone: Backbone
    strategy: Strategy
    curve: bool
    curve_run: Any = None
    heads: dict[int, Any] = field(default_factory=dict)  # index -> what the engine fitted for it
    fit_seconds: dict[int, float] = field(default_factory=dict)  # index -> its share of the fit
    # batched points share one module per config group (a tuned curve's candidate)
    shared_modules: dict[int | None, tuple[TransferModule, dict[str, int]]] = field(
        default_factory=dict
    )


def point_identity(cfg: Any, backbone: Backbone, n: int, seed: int) -> dict[str, Any]:
    """The keys that name a point (what W&B and the analysis group by)."""
    return {
        "model": cfg.model.name,
        "backbone_tag": backbone.backbone_tag,
        "weights": backbone.weights,
        "source_m": cfg.model.get("source_m") if backbone.weights == "zoo" else None,
        "peft": cfg.peft.name,
        "data": cfg.data.name,
        "n": n,
        "seed": seed,
    }


def _new_record(ctx: CurveContext, plan: PointPlan, method) -> Record:
    cfg, backbone, features = plan.cfg, ctx.backbone, ctx.strategy.features
    zoo = backbone.zoo_meta or {}
    return Record(
        **point_identity(cfg, backbone, plan.datamodule.n, plan.seed),
        arch=backbone.arch,
        weights_file=backbone.weights_file,
        zoo_entry=zoo.get("name"),
        source_accuracy=zoo.get("source_accuracy"),
        init_seed=cfg.model.get("init_seed", 0) if backbone.weights == "none" else None,
        peft_knob=method.knob,
        peft_knob_value=method.knob_value(),
        peft_params=method.trainable_params,  # trained inside the backbone (head excluded)
        pool_size=plan.datamodule.pool_size,
        n_val=len(plan.datamodule.val_idx),
        step_budget=plan.step_budget,
        curve=ctx.curve,
        curve_role=OmegaConf.select(cfg, "curve.role"),
        features_cached=features is not None,
        cache_prefix=None if features is None else features.plan.tag,
        cache_source=None if features is None else features.source,
        train_loop=ctx.strategy.engine,
        engine_reason=ctx.strategy.reason,
        solver=cfg.peft.get("solver") if cfg.peft.name == "linear" else None,
        compiled=ctx.strategy.engine == "lightning" and bool(cfg.get("compile", False)),
        caulk_version=__version__,
        torch_version=torch.__version__,
        **current_threads().fields_for_record(),
        host=platform.node(),
        output_dir=str(plan.output_dir.resolve()),
        config=plan.resolved,
    )


def _adapted_backbone(ctx: CurveContext, plan: PointPlan):
    """(model, method): the point's copy of the backbone with its PEFT method applied (its
    group's shared module's under an engine whose points share one)."""
    if plan.group in ctx.shared_modules:
        module = ctx.shared_modules[plan.group][0]
        return module.backbone, module.method
    return _fresh_backbone(ctx, plan)


def _fresh_backbone(ctx: CurveContext, plan: PointPlan):
    """(model, method) built for the point alone, seeded by it (its initial values)."""
    pl.seed_everything(plan.seed, workers=True, verbose=False)
    features = ctx.strategy.features
    # a linear probe on cached features never runs or changes the backbone: no copy needed
    whole = features is not None and features.plan.depth is None
    model = ctx.backbone.model if whole else copy.deepcopy(ctx.backbone.model)
    return model, apply_peft(model, plan.cfg.peft)


def _module(ctx: CurveContext, plan: PointPlan, model, method) -> tuple[TransferModule, dict]:
    """The point's TransferModule and parameter counts (one module for all the points of a
    group under an engine that ``shares_module``)."""
    if plan.group in ctx.shared_modules:
        return ctx.shared_modules[plan.group]
    built = _new_module(ctx, plan, model, method)
    if get_engine(ctx.strategy.engine).shares_module:
        ctx.shared_modules[plan.group] = built
    return built


def _new_module(ctx: CurveContext, plan: PointPlan, model, method) -> tuple[TransferModule, dict]:
    """A new TransferModule around ``model`` and its parameter counts (no optimizer under an
    engine that trains the curve's points together)."""
    fitted = get_engine(ctx.strategy.engine).fits_curve
    features = ctx.strategy.features
    module = TransferModule(
        model,
        method,
        plan.datamodule.num_classes,
        optimizer=None if fitted else instantiate(plan.cfg.optimizer),
        scheduler=plan.cfg.scheduler,
        head_norm=bool(plan.cfg.peft.get("head_norm", True)),
        hparams=plan.resolved,
        cached_prefix=None if features is None else features.plan,
    )
    params = {
        "trainable_params": count_params(module, trainable_only=True),
        "total_params": count_params(module),
        "backbone_params": count_params(ctx.backbone.model),
    }
    return module, params


def initial_module(ctx: CurveContext, plan: PointPlan) -> TransferModule:
    """The point's TransferModule as the per-point engines build it before training (same
    seed, same initial values, never a shared one): what a batched fit stacks
    (``caulk.engines.suffix``)."""
    return _new_module(ctx, plan, *_fresh_backbone(ctx, plan))[0]


def _checked(result: PointResult, num_classes: int) -> PointResult:
    """``result`` if it is a trained point whose test loss shows no divergence
    (``check_test_loss``); else Diverged or TrainedNothing."""
    if result.global_steps < 1:
        raise TrainedNothing("no optimizer step was taken (trainer.max_steps=0?): nothing trained")
    check_test_loss(result.test_loss, num_classes, result.global_steps)
    return result


def run_point(ctx: CurveContext, plan: PointPlan, index: int, start: float) -> Record:
    """Train, test and record one point. A failure is recorded (and re-raised outside a curve);
    an interruption is recorded as such and re-raised; the record is written in any case."""
    model, method = _adapted_backbone(ctx, plan)
    plan.datamodule.set_input_transform(ctx.backbone.data_config)
    record = _new_record(ctx, plan, method)
    record.update(**plan.record_extra)
    point, run = point_identity(plan.cfg, ctx.backbone, record.n, record.seed), None
    try:
        module, params = _module(ctx, plan, model, method)
        record.update(**params)
        loggers = csv_logger(plan.cfg.get("logger"), plan.output_dir)
        if not ctx.curve and is_global_zero():
            run = init_wandb_run(
                plan.cfg.get("logger"),
                plan.output_dir,
                f"{run_label(plan.cfg)}-n{record.n}-s{record.seed}",
                {**point, "config": plan.resolved},
            )
            loggers += lightning_wandb_logger(run)
        job = PointJob(
            plan.cfg, plan.resolved, point, module, plan.datamodule, plan.output_dir, loggers,
            run, ctx.strategy.features, record.compiled,
        )  # fmt: skip
        trained = get_engine(ctx.strategy.engine).run(job, ctx.heads.get(index))
        result = _checked(trained, plan.datamodule.num_classes)
        record.adapter_file = str(export_adapter(module, plan.output_dir / ADAPTER_NAME))
        outcome = {**dataclasses.asdict(result), **plan.record_extra}  # tune: its own selection
        if result.selected and "selected" in plan.record_extra:  # and the solver's λ, as holdout
            outcome["selected"] = {**plan.record_extra["selected"], **result.selected}
        record.update(**outcome, status="ok", message="")
    except Diverged as e:
        record.update(status="diverged", message=str(e), diverged_at_step=e.step)
        if not ctx.curve:
            raise
    except Exception as e:
        record.status, record.message = "failed", f"{type(e).__name__}: {e}"
        record.traceback = traceback.format_exc()
        if not ctx.curve:
            raise
    except BaseException as e:  # preempted (submitit requeues and exits) or interrupted
        record.status, record.message = "interrupted", f"{type(e).__name__}: {e}"
        if isinstance(e, SIGTERMException):  # Lightning's, which would exit 0
            raise Terminated() from e
        if isinstance(e, SystemExit) and isinstance(e.__context__, KeyboardInterrupt):
            raise KeyboardInterrupt from None  # Lightning's exit(1) on Ctrl+C: caulk exits 130
        raise
    finally:
        record.wall_time_s = round(time.perf_counter() - start + ctx.fit_seconds.get(index, 0), 3)
        if is_global_zero():  # DDP: one record per point, written by rank 0
            record.write(plan.output_dir)
        _log_to_curve(ctx.curve_run, record)
        finish_wandb(run, failed=record.status != "ok")
    return record


def _log_to_curve(curve_run, record: Record) -> None:
    """The point's row in its curve's W&B run (an interrupted point has none)."""
    if curve_run is None or record.status == "interrupted":
        return
    try:
        log_curve_point(curve_run, record.to_dict())
    except Exception as e:  # e.g. the W&B service died with a preempted job: never mask that
        log.warning("could not log the point to W&B: %s: %s", type(e).__name__, e)


def finish_wandb(run, failed: bool) -> None:
    """Close a W&B run (multirun jobs in one process must not share a run); an offline run
    prints the ``wandb sync`` command that uploads it."""
    if run is None:
        return
    offline_dir = offline_run_dir(run)
    try:
        run.finish(exit_code=1 if failed else 0)
    except Exception as e:  # e.g. the W&B service was killed with a preempted job: never mask that
        log.warning("could not finish the W&B run: %s: %s", type(e).__name__, e)
    if offline_dir is not None:
        print_sync_hint([offline_dir])
