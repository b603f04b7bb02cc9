"""What the command-line entry points share: the config dir, the group-option check, the entry."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from caulk.errors import CaulkConfigError

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


def run_cli(hydra_main: Callable[[], Any]) -> None:
    """Check the command line's group options (one-line error, exit 2), then run ``hydra_main``."""
    try:
        check_group_overrides(sys.argv[1:])
    except CaulkConfigError as e:
        print(f"caulk: error: {e}", file=sys.stderr)
        sys.exit(2)
    hydra_main()
