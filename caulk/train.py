"""Train one (model, peft, data, n, seed) point and write its record.

``train(cfg)`` does the work and returns the record; ``main`` is the ``@hydra.main`` entry
(``python -m caulk.train model=vit_b peft=lora``, ``-m`` for sweeps).
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from caulk import __version__
from caulk.errors import CaulkConfigError
from caulk.records import RECORD_NAME, write_json_atomic

log = logging.getLogger("caulk.train")
# The frozen backbone is in eval mode on purpose; tiny n gives epochs shorter than the log interval.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def validate_config(cfg: DictConfig) -> None:
    """Checks that need nothing built; raise CaulkConfigError with a one-line message."""
    from caulk.backbones import check_backbone_cfg
    from caulk.peft import get_peft

    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise CaulkConfigError(f"seed must be an integer, got {cfg.seed!r}")
    check_backbone_cfg(cfg.model)
    get_peft(cfg.peft.name)(cfg.peft).validate()


def _point(cfg: DictConfig, backbone, n: int) -> dict[str, Any]:
    return {
        "model": cfg.model.name,
        "backbone_tag": backbone.backbone_tag,
        "weights": backbone.weights,
        "source_m": cfg.model.get("source_m"),
        "peft": cfg.peft.name,
        "data": cfg.data.name,
        "n": n,
        "seed": int(cfg.seed),
    }


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one point; write ``record.json`` into ``cfg.paths.output_dir`` and return it.

    Bad input raises CaulkConfigError before any training and writes no record. A failure
    during training writes a record with ``status="failed"`` and re-raises.
    """
    start = time.perf_counter()
    validate_config(cfg)

    import pytorch_lightning as pl
    import torch
    from hydra.utils import instantiate

    from caulk.backbones import count_params, create_backbone
    from caulk.callbacks import ScalingPointLogger
    from caulk.data import build_datamodule
    from caulk.loggers import build_loggers
    from caulk.module import TransferModule
    from caulk.peft import ADAPTER_NAME, apply_peft, export_adapter

    output_dir = Path(cfg.paths.output_dir)
    if cfg.trainer.get("deterministic"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    datamodule = build_datamodule(cfg.data, int(cfg.seed))
    backbone = create_backbone(cfg.model)
    datamodule.set_input_transform(backbone.data_config)
    method = apply_peft(backbone.model, cfg.peft)

    resolved = OmegaConf.to_container(cfg, resolve=True)
    point = _point(cfg, backbone, datamodule.n)
    record: dict[str, Any] = {
        **point,
        "arch": backbone.arch,
        "weights_file": backbone.weights_file,
        "peft_knob": method.knob,
        "peft_knob_value": method.knob_value(),
        "peft_params": method.trainable_params,  # trained inside the backbone (head excluded)
        "pool_size": datamodule.pool_size,
        "n_val": len(datamodule.val_idx),
        "caulk_version": __version__,
        "torch_version": torch.__version__,
        "host": platform.node(),
        "output_dir": str(output_dir.resolve()),
        "config": resolved,
    }
    loggers: list = []
    try:
        module = TransferModule(
            backbone.model,
            method,
            datamodule.num_classes,
            optimizer=instantiate(cfg.optimizer),
            scheduler=cfg.scheduler,
            head_norm=bool(cfg.peft.get("head_norm", True)),
            hparams=resolved,
        )
        record["trainable_params"] = count_params(module, trainable_only=True)
        record["total_params"] = count_params(module)
        run_name = f"{cfg.model.name}-{cfg.peft.name}-n{datamodule.n}-s{cfg.seed}"
        wandb_config = {
            **point,
            "config": resolved,
        }  # flat keys for cross-run plots + the full config
        loggers = build_loggers(cfg.get("logger"), output_dir, run_name, wandb_config)
        callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
        callbacks.append(ScalingPointLogger(point))
        trainer = pl.Trainer(
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            logger=loggers or False,
            callbacks=callbacks,
            default_root_dir=str(output_dir),
        )
        trainer.fit(module, datamodule=datamodule)
        val_error = trainer.callback_metrics.get("val/error")
        trainer.test(module, datamodule=datamodule, verbose=False)
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
            epochs=int(trainer.current_epoch),
        )
    except Exception as e:
        record.update(
            status="failed", message=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()
        )
        raise
    finally:
        record["wall_time_s"] = round(time.perf_counter() - start, 3)
        write_json_atomic(output_dir / RECORD_NAME, record)
        _finish_wandb(loggers, failed=record.get("status") != "ok")
    return record


def _finish_wandb(loggers: list, failed: bool) -> None:
    """Close the W&B run of this job (multirun jobs in one process must not share a run)."""
    try:
        import wandb
    except ImportError:
        return
    if wandb.run is not None:
        wandb.finish(exit_code=1 if failed else 0)


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


GROUPS = (
    "model",
    "peft",
    "data",
    "trainer",
    "logger",
    "callbacks",
    "paths",
    "hydra",
    "experiment",
    "debug",
)
_SIMPLE_VALUES = re.compile(r"[\w.-]+(,[\w.-]+)*")


def check_group_overrides(args: list[str], config_dir: str = CONFIG_DIR) -> None:
    """Reject ``group=option`` overrides naming no config file, in one line, before Hydra runs."""
    for arg in args:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in GROUPS or not _SIMPLE_VALUES.fullmatch(value) or value == "null":
            continue
        available = sorted(p.stem for p in Path(config_dir, key).glob("*.yaml"))
        for option in value.split(","):
            if option not in available:
                raise CaulkConfigError(
                    f"unknown {key} {option!r}; available: {', '.join(available)}"
                )


def _remove_job_dir_if_only_hydra_files(output_dir: Path) -> None:
    """After a config error, leave nothing behind: drop a job dir holding only Hydra's own files."""
    if not output_dir.is_dir():
        return
    entries = {p.name for p in output_dir.iterdir()}
    if entries <= {".hydra", "train.log", "main.log"}:
        shutil.rmtree(output_dir, ignore_errors=True)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    try:
        record = train(cfg)
    except CaulkConfigError as e:
        print(f"caulk: error: {e}", file=sys.stderr)
        _remove_job_dir_if_only_hydra_files(Path(cfg.paths.output_dir))
        sys.exit(2)
    print(format_summary(record), flush=True)
    return record["test_error"]


def main() -> None:
    """``python -m caulk.train [overrides]``; returns Hydra's result (the test error)."""
    try:
        check_group_overrides(sys.argv[1:])
    except CaulkConfigError as e:
        print(f"caulk: error: {e}", file=sys.stderr)
        sys.exit(2)
    _hydra_main()


if __name__ == "__main__":
    main()
