"""Progress you can follow: step k of N of a long phase, what runs now, elapsed time and an ETA.

On a TTY a live tqdm bar; elsewhere (a log file, a pipe, a batch job) one plain line per step,
``[caulk] point 3/12  vit_pico linear n=64 seed=1  elapsed 00:42  eta 02:06``, so no progress bar
ever lands in a file. Lines go to ``progress_stream()``: stderr, or the console a caller named
with ``progress_to`` (the demo, whose sweeps' own output goes into log files).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm

_STREAM: list[TextIO] = []


def progress_stream() -> TextIO:
    """Where progress goes: the innermost ``progress_to`` stream, else the current stderr."""
    return _STREAM[-1] if _STREAM else sys.stderr


@contextmanager
def progress_to(stream: TextIO) -> Iterator[None]:
    """Send progress to ``stream`` inside the block (whatever stdout and stderr become there)."""
    _STREAM.append(stream)
    try:
        yield
    finally:
        _STREAM.pop()


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def format_interval(seconds: float) -> str:
    """``mm:ss``, or ``h:mm:ss`` from an hour on (tqdm's format, so lines and bars agree)."""
    return tqdm.format_interval(max(0.0, seconds))


def progress_line(what: str, k: int, total: int | None, label: str, elapsed: float) -> str:
    """The plain line of step ``k`` (1-based) of ``total`` starting after ``elapsed`` seconds;
    the ETA extrapolates the mean time of the k-1 steps done (unknown before the first)."""
    parts = [f"[caulk] {what} {k}/{total}" if total else f"[caulk] {what} {k}", label]
    parts.append(f"elapsed {format_interval(elapsed)}")
    if total:
        eta = format_interval(elapsed / (k - 1) * (total - k + 1)) if k > 1 else "?"
        parts.append(f"eta {eta}")
    return "  ".join(p for p in parts if p)


class Progress:
    """Steps 1..total of one phase. ``begin(label)`` before each step, ``end()`` after it.

    On a TTY: a live bar (done/total, the current label, elapsed, ETA). Otherwise: one line when a
    step begins, for every ``every``-th step (1: each; a pre-training run's steps: each tenth).
    """

    def __init__(
        self,
        what: str,
        total: int | None,
        label: str = "",
        every: int = 1,
        stream: TextIO | None = None,
    ):
        self.what, self.total, self.label, self.every = what, total, label, max(1, every)
        self.stream = stream or progress_stream()
        self.start = time.perf_counter()
        self.done = 0
        self.bar = None
        if _is_tty(self.stream):
            self.bar = tqdm(
                total=total,
                file=self.stream,
                desc=f"[caulk] {what}",
                bar_format="{desc} {n_fmt}/{total_fmt} |{bar:20}| {postfix}  "
                "elapsed {elapsed}  eta {remaining}",
                dynamic_ncols=True,
            )

    def begin(self, label: str | None = None) -> None:
        """Step ``done + 1`` starts; ``label`` names it (default: the phase's label)."""
        label = self.label if label is None else label
        if self.bar is not None:
            self.bar.set_postfix_str(label, refresh=True)
        elif self.done % self.every == 0:
            elapsed = time.perf_counter() - self.start
            line = progress_line(self.what, self.done + 1, self.total, label, elapsed)
            print(line, file=self.stream, flush=True)

    def end(self) -> None:
        """The current step is done."""
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.refresh()  # every finished step shows (update alone is rate-limited)

    def close(self) -> None:
        """Finish the bar (a no-op for plain lines)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
