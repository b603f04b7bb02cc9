"""A throwaway single-node Slurm cluster for tests: munged + slurmctld + slurmd on loopback.

Everything (config, key, sockets, state, spool, logs) lives in one directory; the daemons run in
the foreground as children of the test process and are stopped (by their pids) afterwards.
Needs root and Debian's ``slurm-wlm`` + ``munge`` (``.ci/run`` installs them when it can);
``SlurmCluster.unavailable()`` says why a machine cannot boot one.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


class SlurmCluster:
    """``start()`` boots the cluster in ``root``; ``env`` points clients at it; ``stop()`` ends it."""

    def __init__(self, root: Path, cpus: int = 2, memory_mb: int = 2000):
        self.root = Path(root)
        self.cpus = cpus
        self.memory_mb = memory_mb
        self.host = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: list = []
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"

    @staticmethod
    def unavailable() -> str | None:
        """Why no cluster can be booted here (None when it can)."""
        if os.name != "posix" or os.geteuid() != 0:
            return "booting Slurm needs root (slurmd runs jobs as their users)"
        missing = [n for n in (*DAEMONS, *CLIENTS) if _which(n) is None]
        if missing:
            return f"Slurm/munge binaries missing ({', '.join(missing)}): apt-get install slurm-wlm munge"
        return None

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point Slurm clients (sbatch, squeue, ...) at this cluster."""
        return {"SLURM_CONF": str(self.conf)}

    def _write_conf(self) -> None:
        r = self.root
        for d in ("state", "spool", "log", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        ctld, slurmd = _free_port(), _free_port()
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=caulktest",
                    f"SlurmctldHost={self.host}(127.0.0.1)",
                    f"SlurmctldPort={ctld}",
                    f"SlurmdPort={slurmd}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    "CredType=cred/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"StateSaveLocation={r / 'state'}",
                    f"SlurmdSpoolDir={r / 'spool'}",
                    f"SlurmctldPidFile={r / 'slurmctld.pid'}",
                    f"SlurmdPidFile={r / 'slurmd.pid'}",
                    f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_CPU",
                    "MpiDefault=none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "JobCompType=jobcomp/none",
                    "ReturnToService=2",
                    "JobRequeue=1",
                    "SchedulerType=sched/builtin",
                    "KillWait=5",
                    "MinJobAge=600",
                    f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={self.cpus} "
                    f"RealMemory={self.memory_mb} State=UNKNOWN",
                    "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 (closed in stop)
        self._logs.append(log)
        self.procs[name] = subprocess.Popen(
            [_which(name), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.env},
            start_new_session=True,
        )

    def _wait(self, what: str, ready, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}): {self.logs()}")
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"Slurm test cluster: {what} not ready in {timeout:.0f} s: {self.logs()}"
        )

    def start(self) -> SlurmCluster:
        self._write_conf()
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn(
            "munged",
            [
                "--foreground",
                "--force",
                f"--key-file={key}",
                f"--socket={self.munge_socket}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
                f"--seed-file={self.root / 'munge' / 'munged.seed'}",
            ],
        )
        self._wait("munged", self.munge_socket.exists)
        self._spawn("slurmctld", ["-D", "-i", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: self._run(["scontrol", "ping"]).returncode == 0)
        self._spawn("slurmd", ["-D", "-f", str(self.conf), "-N", self.host])
        self._wait("slurmd", lambda: self.node_state() in ("idle", "mixed", "allocated"))
        return self

    def _run(self, args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            [_which(args[0]), *args[1:]],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=30,
        )

    def node_state(self) -> str:
        out = self._run(["sinfo", "-h", "-N", "-o", "%t"]).stdout.strip()
        return out.rstrip("*~#!%$@^-")

    def queue(self) -> list[str]:
        """Job ids (array tasks as ``<job>_<task>``) still pending or running."""
        out = self._run(["squeue", "-h", "-o", "%i"]).stdout.split()
        return [j for j in out if j]

    def start_requeued_now(self, job_id: str, timeout: float = 120.0) -> None:
        """Slurm holds a requeued job until a begin time ~2 minutes ahead; start it at once."""

        def held() -> bool:
            return (
                self._run(["squeue", "-h", "-j", job_id, "-o", "%r"]).stdout.strip() == "BeginTime"
            )

        self._wait(f"job {job_id} requeued", held, timeout)
        self._run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"])

    def wait_empty(self, timeout: float = 300.0) -> None:
        self._wait("an empty queue", lambda: not self.queue(), timeout)

    def logs(self) -> str:
        parts = []
        for f in sorted((self.root / "log").glob("*")):
            parts.append(f"--- {f.name}\n" + f.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def stop(self) -> None:
        for j in self.queue() if "slurmctld" in self.procs else []:
            self._run(["scancel", j])
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
