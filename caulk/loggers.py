"""Experiment loggers: CSV always available, W&B in mode auto/online/offline/disabled."""

from __future__ import annotations

import hashlib
import netrc
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

from caulk.errors import CaulkConfigError

WANDB_MODES = ("auto", "online", "offline", "disabled")


def wandb_has_credentials() -> bool:
    """True when an API key is available (env var or ~/.netrc entry for the W&B host)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].rstrip("/")
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode: str) -> str:
    """``auto`` -> online with credentials, else offline with one warning. WANDB_MODE wins."""
    if mode not in WANDB_MODES:
        raise CaulkConfigError(
            f"logger.wandb.mode={mode!r}; expected one of {', '.join(WANDB_MODES)}"
        )
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in ("offline", "online", "disabled", "dryrun"):
        return "offline" if env_mode == "dryrun" else env_mode
    if mode != "auto":
        return mode
    if wandb_has_credentials():
        return "online"
    warnings.warn(
        "no W&B credentials found: logging offline (each run prints the `wandb sync` command "
        "that uploads it)",
        stacklevel=2,
    )
    return "offline"


def deterministic_run_id(output_dir: str | Path) -> str:
    """A W&B run id fixed by the job's output dir, so a requeued job resumes the same run."""
    return hashlib.sha1(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]


def wandb_group(logger_cfg: Any) -> str | None:
    """The W&B group of a job and of its sweep's aggregate: ``logger.wandb.group`` when set,
    else the multirun's sweep dir name (None for a single run)."""
    wb = None if logger_cfg is None else logger_cfg.get("wandb")
    return (wb.get("group") if wb else None) or sweep_group()


def offline_run_dir(run) -> Path | None:
    """The absolute dir of an offline W&B run (what ``wandb sync`` uploads); None when online."""
    try:
        return Path(run.sync_dir).resolve() if run.offline else None
    except Exception:  # a run whose W&B service is gone: no hint rather than a crash
        return None


def sync_command(paths: list[str | Path]) -> str:
    """``wandb sync <path> ...``, the paths quoted for a shell (a glob stays a glob)."""
    return " ".join(["wandb sync", *(shlex.quote(str(p)) for p in paths)])


def print_sync_hint(paths: list[str | Path]) -> None:
    """Print, on stderr, the command that uploads these offline W&B runs."""
    print(f"caulk: W&B logged offline; upload with: {sync_command(paths)}", file=sys.stderr)


def sweep_group() -> str | None:
    """The W&B group of a Hydra multirun job: its sweep dir's name (None outside a multirun)."""
    try:
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return Path(HydraConfig.get().sweep.dir).name
    except Exception:  # outside Hydra (tests, notebooks)
        return None
    return None


def init_wandb_run(
    logger_cfg: Any, output_dir: Path, name: str, config: dict[str, Any], job_type: str = "train"
):
    """Start this job's W&B run (or return None when W&B is off).

    The run lives in ``<output_dir>/wandb``, its id is fixed by ``output_dir`` with
    ``resume="allow"`` (a requeued job continues its run), and its mode follows ``resolve_wandb_mode``.
    """
    wb = None if logger_cfg is None else logger_cfg.get("wandb")
    if not wb or not wb.get("enabled", False):
        return None
    mode = resolve_wandb_mode(wb.mode)
    if mode == "disabled":
        return None
    import wandb  # only when W&B logs: +0.3 s to import, paid by no run with W&B off

    output_dir.mkdir(parents=True, exist_ok=True)  # else W&B silently falls back to /tmp
    os.environ.setdefault("WANDB_SILENT", "true")
    return wandb.init(
        project=wb.project,
        entity=wb.get("entity"),
        group=wandb_group(logger_cfg),
        tags=list(wb.get("tags") or []),
        job_type=job_type,
        name=name,
        dir=str(output_dir),
        id=deterministic_run_id(output_dir),
        resume="allow",
        mode=mode,
        config=config,
    )


def csv_logger(logger_cfg: Any, output_dir: Path) -> list[Logger]:
    """The CSV logger (``<output_dir>/csv/metrics.csv``) when the config enables it."""
    if logger_cfg is not None and logger_cfg.get("csv", {}).get("enabled", False):
        return [CSVLogger(save_dir=str(output_dir), name="csv", version="")]
    return []


def lightning_wandb_logger(run) -> list[Logger]:
    """Lightning's WandbLogger bound to an existing run (so caulk owns the run's lifetime)."""
    return [] if run is None else [WandbLogger(experiment=run, log_model=False)]
