"""caulk's CPU thread settings: a fair share of the machine per process, and waiting threads that
sleep instead of spinning, so that two trainings sharing a machine do not collapse.

torch's defaults (one OpenMP thread per core, libgomp's busy-wait) are the fastest for one process
alone, but two such processes on the same cores slow each other down by 4x or more (measured in
``benchmarks/threads.py``, see docs/performance.md#threads). caulk therefore:

- sets ``OMP_WAIT_POLICY=PASSIVE`` when ``caulk`` is imported before torch and the variable is
  unset (``caulk/__init__.py``: the OpenMP runtime reads it once, when torch loads it);
- sets torch's intra-op threads to this process's share of its CPUs (``configure()``): the CPUs
  it may run on (the affinity mask), at most ``SLURM_CPUS_PER_TASK``, divided by the local
  processes of a CPU DDP run; at least 1.

``OMP_NUM_THREADS`` set by the user wins over the share, and a user's ``OMP_WAIT_POLICY`` over
caulk's; ``CAULK_THREADS=off`` leaves torch's defaults untouched, ``CAULK_THREADS=<k>`` asks for
k threads. Every record and benchmark JSON carries ``fields()``: the thread count, the wait
policy and where the count came from.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from caulk.errors import CaulkConfigError


@dataclass(frozen=True)
class ThreadSettings:
    """The threads this process trains with and why: ``source`` names what set the count."""

    torch_threads: int
    omp_wait_policy: str
    source: str

    def fields(self) -> dict[str, int | str]:
        """The benchmarks' thread fields (all three)."""
        return asdict(self)

    def fields_for_record(self) -> dict[str, int | str]:
        """A record's thread fields: the count and the wait policy."""
        return {"torch_threads": self.torch_threads, "omp_wait_policy": self.omp_wait_policy}


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, at most ``SLURM_CPUS_PER_TASK``."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cpus = min(cpus or 1, int(slurm))
    return max(1, cpus or 1)


def local_processes() -> int:
    """The processes of this run on this machine (torchrun's / Lightning's LOCAL_WORLD_SIZE)."""
    value = os.environ.get("LOCAL_WORLD_SIZE", "1")
    return int(value) if value.isdigit() and int(value) > 0 else 1


def share(processes: int | None = None) -> tuple[int, str]:
    """This process's thread count and its source, before any user override."""
    processes = processes or local_processes()
    cpus = usable_cpus()
    source = "SLURM_CPUS_PER_TASK" if os.environ.get("SLURM_CPUS_PER_TASK") else "cpus"
    if processes > 1:
        source += f"/{processes} processes"
    return max(1, cpus // processes), source


def configure(processes: int | None = None) -> ThreadSettings:
    """Set torch's intra-op threads to this process's share (see the module doc) and return
    the settings; ``processes``: the local processes sharing the CPUs (default: the env's)."""
    wanted = os.environ.get("CAULK_THREADS", "")
    policy = wait_policy()
    if wanted == "off":
        return ThreadSettings(torch.get_num_threads(), policy, "torch default (CAULK_THREADS=off)")
    if wanted:
        if not wanted.isdigit() or int(wanted) < 1:
            raise CaulkConfigError(
                f"CAULK_THREADS must be off or a thread count >= 1, got {wanted!r}"
            )
        threads, source = int(wanted), "CAULK_THREADS"
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads, source = int(os.environ["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        threads, source = share(processes)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return ThreadSettings(torch.get_num_threads(), policy, source)


def current() -> ThreadSettings:
    """The settings in force now, without changing them (for records and benchmarks)."""
    return ThreadSettings(torch.get_num_threads(), wait_policy(), "current")


def wait_policy() -> str:
    """``OMP_WAIT_POLICY`` as the process started with it or caulk set it (``default``: unset)."""
    return os.environ.get("OMP_WAIT_POLICY", "default")
