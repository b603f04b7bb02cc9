"""User-facing errors: one line, raised before any work is done; and what a rejected job removes.

Hydra creates a job's dir (``.hydra/`` and a log) before the task runs. ``remember_existing``
(called by the ``RememberExistingDirs`` Hydra callback before Hydra creates anything) notes which
dirs and entries were there before, so that a rejected job removes only what this process made.
"""

import shutil
import sys
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import NoReturn

#: dirs that existed before this process's Hydra run made its dirs -> their entries then
_EXISTING: dict[Path, set[str]] = {}


class CaulkConfigError(ValueError):
    """Bad user input (config, file, name). Reported as one line; no record is written."""


def one_line(error: BaseException) -> str:
    """A Hydra or OmegaConf error as one line: its own lines joined, then the first line of its
    cause in parentheses (Hydra prints them on separate lines, with a hint about tracebacks)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    cause = str(error.__cause__ or "").strip()
    if cause:
        text += f" ({cause.splitlines()[0].strip()})"
    return text or type(error).__name__


def remember_existing(path: str | Path) -> None:
    """Note which of ``path`` and its parents exist now, and the entries of the nearest one."""
    path = Path(path).absolute()
    for d in (path, *path.parents):
        if d.is_dir():
            _EXISTING.setdefault(d, {p.name for p in d.iterdir()})
            for parent in d.parents:
                _EXISTING.setdefault(parent, set())
            return


def check_writable(path: str | Path, what: str) -> None:
    """Raise CaulkConfigError unless a dir can be created at or below ``path`` (tried with a
    temporary dir in its nearest existing ancestor, removed at once)."""
    path = Path(path).absolute()
    ancestor = next((d for d in (path, *path.parents) if d.exists()), None)
    try:
        if ancestor is None or not ancestor.is_dir():
            raise NotADirectoryError(f"{ancestor} is not a directory")
        Path(tempfile.mkdtemp(prefix=".caulk-write-check-", dir=ancestor)).rmdir()
    except OSError as e:
        raise CaulkConfigError(f"{what} is not writable: {path} ({e.strerror or e})") from None


def _made_by_this_run(entry: Path, before: set[str] | None) -> bool:
    hydra_made = entry.name == ".hydra" or entry.suffix == ".log"
    return hydra_made and (before is None or entry.name not in before)


def remove_created_output(output_dir: str | Path) -> None:
    """Remove what this process's Hydra run created in and above ``output_dir``: its ``.hydra``
    dir and log, then the dirs this run created that are left empty. Nothing that existed before
    is touched; without a note of what existed (no ``remember_existing``), nothing is removed."""
    output_dir = Path(output_dir).absolute()
    if not _EXISTING or not output_dir.is_dir():
        return
    before = _EXISTING.get(output_dir)
    for entry in output_dir.iterdir():
        if _made_by_this_run(entry, before):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    d = output_dir
    while d not in _EXISTING and d.is_dir() and not any(d.iterdir()):
        d.rmdir()
        d = d.parent


def exit_on_config_error(error: CaulkConfigError, *output_dirs: str | Path | None) -> NoReturn:
    """End a CLI job on bad input: one line on stderr, exit code 2, and none of the job's dirs
    left behind (``remove_created_output`` on each of ``output_dirs``)."""
    print(f"caulk: error: {error}", file=sys.stderr)
    for output_dir in output_dirs:
        if output_dir is not None:
            with suppress(OSError):  # not ours to remove after all: leave it
                remove_created_output(output_dir)
    sys.exit(2)
