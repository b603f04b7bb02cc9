"""Reading W&B offline run files back with W&B's own reader (``wandb leet inspect --json``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import cli_env

WANDB = str(Path(sys.executable).parent / "wandb")


def wandb_records(run_dir: Path) -> list[dict]:
    """Every record of an offline run's ``.wandb`` file, as W&B's own reader prints them."""
    (log,) = Path(run_dir).glob("run-*.wandb")
    out = subprocess.run(
        [WANDB, "leet", "inspect", "--json", str(log)],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        check=True,
    )
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def of_type(records: list[dict], kind: str) -> list[dict]:
    """The payloads of the records of one type (``run``, ``history``, ``config``, ``summary``)."""
    return [r[kind] for r in records if r["type"] == kind]


def history(records: list[dict]) -> list[dict]:
    """The run's history rows."""
    return [h["item"] for h in of_type(records, "history")]
