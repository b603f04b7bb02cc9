"""User-facing errors: one line, raised before any work is done."""

import shutil
import sys
from pathlib import Path
from typing import NoReturn


class CaulkConfigError(ValueError):
    """Bad user input (config, file, name). Reported as one line; no record is written."""


def exit_on_config_error(error: CaulkConfigError, output_dir: str | Path) -> NoReturn:
    """End a CLI job on bad input: one line on stderr, exit code 2, and no job dir left behind.

    Hydra creates the job dir (``.hydra/`` and a log) before the task runs; a dir holding only
    those is removed (with the ``<log_dir>/<task>/runs`` parents it leaves empty), so a rejected
    command leaves nothing.
    """
    print(f"caulk: error: {error}", file=sys.stderr)
    output_dir = Path(output_dir)
    if output_dir.is_dir() and all(
        p.name == ".hydra" or p.suffix == ".log" for p in output_dir.iterdir()
    ):
        shutil.rmtree(output_dir, ignore_errors=True)
        for parent in list(output_dir.parents)[:3]:  # <log_dir>/<task>/runs, if this made them
            try:
                parent.rmdir()
            except OSError:  # not empty (other runs), or not ours to remove
                break
    sys.exit(2)
