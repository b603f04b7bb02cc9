"""Atomic writes: a temporary file in the target's folder, then a rename, so a reader sees the old
file or the whole new one and never a partial one (and an interrupted write leaves no temp file)."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)  # read once: mkstemp's files are 0600, the file gets what open() would give


def write_atomic(path: str | Path, write: Callable[[Path], object], fsync: bool = False) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path beside ``path``, then rename it to ``path``.
    ``fsync``: flush the file to disk before the rename (records, cache entries)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        tmp.chmod(0o666 & ~_UMASK)
        write(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def finite(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, infinity) replaced by None: strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json_atomic(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as strict JSON (non-finite floats as null) to ``path`` so readers never
    see a partial file."""
    text = json.dumps(finite(payload), indent=2, sort_keys=True, default=str, allow_nan=False)
    return write_atomic(path, lambda tmp: tmp.write_text(text), fsync=True)
