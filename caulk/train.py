"""Train one (model, peft, data, n, seed) point and write its record.

``train(cfg)`` does the work and returns the record; ``main`` is the ``@hydra.main`` entry
(``python -m caulk.train model=vit_b peft=lora``, ``-m`` for sweeps).
"""

from __future__ import annotations

import copy
import logging
import os
import platform
import re
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

from caulk import __version__
from caulk.cluster import finished_record, is_global_zero
from caulk.errors import CaulkConfigError, exit_on_config_error
from caulk.records import RECORD_NAME, write_json_atomic

log = logging.getLogger("caulk.train")
# The frozen backbone is in eval mode on purpose; tiny n gives epochs shorter than the log interval.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
warnings.filterwarnings("ignore", message=r".*The `srun` command is available on your system.*")
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def validate_config(cfg: DictConfig) -> None:
    """Checks that need nothing built; raise CaulkConfigError with a one-line message."""
    from caulk.backbones import check_backbone_cfg
    from caulk.peft import get_peft

    for seed in curve_seeds(cfg):
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise CaulkConfigError(f"seeds must be integers, got {seed!r}")
    ns = cfg.get("curve", {}).get("n")
    if ns is not None and (isinstance(ns, (str, int)) or len(ns) == 0):
        raise CaulkConfigError(
            f"curve.n must be a non-empty list of sizes, e.g. [10,20,40], got {ns!r}"
        )
    cache = cfg.get("cache") or {}
    for key in ("features", "disk", "batch_points"):
        if not isinstance(cache.get(key, True), bool):
            raise CaulkConfigError(f"cache.{key} must be true or false, got {cache.get(key)!r}")
    if not isinstance(cfg.get("compile", False), bool):
        raise CaulkConfigError(f"compile must be true or false, got {cfg.get('compile')!r}")
    if cache.get("loop", "fast") not in ("fast", "lightning"):
        raise CaulkConfigError(f"cache.loop must be fast or lightning, got {cache.get('loop')!r}")
    check_backbone_cfg(cfg.model)
    if cfg.model.weights == "zoo":
        from caulk.pretrain import check_source_cfg

        check_source_cfg(cfg.model, cfg.get("source_task"))
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


def _point(cfg: DictConfig, backbone, n: int, seed: int) -> dict[str, Any]:
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


#: interpolations that cannot read a point's n or seed: Hydra's runtime values, the environment
_POINT_FREE_RESOLVERS = re.compile(r"\$\{(hydra|oc\.env):[^${}]*\}")
_ABSOLUTE_REFERENCE = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")
_POINT_KEYS = ("seed", "data", "data.n")


def _interpolations(node: Any):
    """Every interpolation string in a DictConfig/ListConfig, depth first."""
    keys = range(len(node)) if OmegaConf.is_list(node) else node.keys()
    for key in keys:
        if OmegaConf.is_interpolation(node, key):
            yield str(node._get_node(key)._value())
            continue
        child = node._get_node(key)
        if OmegaConf.is_config(child) and not (child._is_none() or child._is_missing()):
            yield from _interpolations(child)


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
        return [OmegaConf.to_container(_point_cfg(cfg, *p), resolve=True) for p in points]
    base = OmegaConf.to_container(cfg, resolve=True)
    resolved = []
    for n, seed in points:
        config = copy.deepcopy(base)
        config["data"]["n"], config["seed"] = n, seed
        resolved.append(config)
    return resolved


def _point_cfg(cfg: DictConfig, n: int | None, seed: int) -> DictConfig:
    point = cfg.copy()
    with open_dict(point):
        point.data.n = n
        point.seed = seed
    return point


