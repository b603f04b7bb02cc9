"""Where and when a number was measured: the machine (CPU model, cores, torch threads), the git
commit of the code, the UTC date and the command. Every measurement file caulk writes for the
docs (the demo's ``demo.json``, the benchmarks' ``--out`` files) carries it, so a number quoted
in the docs names its source (``docs/make_numbers.py``)."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from caulk.threads import current as current_threads

REPO = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what ``platform`` says)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


#: what a measurement runs: ``+dirty`` when one of these differs from the commit (an edited
#: README or doc page does not change a number)
CODE_PATHS = ("caulk", "benchmarks", "conf", "setup.cfg", "pyproject.toml", "environment.yml")


def git_commit(repo: Path = REPO) -> str:
    """The checkout's short commit (``+dirty`` when tracked code or config differs:
    ``CODE_PATHS``), or ``unknown``."""
    git = ["git", "-C", str(repo)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            capture_output=True,
            text=True,
        )
    except OSError:
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def machine() -> dict:
    """The machine: CPU model, cores this process may use, Python, torch's thread settings."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return {
        "cpu": cpu_model(),
        "cores": cores,
        "python": platform.python_version(),
        **current_threads().fields_for_record(),
    }


def provenance(argv: list[str] | None = None) -> dict:
    """``machine``, ``commit``, ``date`` (UTC, ISO) and ``command`` (``argv``, default this
    process's command line, as a shell would type it)."""
    argv = ["python", *sys.argv] if argv is None else argv
    return {
        "machine": machine(),
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": shlex.join(argv),
    }
