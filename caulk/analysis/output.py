"""Where an analysis is written, and the rule that keeps it from removing anything it did not write.

The analysis is written into a fresh staging dir next to ``--out``, which then takes ``--out``'s
place. ``--out`` may be replaced only when it is

- missing, or an empty dir; or
- a previous analysis: it carries caulk's marker (``.caulk-analysis.json``, which lists what that
  analysis wrote) and holds nothing else, or (written before the marker existed) holds only the
  file names an analysis writes, ``summary.json`` among them.

Anything else is refused in one line before any work: a file, a dir holding or containing the
sweep's records (the sweep dir itself or one of its ancestors), and a non-empty dir caulk did not
create. A failed analysis removes its staging dir and leaves ``--out`` as it was.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from caulk import __version__
from caulk.atomic import write_json_atomic
from caulk.errors import CaulkConfigError

MARKER = ".caulk-analysis.json"
FIGURE_NAMES = ("error_vs_n", "exponents", "error_vs_source_m", "transfer")
#: the entries a caulk analysis writes (figures in every format); a legacy dir holds only these
ANALYSIS_ENTRIES = frozenset(
    {
        "table.csv",
        "table.parquet",
        "fits.csv",
        "sample_complexity.csv",
        "ratios.csv",
        "transfer.csv",
        "transfer_fit.json",
        "source_m.csv",
        "report.html",
        "summary.json",
        "wandb",
        *(f"{name}.{ext}" for name in FIGURE_NAMES for ext in ("png", "pdf", "svg")),
    }
)


def _refuse(out: Path, why: str) -> CaulkConfigError:
    return CaulkConfigError(
        f"cannot write the analysis into {out}: {why} (choose another with --out)"
    )


def _marked_entries(out: Path) -> set[str] | None:
    """The entries the marker of a previous analysis in ``out`` lists, or None (no valid marker)."""
    try:
        listed = json.loads((out / MARKER).read_text())["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return set(listed) if isinstance(listed, list) else None


def is_previous_analysis(out: Path) -> bool:
    """Whether ``out`` holds a previous analysis and nothing else (see the module doc)."""
    entries = {p.name for p in out.iterdir()}
    marked = _marked_entries(out)
    if marked is not None:
        return entries - {MARKER} <= marked
    return "summary.json" in entries and entries <= ANALYSIS_ENTRIES


def check_out(out: Path, sweep_dirs: list[Path]) -> None:
    """CaulkConfigError, in one line, unless the analysis may be written into ``out``."""
    file = next((p for p in [out, *out.parents] if p.exists() and not p.is_dir()), None)
    if file is not None:
        raise _refuse(out, f"{file} is a file, not a directory")
    resolved = out.resolve()
    for sweep in sweep_dirs:
        sweep = sweep.resolve()
        if resolved == sweep or resolved in sweep.parents:
            raise _refuse(out, f"it holds the records of sweep {sweep}")
    if out.is_dir() and any(out.iterdir()) and not is_previous_analysis(out):
        raise _refuse(out, "it is a non-empty dir that holds more than a previous caulk analysis")


def write_marker(stage: Path, extra: tuple[str, ...] = ()) -> None:
    """Mark ``stage`` as caulk's analysis, listing its entries (and ``extra``, written later)."""
    entries = sorted({p.name for p in stage.iterdir()} | set(extra))
    write_json_atomic(stage / MARKER, {"caulk_version": __version__, "entries": entries})


@contextmanager
def staged(out: Path, sweep_dirs: list[Path], extra: tuple[str, ...] = ()) -> Iterator[Path]:
    """A fresh hidden dir next to ``out`` to write the analysis into; when the block ends it is
    marked (``write_marker``) and replaces ``out``, and if the block fails it is removed, so
    ``out`` is never half written. CaulkConfigError, before any work, where ``check_out`` refuses
    ``out`` or it cannot be written."""
    check_out(out, sweep_dirs)
    stage = out.parent / f".{out.name}.{secrets.token_hex(4)}.tmp"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage.mkdir()
    except OSError as e:
        raise _refuse(out, e.strerror or str(e)) from None
    try:
        yield stage
        write_marker(stage, extra)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _replace_dir(stage, out)


def _replace_dir(new: Path, old: Path) -> None:
    """Rename ``new`` to ``old``, removing what was at ``old`` (empty, or a previous analysis)."""
    if not old.exists():
        os.replace(new, old)
        return
    if any(old.iterdir()) and not is_previous_analysis(old):  # something was added meanwhile
        shutil.rmtree(new, ignore_errors=True)
        raise _refuse(old, "files caulk did not write appeared in it during the analysis")
    trash = new.with_name(f"{new.name}.old")
    os.replace(old, trash)
    os.replace(new, old)
    shutil.rmtree(trash, ignore_errors=True)
