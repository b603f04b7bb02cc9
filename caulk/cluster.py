"""Running on clusters: rank-zero outputs, resume after preemption, idempotent sweeps, DDP children.

- ``finished_record``: a point whose record says ok (with the same config) is not trained again,
  so re-launching a sweep into its sweep dir only runs the failed and missing points.
- ``resume_checkpoint``: a requeued job (submitit's USR2 preemption/timeout path re-runs the same
  job in the same output dir) resumes from ``<output_dir>/checkpoints/last.ckpt``.
- ``RngStateCheckpoint``: global RNG states travel with the checkpoint, so a resumed run draws the
  same dropout/augmentation randomness as an uninterrupted one.
- ``cluster_plugins``: under Slurm, Lightning's own auto-requeue (SIGUSR1) is off; submitit owns
  preemption and requeueing.
- ``prepare_ddp_children``: Lightning's DDP launcher re-executes ``sys.argv`` for ranks > 0; in a
  Hydra multirun job that would launch the whole sweep again, so the children get this job's
  overrides as a single run in this job's dir.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import random
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import open_dict, read_write
from pytorch_lightning import Callback

from caulk.run.record import RECORD_NAME

log = logging.getLogger("caulk.cluster")
CHECKPOINT = Path("checkpoints") / "last.ckpt"


def is_global_zero() -> bool:
    """True in the process that writes records and W&B runs (rank 0 of a DDP job, or no DDP)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    env = os.environ
    if "RANK" in env:  # torchrun
        return int(env["RANK"]) == 0
    if int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return int(env["SLURM_PROCID"]) == 0
    # Lightning's subprocess launcher gives children LOCAL_RANK >= 1 (and NODE_RANK per node)
    return int(env.get("LOCAL_RANK", "0")) == 0 and int(env.get("NODE_RANK", "0")) == 0


def _normalized(config: dict[str, Any]) -> Any:
    return json.loads(json.dumps(config, sort_keys=True, default=str))


def finished_record(point_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """The point's record when it says ok and was made with this (resolved) config, else None."""
    path = Path(point_dir) / RECORD_NAME
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("status") != "ok":
        return None
    if record.get("config") != _normalized(config):
        log.warning("%s: ok record made with another config: running the point again", path)
        return None
    return record


def resume_checkpoint(output_dir: Path, config: dict[str, Any]) -> Path | None:
    """``<output_dir>/checkpoints/last.ckpt`` when it was written by this config, else None."""
    path = Path(output_dir) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file: start over rather than fail the job
        warnings.warn(f"not resuming from unreadable {path}: {type(e).__name__}: {e}", stacklevel=2)
        return None
    if _normalized(dict(ckpt.get("hyper_parameters") or {})) != _normalized(config):
        warnings.warn(f"not resuming from {path}: it was written with another config", stacklevel=2)
        return None
    log.info("resuming from %s (step %s)", path, ckpt.get("global_step"))
    return path


class RngStateCheckpoint(Callback):
    """Save and restore the global torch/numpy/random RNG states with each checkpoint."""

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
            "python": repr(random.getstate()),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["torch"])
        kind, keys, *rest = state_dict["numpy"]
        np.random.set_state((kind, keys.numpy(), *rest))
        random.setstate(_literal(state_dict["python"]))


def _literal(text: str) -> Any:
    return ast.literal_eval(text)


def cluster_plugins() -> list[Any]:
    """Under Slurm: the SLURM environment with Lightning's auto-requeue off (submitit requeues)."""
    if SLURMEnvironment.detect():
        return [SLURMEnvironment(auto_requeue=False)]
    return []


def _spawns_script_children(trainer_kwargs: dict[str, Any]) -> bool:
    strategy = str(trainer_kwargs.get("strategy", "auto"))
    devices = trainer_kwargs.get("devices", 1)
    many = devices == -1 or (isinstance(devices, int) and devices > 1)
    many = many or isinstance(devices, (list, str)) and str(devices) not in ("1", "auto")
    if not strategy.startswith("ddp") or "spawn" in strategy or "fork" in strategy or not many:
        return False
    env = os.environ
    external = "LOCAL_RANK" in env or "RANK" in env or int(env.get("SLURM_NTASKS", "1")) > 1
    return not external


# Set by Lightning's subprocess launcher in the launching process (children inherit them).
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
_launched: dict[str, Any] = {}  # the Hydra job whose DDP children this process started


def _hydra_job() -> tuple[str | None, bool]:
    """(this Hydra job's output dir, whether it is a multirun job); (None, False) outside Hydra."""
    if not HydraConfig.initialized():
        return None, False
    hc = HydraConfig.get()
    return hc.runtime.output_dir, hc.mode == RunMode.MULTIRUN


def _end_previous_ddp() -> None:
    """Forget the DDP group of an earlier job in this process (its children have exited)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key, value in _launched.pop("env").items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _launched.clear()


def prepare_ddp_children(trainer_kwargs: dict[str, Any]) -> None:
    """Make Lightning's DDP children (``sys.argv`` re-run) join this job, not re-launch a sweep.

    In a Hydra multirun job, the children get this job's own overrides as a single run whose
    run dir is this job's output dir (Lightning adds ``hydra.run.dir=<run.dir>``). The next job
    of a sequential sweep starts its own children (the earlier ones ended with their job).
    """
    job, multirun = _hydra_job()
    if _launched and _launched["job"] != job:
        _end_previous_ddp()
    if not _spawns_script_children(trainer_kwargs):
        return
    _launched.update(job=job, env={k: os.environ.get(k) for k in LAUNCH_ENV})
    if not multirun:
        return
    hc = HydraConfig.get()
    with read_write(hc), open_dict(hc):
        hc.run.dir = hc.runtime.output_dir
    sys.argv = [sys.argv[0], *[o for o in hc.overrides.task]]
