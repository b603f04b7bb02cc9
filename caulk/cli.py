"""What the command-line entry points share: the config dir, the group-option check, the entry."""

from __future__ import annotations

import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from hydra.types import RunMode
from omegaconf.errors import OmegaConfBaseException

from caulk.console import VERBOSE_ENV, quiet_console
from caulk.errors import CaulkConfigError, exit_on_config_error, one_line, remove_created_output
from caulk.progress import progress_line, progress_stream

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
#: flags that pick another config than the entry's own: the first-job check is skipped then
_CONFIG_FLAGS = ("-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir")
#: the one line a Ctrl+C (SIGINT) prints; the exit code is 130
INTERRUPTED = (
    "caulk: interrupted (SIGINT): finished points keep their records; run the same command again "
    "to resume"
)
#: jobs of this process's in-process sweep rejected for bad input (run_cli exits 2 at the end)
_REJECTED: list[str] = []
#: when each in-process sweep (by sweep dir) started its first job: the jobs' elapsed time and ETA
_SWEEP_START: dict[str, float] = {}


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


def first_job_overrides(args: list[str]) -> list[str] | None:
    """The overrides of the command line's first job: every sweep at its first value. None when
    that cannot be told here (a flag choosing another config, a sweep Hydra expands only with its
    config loader, e.g. glob()). An override that does not parse is a one-line CaulkConfigError."""
    if any(a.split("=")[0] in _CONFIG_FLAGS for a in args):
        return None
    lines = [a for a in args if ("=" in a or a.startswith("~")) and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except OverrideParseException as e:
        raise CaulkConfigError(f"bad override: {one_line(e)}") from None
    overrides = []
    for o in parsed:
        if not o.is_sweep_override():
            overrides.append(o.input_line)
            continue
        try:
            first = next(iter(o.sweep_string_iterator()), None)
        except HydraException:
            return None
        if first is None:
            return None
        overrides.append(f"{o.get_key_element()}={first}")
    return overrides


def check_overrides(args: list[str], config_name: str, config_dir: str = CONFIG_DIR) -> None:
    """Compose ``config_name`` with the command line's first job (``first_job_overrides``), so a
    key that does not exist or a value of the wrong type fails in one line (CaulkConfigError)
    before Hydra runs; Hydra's own report of these spans several lines."""
    overrides = first_job_overrides(args)
    if overrides is None:
        return
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise CaulkConfigError(f"bad override: {one_line(e)}") from None


def _in_process_sweep() -> bool:
    """Whether this Hydra job is one of a multirun whose jobs all run in this process."""
    if not HydraConfig.initialized():
        return False
    hc = HydraConfig.get()
    return hc.mode == RunMode.MULTIRUN and "BasicLauncher" in str(hc.launcher.get("_target_"))


def sweep_job_count(args: list[str], sweeper_params: dict[str, str] | None = None) -> int | None:
    """How many jobs the multirun of command line ``args`` launches (Hydra's basic sweeper: the
    product of the sweeps, ``sweeper_params`` from the config first); None if it cannot tell."""
    params = [f"{k}={v}" for k, v in (sweeper_params or {}).items()]
    params += [a for a in args if "=" in a and not a.startswith("-")]
    sizes: dict[str, int] = {}  # by key: the command line wins over the config
    try:
        for o in OverridesParser.create().parse_overrides(params):
            sweep = o.is_sweep_override()
            sizes[o.get_key_element()] = len(list(o.sweep_string_iterator())) if sweep else 1
    except HydraException:  # e.g. glob(), which needs the config loader
        return None
    return math.prod(sizes.values())


def job_line() -> str | None:
    """``[caulk] job k/N  <its overrides>  elapsed  eta`` for a job of a multirun, else None.
    N is known when the sweep runs in this process (Hydra's basic launcher), else only k."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    hc = HydraConfig.get()
    total = None
    if _in_process_sweep():
        params = {str(k): str(v) for k, v in (hc.sweeper.get("params") or {}).items()}
        total = sweep_job_count(sys.argv[1:], params)
    start = _SWEEP_START.setdefault(str(hc.sweep.dir), time.perf_counter())
    overrides = " ".join(o for o in hc.overrides.task if not o.startswith("hydra."))
    return progress_line("job", hc.job.num + 1, total, overrides, time.perf_counter() - start)


def announce_job() -> None:
    """Print ``job_line()`` to the progress stream (nothing for a single run)."""
    line = job_line()
    if line is not None:
        print(line, file=progress_stream(), flush=True)


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


def run_cli(hydra_main: Callable[[], Any], config_name: str = "train") -> None:
    """Check the command line's group options and its first job's overrides against
    ``config_name`` (one-line error, exit 2), then run ``hydra_main``; exit 2 after a sweep whose
    jobs were rejected for bad input; a Ctrl+C is one line and exit 130. ``--verbose`` (anywhere on the line) keeps Lightning's tips
    and banners (``caulk.console``)."""
    if "--verbose" in sys.argv[1:]:
        sys.argv = [a for a in sys.argv if a != "--verbose"]
        os.environ[VERBOSE_ENV] = "1"
    quiet_console()
    try:
        check_group_overrides(sys.argv[1:])
        check_overrides(sys.argv[1:], config_name)
    except CaulkConfigError as e:
        print(f"caulk: error: {e}", file=sys.stderr)
        sys.exit(2)
    try:
        hydra_main()
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr, flush=True)
        sys.exit(128 + signal.SIGINT)
    rejected = take_rejected()
    if rejected:
        print(
            f"caulk: error: {len(rejected)} job(s) of the sweep rejected for bad input, the others "
            f"ran: {'; '.join(rejected)}",
            file=sys.stderr,
        )
        sys.exit(2)