def _point_data_cfg(cfg: DictConfig, n: int | None) -> DictConfig:
    """``cfg.data`` with the point's n; interpolations in it still resolve against ``cfg``."""
    data = cfg.data.copy()
    with open_dict(data):
        data.n = n
    return data


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one point; write ``record.json`` into ``cfg.paths.output_dir`` and return it.

    Bad input raises CaulkConfigError before any training and writes no record. A failure
    during training writes a record with ``status="failed"`` and re-raises.
    """
    if is_curve(cfg):
        raise CaulkConfigError("curve.n/curve.seeds are set: use train_curve(cfg)")
    return train_curve(cfg)[0]


def train_curve(cfg: DictConfig) -> list[dict[str, Any]]:
    """Run every (n, seed) point of ``curve_points(cfg)`` in this process; one record per point.

    The backbone is built (and its weights loaded) once; each point adapts a fresh copy. Single
    runs write ``<output_dir>/record.json``; curve runs write ``<output_dir>/n<n>_s<seed>/record.json``
    and log all points to one W&B run with n as x-axis. Every point is validated before any
    training. A failed point leaves a failed record, the others still run, and the job then raises.
    """
    start = time.perf_counter()
    validate_config(cfg)

    import pytorch_lightning as pl

    from caulk.backbones import create_backbone
    from caulk.data import build_datamodule, load_splits
    from caulk.loggers import init_wandb_run
    from caulk.torch_env import skip_nvml_check_without_driver

    skip_nvml_check_without_driver()  # after Lightning's import, which turns the check on

    output_dir = Path(cfg.paths.output_dir)
    if cfg.trainer.get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    curve = is_curve(cfg)
    points = curve_points(cfg)
    datamodules = []
    # a point's config is a copy of the curve's with its n and seed (a few ms each), unless no
    # interpolation can read those two: then every point reads the curve's and gets them passed
    share = points_share_config(cfg)
    if share:
        point_cfgs = [cfg] * len(points)
        data_cfgs = [_point_data_cfg(cfg, n) for n, _ in points]
    else:
        point_cfgs = [_point_cfg(cfg, n, seed) for n, seed in points]
        data_cfgs = [p.data for p in point_cfgs]
    splits = load_splits(data_cfgs[0])  # points differ only in n and seed: one load
    for (_, seed), data_cfg in zip(points, data_cfgs, strict=True):  # validates every n first
        pl.seed_everything(seed, workers=True, verbose=False)
        datamodules.append(build_datamodule(data_cfg, seed, splits))
    if len({(dm.n, s) for dm, (_, s) in zip(datamodules, points, strict=True)}) != len(points):
        raise CaulkConfigError(f"curve has repeated (n, seed) points: {points}")
    point_dirs = [
        output_dir / f"n{dm.n}_s{seed}" if curve else output_dir
        for dm, (_, seed) in zip(datamodules, points, strict=True)
    ]
    resolved_points = resolve_points(cfg, points, share)
    done = [finished_record(d, r) for d, r in zip(point_dirs, resolved_points, strict=True)]
    if all(r is not None for r in done):  # a re-launched sweep: nothing left to do here
        log.info("all %d point(s) already have an ok record: skipped", len(done))
        return done
    backbone = create_backbone(cfg.model, cfg.get("source_task"), cfg.paths.get("zoo_dir"))
    from caulk.peft import apply_peft

    probe_model = copy.deepcopy(backbone.model)
    probe = apply_peft(probe_model, cfg.peft)  # e.g. LoRA targets matching nothing
    features = _cached_prefix(cfg, backbone, probe_model, probe, datamodules[0])
    pending = [i for i, r in enumerate(done) if r is None]  # points with an ok record are skipped
    heads = None
    if features is not None:
        heads = _batched_heads(cfg, [datamodules[i] for i in pending], features)
    trained = None if heads is None else dict(zip(pending, heads, strict=True))

    resolved = OmegaConf.to_container(cfg, resolve=True)
    run = None
    records: list[dict[str, Any]] = []
    reuse: dict[str, Any] = {}  # what the points of this curve can share (see _fit_point)
    try:
        if curve:
            name = f"{cfg.model.name}-{cfg.peft.name}-curve"
            curve_info = {
                "model": cfg.model.name,
                "peft": cfg.peft.name,
                "data": cfg.data.name,
                "curve_n": [dm.n for dm in datamodules],
                "curve_seeds": curve_seeds(cfg),
            }
            if is_global_zero():
                run = init_wandb_run(
                    cfg.get("logger"), output_dir, name, {**curve_info, "config": resolved}
                )
        for i, ((_, seed), dm, point_dir, record) in enumerate(
            zip(points, datamodules, point_dirs, done, strict=True)
        ):
            if record is not None:
                log.info("point n=%s seed=%s already has an ok record: skipped", dm.n, seed)
                records.append(record)
                continue
            head = None if trained is None else trained[i]
            records.append(
                _fit_point(
                    point_cfgs[i],
                    seed,
                    resolved_points[i],
                    backbone,
                    dm,
                    point_dir,
                    curve,
                    run,
                    start,
                    features,
                    head,
                    reuse,
                )
            )
            start = time.perf_counter()
    finally:
        _finish_wandb(run, failed=any(r["status"] != "ok" for r in records))
    failed = [r for r in records if r["status"] != "ok"]
    if curve and failed:
        raise RuntimeError(
            f"{len(failed)} of {len(records)} curve points failed; first: {failed[0]['message']}"
        )
    return records


def _cached_prefix(cfg: DictConfig, backbone, probe_model, probe, datamodule):
    """The frozen prefix's outputs over pool and test when caching applies (caulk.features)."""
    cache = cfg.get("cache") or {}
    augmented = str(cfg.data.get("augment", "none")) != "none"  # augmentation and caching exclude
    if not cache.get("features", True) or augmented:
        return None
    from caulk.feature_store import load_or_extract
    from caulk.features import plan_prefix

    plan = plan_prefix(probe_model, probe)
    if plan is None:
        return None
    datamodule.set_input_transform(backbone.data_config, augment=False)
    disk = cache.get("dir") if cache.get("disk", True) else None
    from caulk.fastfit import fast_loop_device

    device = fast_loop_device(cfg.trainer)  # the GPU when the run uses one
    return load_or_extract(probe_model, plan, datamodule, backbone.data_config, disk, device)


