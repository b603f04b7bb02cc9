"""A curve's W&B run: its name, its config (the grid), one row per point, the points table and a
log-log chart of the test error vs n.

Every point row carries ``n`` and ``seed`` and leaves the summary alone; the config holds the
curve's grid (``curve_n``, ``curve_seeds``) and the resolved config without the per-point
``data.n`` and ``seed``. At the curve's end the summary gets the points table (``points``) and
``curve_summary``, and ``wandb.plot.line_series`` logs log10(test error) vs log10(n), per seed and
for the seed mean (``loglog``): that one row is the chart's and holds no point.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from caulk.loggers import deterministic_run_id
from caulk.peft import get_peft

#: the record fields of the points table, in order
TABLE_COLUMNS = (
    "n",
    "seed",
    "status",
    "test_error",
    "test_loss",
    "val_error",
    "n_train_seen",
    "global_steps",
    "train_loop",
    "trainable_params",
    "wall_time_s",
    "message",
)
#: record field -> the key of the point's row in the run's history (besides n and seed)
ROW_KEYS = {
    "test_error": "scaling/error",
    "test_loss": "scaling/loss",
    "n_test": "scaling/n_test",
    "val_error": "scaling/val_error",
    "wall_time_s": "scaling/wall_time_s",
}


def peft_knob(peft_cfg: Any) -> tuple[str | None, Any]:
    """The PEFT method's complexity knob and its value (e.g. ``("rank", 8)``; None, None if none)."""
    method = get_peft(peft_cfg.name)(peft_cfg)
    return method.knob, method.knob_value()


def source_label(model_cfg: Any) -> str:
    """Where the backbone's weights come from: ``m<source m>`` (zoo), ``scratch`` (random init),
    ``timm`` (hub) or ``file``."""
    weights = str(model_cfg.get("weights", "none"))
    if weights == "zoo":
        return f"m{model_cfg.get('source_m')}"
    return {"none": "scratch", "hub": "timm"}.get(weights, weights)


def run_label(cfg: DictConfig) -> str:
    """``<model>-<source>-<peft>[-<knob><value>]``, e.g. ``vit_pico-m4000-lora-rank8``."""
    parts = [cfg.model.name, source_label(cfg.model), cfg.peft.name]
    knob, value = peft_knob(cfg.peft)
    if knob is not None and value is not None:
        parts.append(f"{knob.split('.')[-1]}{value}")
    return "-".join(str(p) for p in parts)


def job_tag(output_dir: str | Path) -> str:
    """A short tag of the job's dir: ``j<number>`` for a multirun job (its dir is its number),
    else 6 hex digits of the dir's hash."""
    name = Path(output_dir).name
    return f"j{name}" if name.isdigit() else deterministic_run_id(output_dir)[:6]


def curve_run_name(cfg: DictConfig) -> str:
    """The curve run's name, e.g. ``vit_pico-m4000-lora-rank8-curve-j3``: distinct for the jobs
    of one sweep."""
    return f"{run_label(cfg)}-curve-{job_tag(cfg.paths.output_dir)}"


def curve_run_config(cfg: DictConfig, grid_n: list[int], seeds: list[int]) -> dict[str, Any]:
    """The curve run's config: what the curve is, its grid, and the resolved config without the
    per-point ``data.n`` and ``seed``."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resolved.pop("seed", None)
    resolved.get("data", {}).pop("n", None)
    knob, value = peft_knob(cfg.peft)
    return {
        "model": cfg.model.name,
        "weights": cfg.model.get("weights"),
        "source_m": cfg.model.get("source_m") if cfg.model.get("weights") == "zoo" else None,
        "peft": cfg.peft.name,
        "peft_knob": knob,
        "peft_knob_value": value,
        "data": cfg.data.name,
        "curve_n": sorted(set(grid_n)),
        "curve_seeds": list(seeds),
        "config": resolved,
    }


def point_row(record: dict[str, Any]) -> dict[str, Any]:
    """A point's history row: ``n``, ``seed`` and its finite metrics (none for a failed point)."""
    row = {"n": record["n"], "seed": record["seed"], "ok": int(record["status"] == "ok")}
    for field, key in ROW_KEYS.items():
        value = record.get(field)
        if isinstance(value, (int, float)) and math.isfinite(value):
            row[key] = value
    return row


def log_curve_point(run, record: dict[str, Any]) -> None:
    """Log one point of the curve as a row with ``n`` as the x-axis of ``scaling/*``; the rows
    leave the summary alone (its last point would say nothing of the curve)."""
    for key in ("n", "seed", "ok"):
        run.define_metric(key, summary="none")
    run.define_metric("scaling/*", step_metric="n", summary="none")
    run.log(point_row(record))


def curve_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The curve at a glance: points ok and not ok, the largest n with an ok point and the mean
    test error over its seeds."""
    ok = points_frame([r for r in records if r["status"] == "ok"])
    summary: dict[str, Any] = {"points_ok": len(ok), "points_not_ok": len(records) - len(ok)}
    if len(ok):
        n_max = int(ok["n"].max())
        at_max = ok.loc[ok["n"] == n_max, "test_error"].astype(float)
        summary.update(n_max=n_max, test_error_at_n_max=float(at_max.mean()))
    return summary


def points_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """The curve's points, one row each, columns ``TABLE_COLUMNS`` (missing fields empty)."""
    return pd.DataFrame([{c: r.get(c) for c in TABLE_COLUMNS} for r in records])


def loglog_lines(records: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Line name (``seed <s>`` and ``mean``) -> (log10 n, log10 test error) over the ok points;
    a zero error (no logarithm) is left out."""
    ok = points_frame([r for r in records if r["status"] == "ok"])
    if ok.empty:
        return {}
    ok = ok.astype({"test_error": float})
    lines = {f"seed {s}": pts for s, pts in ok.groupby("seed")}
    lines["mean"] = ok.groupby("n", as_index=False)["test_error"].mean()
    out = {}
    for name, pts in lines.items():
        pts = pts[pts["test_error"] > 0].sort_values("n")
        out[name] = ([math.log10(n) for n in pts["n"]], [math.log10(e) for e in pts["test_error"]])
    return out


def log_curve_end(run, records: list[dict[str, Any]]) -> None:
    """Put the points table into the run's summary and log the log-log chart of the curve."""
    import wandb  # only when W&B logs: +0.3 s to import, paid by no run with W&B off

    frame = points_frame(records)  # W&B types a column by its first row: text columns as str
    text = {c: str for c in frame.columns if frame[c].dtype == object}
    run.summary.update({"points": wandb.Table(dataframe=frame.astype(text))})
    run.summary.update(curve_summary(records))
    lines = loglog_lines(records)
    if not lines:
        return
    chart = wandb.plot.line_series(
        xs=[xs for xs, _ in lines.values()],
        ys=[ys for _, ys in lines.values()],
        keys=list(lines),
        title=f"log10 test error vs log10 n: {run.name}",
        xname="log10 n",
    )
    run.log({"loglog": chart})
