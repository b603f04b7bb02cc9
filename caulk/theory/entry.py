"""Shared plumbing of the theory entry points: config checks, records, the Hydra wrapper."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from caulk import __version__
from caulk.cli import reject_job
from caulk.config import is_int, is_number
from caulk.errors import CaulkConfigError
from caulk.run.record import RECORD_NAME, write_json_atomic


def as_int(cfg: DictConfig, key: str, low: int | None = None, high: int | None = None) -> int:
    """``cfg[key]`` as an int in [low, high], else CaulkConfigError."""
    value = cfg.get(key)
    if not is_int(value):
        raise CaulkConfigError(f"{key} must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"≥ {low}" if high is None else f"in [{low}, {high}]"
        raise CaulkConfigError(f"{key} must be {bounds}, got {value}")
    return value


def as_float(cfg: DictConfig, key: str, low: float = 0.0, strict: bool = False) -> float:
    """``cfg[key]`` as a float ≥ low (> low when ``strict``), else CaulkConfigError."""
    value = cfg.get(key)
    if not is_number(value) or not math.isfinite(value):
        raise CaulkConfigError(f"{key} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise CaulkConfigError(f"{key} must be {'>' if strict else '≥'} {low}, got {value}")
    return float(value)


def as_int_list(cfg: DictConfig, key: str, low: int) -> list[int]:
    """``cfg[key]`` (an int or a list of ints, each ≥ low, none repeated) as a sorted list."""
    value = cfg.get(key)
    values = list(value) if isinstance(value, ListConfig | list | tuple) else [value]
    if not values:
        raise CaulkConfigError(f"{key} must not be empty")
    for v in values:
        if not is_int(v) or v < low:
            raise CaulkConfigError(f"{key} must be integers ≥ {low}, got {v!r}")
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise CaulkConfigError(
            f"{key} has repeated values {repeated}: each value is one point, give it once"
        )
    return sorted(values)


def as_choice(cfg: DictConfig, key: str, choices: Iterable[str]) -> str:
    """``cfg[key]`` if it is one of ``choices``, else CaulkConfigError naming them."""
    choices = tuple(choices)
    value = cfg.get(key)
    if value not in choices:
        raise CaulkConfigError(f"unknown {key} {value!r}; available: {', '.join(choices)}")
    return value


def common_fields(cfg: DictConfig, kind: str, curve: dict[str, Any]) -> dict[str, Any]:
    """Fields every theory record carries: kind, the curve's keys (flat) and label, config."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {
        "kind": kind,
        **curve,
        "curve": ",".join(f"{k}={v}" for k, v in curve.items()),
        "curve_keys": list(curve),
        "caulk_version": __version__,
        "output_dir": str(Path(cfg.paths.output_dir).resolve()),
        "config": resolved,
    }


def point_record(
    base: dict[str, Any],
    n: int,
    seed: int,
    fields: dict[str, Any],
    point: dict[str, Any],
    start: float,
    status: str = "ok",
    message: str = "",
) -> dict[str, Any]:
    """One point's record: ``base`` (see ``common_fields``), n, seed, status and message, then
    ``fields``, the simulated ``point`` and the wall time since ``start`` (``time.perf_counter``)."""
    return {
        **base,
        "n": n,
        "seed": seed,
        "status": status,
        "message": message,
        **fields,
        **point,
        "wall_time_s": round(time.perf_counter() - start, 3),
    }


def write_point(output_dir: Path, parts: dict[str, int], record: dict[str, Any]) -> Path:
    """Write ``record`` atomically to ``output_dir/<k><v>/…/record.json`` (e.g. ``m100/n40``)."""
    sub = Path(*(f"{k}{v}" for k, v in parts.items()))
    return write_json_atomic(output_dir / sub / RECORD_NAME, record)


def hydra_job(run: Callable[[DictConfig], list[dict[str, Any]]], cfg: DictConfig) -> None:
    """Run one Hydra job and print its table. Bad input is one line and leaves no job dir; a
    single run then exits 2, a job of an in-process sweep returns so the others still run
    (``caulk.cli.reject_job``; ``run_cli`` exits 2 when the sweep ends)."""
    try:
        records = run(cfg)
    except CaulkConfigError as e:
        reject_job(e, cfg.paths.output_dir)
        return
    for r in records:
        theory = "" if r.get("theory") is None else f"  theory {r['theory']:.4g}"
        note = f"  ({r['interpolation_note']})" if r.get("interpolation_note") else ""
        print(
            f"{r['curve']}  n={r['n']:<6d} excess_risk {r['excess_risk']:.4g} "
            f"± {r['excess_risk_se']:.2g}{theory}{note}",
            flush=True,
        )
    print(f"{len(records)} records in {cfg.paths.output_dir}", flush=True)
