"""Scan sweep dirs for result records; tolerate failed and missing jobs, and report them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from caulk.errors import CaulkConfigError
from caulk.run.record import RECORD_NAME


@dataclass
class Collection:
    """The records of one or more sweeps as a tidy table, plus what is wrong with the sweep."""

    table: pd.DataFrame  # one row per record (ok and failed), scalar fields only
    failed: list[dict[str, Any]] = field(default_factory=list)  # {path, message}
    missing: list[str] = field(default_factory=list)  # job (or curve point) dirs without a record
    unreadable: list[dict[str, str]] = field(default_factory=list)  # {path, message}

    @property
    def ok(self) -> pd.DataFrame:
        return self.table[self.table["status"] == "ok"]


def _scalar_fields(record: dict[str, Any]) -> dict[str, Any]:
    row = {
        k: v
        for k, v in record.items()
        if k not in ("config", "traceback") and not isinstance(v, (dict, list))
    }
    if isinstance(record.get("curve_keys"), list):  # theory records name the keys of their curve
        row["curve_keys"] = ",".join(record["curve_keys"])
    return row


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


def collect_records(sweep_dirs: list[str | Path]) -> Collection:
    """Read every ``record.json`` below the sweep dirs (JSON files only; no live process needed)."""
    rows, failed, unreadable, missing = [], [], [], []
    for root in map(Path, sweep_dirs):
        if not root.is_dir():
            raise CaulkConfigError(f"sweep dir not found: {root}")
        paths = sorted(root.rglob(RECORD_NAME))
        for path in paths:
            try:
                record = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as e:
                unreadable.append({"path": str(path), "message": f"{type(e).__name__}: {e}"})
                continue
            row = _scalar_fields(record)
            row["record_path"] = str(path)
            rows.append(row)
            if record.get("status") != "ok":
                failed.append({"path": str(path), "message": record.get("message", "")})
        have = {p.parent for p in paths}
        for job in _job_dirs(root):
            if not any(h == job or job in h.parents for h in have):
                missing.append(str(job))
                continue
            missing += [str(d) for d in _curve_point_dirs(job) if d not in have]
    if not rows:
        raise CaulkConfigError(f"no {RECORD_NAME} found under {', '.join(map(str, sweep_dirs))}")
    table = pd.DataFrame(rows)
    if "status" not in table:
        table["status"] = "ok"
    return Collection(table=table, failed=failed, missing=missing, unreadable=unreadable)