def _batched_heads(cfg: DictConfig, datamodules: list, features) -> list[dict] | None:
    """Linear-probe heads of all points trained at once on the cached features, when the fast
    loop applies and the optimizer is elementwise (caulk.fastfit.fit_linear_heads); else None."""
    from hydra.utils import instantiate

    from caulk.fastfit import batched_heads_unsupported, fit_linear_heads
    from caulk.features import CachedFeatureDataModule

    if not _use_fast_loop(cfg) or batched_heads_unsupported(cfg, features):
        return None
    cached = [CachedFeatureDataModule(dm, features) for dm in datamodules]
    labels = (cached[0]._labels("pool"), cached[0]._labels("test"))
    return fit_linear_heads(
        cached,
        features,
        labels,
        cfg,
        instantiate(cfg.optimizer),
        head_norm=bool(cfg.peft.get("head_norm", True)),
    )


def _fit_point(
    cfg: DictConfig,
    seed: int,
    resolved: dict[str, Any],
    backbone,
    datamodule,
    output_dir: Path,
    curve: bool,
    curve_run,
    start: float,
    features=None,
    trained: dict[str, Any] | None = None,
    reuse: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Adapt a copy of ``backbone`` on one (n, seed) point, test it, write its record.

    ``cfg`` is the point's config, or the curve's when ``points_share_config``: read the point's
    seed from ``seed`` and its n from ``datamodule``.

    ``trained``: the point's head, trained with the other points of its curve (fit_linear_heads).
    Such points never change the backbone, so the first one's module is kept in ``reuse`` and
    the others only load their head into it.
    """
    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from caulk.backbones import count_params
    from caulk.callbacks import ScalingPointLogger
    from caulk.cluster import (
        RngStateCheckpoint,
        cluster_plugins,
        prepare_ddp_children,
        resume_checkpoint,
    )
    from caulk.loggers import csv_logger, init_wandb_run, lightning_wandb_logger
    from caulk.module import TransferModule
    from caulk.peft import ADAPTER_NAME, apply_peft, export_adapter

    shared = None if trained is None or reuse is None else reuse.get("batched")
    if shared is None:
        pl.seed_everything(seed, workers=True, verbose=False)
        # a linear probe on cached features never runs or changes the backbone: no copy needed
        whole = features is not None and features.plan.depth is None
        model = backbone.model if whole else copy.deepcopy(backbone.model)
        method = apply_peft(model, cfg.peft)
    else:
        model, method = shared["module"].backbone, shared["module"].method
    datamodule.set_input_transform(backbone.data_config)
    point = _point(cfg, backbone, datamodule.n, seed)
    record: dict[str, Any] = {
        **point,
        "arch": backbone.arch,
        "weights_file": backbone.weights_file,
        "zoo_entry": (backbone.zoo_meta or {}).get("name"),
        "source_accuracy": (backbone.zoo_meta or {}).get("source_accuracy"),
        "init_seed": cfg.model.get("init_seed", 0) if backbone.weights == "none" else None,
        "peft_knob": method.knob,
        "peft_knob_value": method.knob_value(),
        "peft_params": method.trainable_params,  # trained inside the backbone (head excluded)
        "pool_size": datamodule.pool_size,
        "n_val": len(datamodule.val_idx),
        "curve": curve,
        "features_cached": features is not None,
        "cache_prefix": None if features is None else features.plan.tag,
        "cache_source": None if features is None else features.source,
        "caulk_version": __version__,
        "torch_version": torch.__version__,
        "host": platform.node(),
        "output_dir": str(output_dir.resolve()),
        "config": resolved,
    }
    run = None
    try:
        if shared is None:
            module = TransferModule(
                model,
                method,
                datamodule.num_classes,
                optimizer=None if trained else instantiate(cfg.optimizer),
                scheduler=cfg.scheduler,
                head_norm=bool(cfg.peft.get("head_norm", True)),
                hparams=resolved,
                cached_prefix=None if features is None else features.plan,
            )
            params = {
                "trainable_params": count_params(module, trainable_only=True),
                "total_params": count_params(module),
                "backbone_params": count_params(backbone.model),
            }
            if trained is not None and reuse is not None:
                reuse["batched"] = {"module": module, "params": params}
        else:
            module, params = shared["module"], shared["params"]
        record.update(params)
        loggers = csv_logger(cfg.get("logger"), output_dir)
        if not curve and is_global_zero():
            run_name = f"{cfg.model.name}-{cfg.peft.name}-n{datamodule.n}-s{seed}"
            run = init_wandb_run(
                cfg.get("logger"), output_dir, run_name, {**point, "config": resolved}
            )
            loggers += lightning_wandb_logger(run)
        fast = trained is not None or (features is not None and _use_fast_loop(cfg))
        record["train_loop"] = ("fast_batched" if trained else "fast") if fast else "lightning"
        record["compiled"] = not fast and bool(cfg.get("compile", False))
        if fast:
            from caulk.callbacks.scaling import log_scaling_point
            from caulk.fastfit import fit_cached, replay_logs, save_checkpoint
            from caulk.features import CachedFeatureDataModule

            if trained is not None:  # trained with the other points of the curve
                module.head.load_state_dict(trained["head_state"])
                module.n_train_seen = trained["metrics"]["n_train_seen"]
                module.train_samples_per_epoch = trained["metrics"]["per_epoch"]
                replay_logs(loggers, trained["history"])
                m = trained["metrics"]
            else:
                m = fit_cached(
                    module, CachedFeatureDataModule(datamodule, features), cfg.trainer, loggers
                )
            if curve_run or run:
                tests = {k: v for k, v in m.items() if k.startswith("test/")}
                log_scaling_point(curve_run or run, point, tests)
            for c in (cfg.get("callbacks") or {}).values():  # ModelCheckpoint's last.ckpt
                if c and "ModelCheckpoint" in str(c.get("_target_", "")):
                    name = f"{c.get('filename') or 'last'}.ckpt"
                    save_checkpoint(
                        module,
                        output_dir / "checkpoints" / name,
                        m["global_steps"],
                        m["epochs"],
                        hparams=resolved,
                    )
            record["adapter_file"] = str(export_adapter(module, output_dir / ADAPTER_NAME))
            record.update(
                status="ok",
                message="",
                test_error=m["test/error"],
                test_loss=m["test/loss"],
                val_error=m.get("val/error"),
                n_test=int(m["test/n_test"]),
                n_train_seen=module.n_train_seen,
                train_samples_per_epoch=module.train_samples_per_epoch,
                global_steps=m["global_steps"],
                epochs=m["epochs"],
            )
            return record
        callbacks = [
            instantiate(c, dirpath=str(output_dir / "checkpoints"))
            if "ModelCheckpoint" in str(c.get("_target_", ""))
            else instantiate(c)
            for c in (cfg.get("callbacks") or {}).values()
            if c
        ]
        callbacks += [ScalingPointLogger(point, run=curve_run or run), RngStateCheckpoint()]
        trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
        plugins = cluster_plugins()
        if plugins:
            trainer_kwargs["plugins"] = plugins
        prepare_ddp_children(trainer_kwargs)
        trainer = pl.Trainer(
            **trainer_kwargs,
            logger=loggers or False,
            callbacks=callbacks,
            default_root_dir=str(output_dir),
        )
        ckpt_path = resume_checkpoint(output_dir, resolved)
        record["resumed_from"] = None if ckpt_path is None else str(ckpt_path)
        # Lightning unwraps the compiled module and runs the compiled forward
        fit_module = torch.compile(module) if record["compiled"] else module
        if features is None:
            trainer.fit(fit_module, datamodule=datamodule, ckpt_path=ckpt_path)
        else:
            from caulk.features import CachedFeatureDataModule

            cached = CachedFeatureDataModule(datamodule, features)
            trainer.fit(
                fit_module,
                cached.train_dataloader(),
                cached.val_dataloader() or None,
                ckpt_path=ckpt_path,
            )
        val_error = trainer.callback_metrics.get("val/error")
        if features is None:
            trainer.test(fit_module, datamodule=datamodule, verbose=False)
        else:
            trainer.test(fit_module, cached.test_dataloader(), verbose=False)
        record["adapter_file"] = str(export_adapter(module, output_dir / ADAPTER_NAME))
        m = trainer.callback_metrics
        record.update(
            status="ok",
            message="",
            test_error=float(m["test/error"]),
            test_loss=float(m["test/loss"]),
            val_error=None if val_error is None else float(val_error),
            n_test=int(m["test/n_test"]),
            n_train_seen=module.n_train_seen,
            train_samples_per_epoch=module.train_samples_per_epoch,
            global_steps=int(trainer.global_step),
            # completed epochs from the step count (Lightning's counter is off by one on resume)
            epochs=int(trainer.global_step // max(1, trainer.num_training_batches)),
        )
    except Exception as e:
        record.update(
            status="failed", message=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()
        )
        if not curve:
            raise
    except BaseException as e:  # preempted (submitit requeues and exits) or interrupted
        record.update(status="interrupted", message=f"{type(e).__name__}: {e}")
        raise
    finally:
        record["wall_time_s"] = round(time.perf_counter() - start, 3)
        if is_global_zero():  # DDP: one record per point, written by rank 0
            write_json_atomic(output_dir / RECORD_NAME, record)
        if run is not None:
            _finish_wandb(run, failed=record.get("status") != "ok")
    return record


def _use_fast_loop(cfg: DictConfig) -> bool:
    """Cached prefixes train in caulk's light loop unless cache.loop=lightning or the trainer
    settings need Lightning (caulk.fastfit.fast_loop_unsupported)."""
    from caulk.fastfit import fast_loop_unsupported

    if (cfg.get("cache") or {}).get("loop", "fast") != "fast":
        return False
    why = fast_loop_unsupported(cfg)
    if why:
        log.info("cached prefix trains through Lightning: %s", why)
    return why is None


def _finish_wandb(run, failed: bool) -> None:
    """Close a W&B run (multirun jobs in one process must not share a run)."""
    if run is None:
        return
    try:
        run.finish(exit_code=1 if failed else 0)
    except Exception as e:  # e.g. the W&B service was killed with a preempted job: never mask that
        log.warning("could not finish the W&B run: %s: %s", type(e).__name__, e)


def format_summary(record: dict[str, Any]) -> str:
    """A short human-readable summary of a record."""
    frac = 100.0 * record["trainable_params"] / max(1, record["total_params"])
    knob = f" {record['peft_knob']}={record['peft_knob_value']}" if record.get("peft_knob") else ""
    val = record.get("val_error")
    lines = [
        "caulk run summary",
        f"  model       {record['model']} ({record['backbone_tag']}, weights={record['weights']})",
        f"  peft        {record['peft']}{knob}: {record['trainable_params']:,} trainable / "
        f"{record['total_params']:,} total params ({frac:.2f}%)",
        f"  data        {record['data']}: n={record['n']} (pool {record['pool_size']}, "
        f"val {record['n_val']}, test {record['n_test']}), seed {record['seed']}",
        f"  test error  {record['test_error']:.4f}  (test loss {record['test_loss']:.4f}"
        + (f", val error {val:.4f})" if val is not None else ")"),
        f"  wall time   {record['wall_time_s']:.1f} s",
        f"  record      {Path(record['output_dir']) / RECORD_NAME}",
    ]
    return "\n".join(lines)


def format_curve_summary(records: list[dict[str, Any]]) -> str:
    """A table of a curve's points: mean test error (and spread over seeds) per n."""
    first = records[0]
    lines = [
        f"caulk curve summary: {first['model']} + {first['peft']} on {first['data']} "
        f"({first['trainable_params']:,} trainable / {first['total_params']:,} params)",
        f"  {'n':>7}  {'seeds':>5}  {'test error':>10}  {'min':>7}  {'max':>7}",
    ]
    for n in sorted({r["n"] for r in records}):
        errs = [r["test_error"] for r in records if r["n"] == n]
        lines.append(
            f"  {n:7d}  {len(errs):5d}  {sum(errs) / len(errs):10.4f}  {min(errs):7.4f}  {max(errs):7.4f}"
        )
    lines.append(f"  records under {Path(first['output_dir']).parent}")
    return "\n".join(lines)


GROUPS = (
    "model",
    "peft",
    "data",
    "source_task",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "hydra",
    "experiment",
    "debug",
    "hydra/launcher",
)
# options that Hydra and its plugins provide without a file under conf/
BUILTIN_OPTIONS = {"hydra/launcher": ("basic", "submitit_local", "submitit_slurm")}
_SIMPLE_VALUES = re.compile(r"[\w.-]+(,[\w.-]+)*")


def check_group_overrides(args: list[str], config_dir: str = CONFIG_DIR) -> None:
    """Reject ``group=option`` overrides naming no config file, in one line, before Hydra runs."""
    for arg in args:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in GROUPS or not _SIMPLE_VALUES.fullmatch(value) or value == "null":
            continue
        files = {p.stem for p in Path(config_dir, key).glob("*.yaml")}
        available = sorted(files | set(BUILTIN_OPTIONS.get(key, ())))
        for option in value.split(","):
            if option not in available:
                raise CaulkConfigError(
                    f"unknown {key} {option!r}; available: {', '.join(available)}"
                )


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        records = train_curve(cfg)
    except CaulkConfigError as e:
        exit_on_config_error(e, cfg.paths.output_dir)
    if not is_global_zero():  # a DDP child: rank 0 reports
        pass
    elif len(records) == 1:
        print(format_summary(records[0]), flush=True)
    else:
        print(format_curve_summary(records), flush=True)
    return sum(r["test_error"] for r in records) / len(records)


def run_cli(hydra_main: Callable[[], Any]) -> None:
    """Check the command line's group options (one-line error, exit 2), then run ``hydra_main``."""
    try:
        check_group_overrides(sys.argv[1:])
    except CaulkConfigError as e:
        print(f"caulk: error: {e}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


def main() -> None:
    """``python -m caulk.train [overrides]``."""
    run_cli(_hydra_main)


if __name__ == "__main__":
    main()
