"""Experiment loggers: CSV always available, W&B in mode auto/online/offline/disabled."""

from __future__ import annotations

import hashlib
import netrc
import os
import warnings
from pathlib import Path
from typing import Any

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
        "no W&B credentials found: logging offline (sync later with `wandb sync`)", stacklevel=2
    )
    return "offline"


def deterministic_run_id(output_dir: str | Path) -> str:
    """A W&B run id fixed by the job's output dir, so a requeued job resumes the same run."""
    return hashlib.sha1(str(Path(output_dir).resolve()).encode()).hexdigest()[:16]


def build_loggers(
    logger_cfg: Any, output_dir: Path, run_name: str, config: dict[str, Any]
) -> list[Logger]:
    """Loggers described by the ``logger`` config group (may be empty)."""
    loggers: list[Logger] = []
    if logger_cfg is None:
        return loggers
    if logger_cfg.get("csv", {}).get("enabled", False):
        loggers.append(CSVLogger(save_dir=str(output_dir), name="csv", version=""))
    wb = logger_cfg.get("wandb")
    if wb and wb.get("enabled", False):
        mode = resolve_wandb_mode(wb.mode)
        if mode != "disabled":
            wandb_dir = output_dir  # WandbLogger puts runs in <save_dir>/wandb
            wandb_dir.mkdir(parents=True, exist_ok=True)
            os.environ.setdefault("WANDB_SILENT", "true")
            loggers.append(
                WandbLogger(
                    project=wb.project,
                    entity=wb.get("entity"),
                    group=wb.get("group"),
                    tags=list(wb.get("tags") or []),
                    name=run_name,
                    save_dir=str(wandb_dir),
                    id=deterministic_run_id(output_dir),
                    resume="allow",
                    mode=mode,  # passed to wandb.init; `offline=True` would set WANDB_MODE for the whole process
                    config=config,
                    log_model=False,
                )
            )
    return loggers
