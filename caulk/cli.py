"""What the command-line entry points share: the config dir, the group-option check, the entry."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from caulk.errors import CaulkConfigError, exit_on_config_error, remove_created_output

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
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
#: jobs of this process's in-process sweep rejected for bad input (run_cli exits 2 at the end)
_REJECTED: list[str] = []


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


def _in_process_sweep() -> bool:
    """Whether this Hydra job is one of a multirun whose jobs all run in this process."""
    if not HydraConfig.initialized():
        return False
    hc = HydraConfig.get()
    return hc.mode == RunMode.MULTIRUN and "BasicLauncher" in str(hc.launcher.get("_target_"))


def reject_job(error: CaulkConfigError, output_dir: str | Path | None) -> None:
    """A Hydra job's bad input: one line on stderr and none of its dirs left behind.

    A single run (or a job in its own process, e.g. on Slurm) then exits 2. A job of an
    in-process sweep returns instead, so the sweep's other jobs still run; ``run_cli`` exits 2
    when the sweep ends, naming the rejected jobs.
    """
    hydra_dir = HydraConfig.get().runtime.output_dir if HydraConfig.initialized() else None
    if not _in_process_sweep():
        exit_on_config_error(error, output_dir, hydra_dir)
    print(f"caulk: error: {error}", file=sys.stderr, flush=True)
    for d in {output_dir, hydra_dir} - {None}:
        remove_created_output(d)
    _REJECTED.append(f"job {HydraConfig.get().job.num} ({error})")


def take_rejected() -> list[str]:
    """The jobs of this process's sweeps rejected for bad input since the last call."""
    rejected = list(_REJECTED)
    _REJECTED.clear()
    return rejected


def run_cli(hydra_main: Callable[[], Any]) -> None:
    """Check the command line's group options (one-line error, exit 2), then run ``hydra_main``;
    exit 2 after a sweep whose jobs were rejected for bad input."""
    try:
        check_group_overrides(sys.argv[1:])
    except CaulkConfigError as e:
        print(f"caulk: error: {e}", file=sys.stderr)
        sys.exit(2)
    hydra_main()
    rejected = take_rejected()
    if rejected:
        print(
            f"caulk: error: {len(rejected)} job(s) of the sweep rejected for bad input, the others "
            f"ran: {'; '.join(rejected)}",
            file=sys.stderr,
        )
        sys.exit(2)
