"""What keeps a run honest: SIGTERM ends it non-zero with the point in progress recorded, and one
process at a time runs a job dir."""

from __future__ import annotations

import fcntl
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("caulk.train")
LOCK_NAME = ".caulk.lock"


class Terminated(SystemExit):
    """The process got SIGTERM: the point in progress is recorded as interrupted, exit 143."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(128 + signum)


def _raise_terminated(signum, frame) -> None:
    raise Terminated(signum)


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` (exit 143) so the running point is recorded.

    Left alone where another handler owns SIGTERM (submitit bypasses it and requeues on its own
    signal) or off the main thread. Lightning adds its own handler in front of this one during fit.
    """
    owned = signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    if not owned or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def job_lock(output_dir: str | Path) -> Iterator[None]:
    """Hold ``<output_dir>/.caulk.lock`` (fcntl): a second process on the same dir waits here."""
    path = Path(output_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("%s: another caulk process runs this dir; waiting for it", output_dir)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
