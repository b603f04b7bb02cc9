"""Scan sweep dirs for result records; tolerate failed and missing jobs, and report them."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from caulk.errors import CaulkConfigError
from caulk.run.record import RECORD_NAME, RecordShapeError, read_record_row


@dataclass
class Collection:
    """The records of one or more sweeps as a tidy table, plus what is wrong with the sweep."""

    table: pd.DataFrame  # one row per readable record (ok and failed), scalar fields only
    failed: list[dict[str, Any]] = field(default_factory=list)  # {path, message}
    missing: list[str] = field(default_factory=list)  # job (or curve point) dirs without a record
    unreadable: list[dict[str, str]] = field(default_factory=list)  # {path, message}: not a record

    @property
    def ok(self) -> pd.DataFrame:
        """The records whose status is ok."""
        return self.table[self.table["status"] == "ok"]

    def points(self, metric: str) -> tuple[pd.DataFrame, list[dict[str, str]]]:
        """The ok records that are points of a ``metric`` curve (a finite ``metric`` and a
        seed), and {path, message} for each ok record that is not (it is left out of the fits)."""
        ok = self.ok
        reasons = {i: _why_not_a_point(row, metric) for i, row in ok.iterrows()}
        skipped = [
            {"path": str(ok.at[i, "record_path"]), "message": why}
            for i, why in reasons.items()
            if why
        ]
        return ok[[not reasons[i] for i in ok.index]], skipped


#: the trace an adaptive curve job writes into its dir (``caulk.adaptive``)
ADAPTIVE_TRACE = "adaptive.json"


def _why_not_a_point(row: pd.Series, metric: str) -> str:
    """Why an ok record's row is no point of a ``metric`` curve ("" if it is one)."""
    for key in ("seed", metric):
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return f"ok record without a {key} value (missing, null or NaN)"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's too
            return f"{key} is not a number: {value!r}"
        if not math.isfinite(value):
            return f"{key} is {value}"
    return ""


def _job_dirs(root: Path) -> list[Path]:
    """Hydra job dirs under ``root`` (each has a ``.hydra`` folder)."""
    return sorted(p.parent for p in root.rglob(".hydra") if p.is_dir() and p.parent != root)


def _curve_point_dirs(job: Path) -> list[Path]:
    """The point dirs a curve job (``curve.n`` x ``curve.seeds``) should hold; [] otherwise."""
    try:
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        ns, seeds = cfg.curve.get("n"), cfg.curve.get("seeds")
        if ns is None and seeds is None:
            return []
        ns = [cfg.data.n] if ns is None else list(ns)
        seeds = [cfg.seed] if seeds is None else list(seeds)
        return [job / f"n{int(n)}_s{int(s)}" for n in ns for s in seeds]
    except Exception:  # no readable Hydra config (or n=null): job-level check only
        return []


def check_sweep_dirs(sweep_dirs: list[str | Path]) -> list[Path]:
    """The sweep dirs as paths; CaulkConfigError naming the first that is not a dir."""
    for root in map(Path, sweep_dirs):
        if not root.is_dir():
            raise CaulkConfigError(f"sweep dir not found: {root}")
    return [Path(d) for d in sweep_dirs]


def _read_rows(paths: list[Path], rows: list, failed: list, unreadable: list) -> None:
    """Append each record's checked row (or its path and why it is no record) to the lists."""
    for path in paths:
        try:
            row = read_record_row(path)
        except (OSError, ValueError) as e:  # JSONDecodeError and RecordShapeError included
            kind = "bad record" if isinstance(e, RecordShapeError) else type(e).__name__
            unreadable.append({"path": str(path), "message": f"{kind}: {e}"})
            continue
        if row.get("tune_candidate"):  # a tune candidate's own record: its point says the result
            continue
        row["record_path"] = str(path)
        rows.append(row)
        if row["status"] != "ok":
            failed.append({"path": str(path), "message": str(row.get("message", ""))})


def _no_records_error(sweep_dirs: list[Path], unreadable: list[dict[str, str]]) -> CaulkConfigError:
    where = ", ".join(map(str, sweep_dirs))
    if not unreadable:
        return CaulkConfigError(f"no {RECORD_NAME} found under {where}")
    first = unreadable[0]
    return CaulkConfigError(
        f"no readable {RECORD_NAME} under {where}: {len(unreadable)} unreadable, first "
        f"{first['path']} ({first['message']})"
    )


def collect_records(sweep_dirs: list[str | Path]) -> Collection:
    """Read every ``record.json`` below the sweep dirs (JSON files only; no live process needed).

    Each is checked against the record schema (``caulk.run.record``); one that is not JSON or not
    a record is listed in ``unreadable`` with its reason and left out of the table.
    """
    rows, failed, unreadable, missing = [], [], [], []
    for root in check_sweep_dirs(sweep_dirs):
        paths = sorted(root.rglob(RECORD_NAME))
        _read_rows(paths, rows, failed, unreadable)
        have = {p.parent for p in paths}
        for job in _job_dirs(root):
            if not any(h == job or job in h.parents for h in have):
                missing.append(str(job))
                continue
            missing += [str(d) for d in _curve_point_dirs(job) if d not in have]
    if not rows:
        raise _no_records_error([Path(d) for d in sweep_dirs], unreadable)
    return Collection(pd.DataFrame(rows), failed=failed, missing=missing, unreadable=unreadable)
