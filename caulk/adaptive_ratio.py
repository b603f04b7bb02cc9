"""Adaptive curves against a baseline (``curve.baseline``): pin down n*(baseline) / n*(curve).

``curve.baseline`` lists the overrides that turn this job's config into the baseline curve's,
e.g. ``curve.baseline='["model.weights=none"]'`` (random init against the pre-trained weights) or
``'["model.source_m=500"]'``. The job then adapts both curves together: its own points under
``<output_dir>``, the baseline's under ``<output_dir>/baseline``, and stops once the 95% interval
of the ratio n*(baseline) / n*(curve) (the analysis' ratio: :func:`caulk.analysis.answers.ratios`,
from the two curves' draws in pairs) has hi / lo <= ``curve.precision`` at every target.

Each curve is steered by the ordinary rule (:func:`caulk.adaptive.propose`) asked for
precision ``curve.precision ** (1 / sqrt(2))``: the ratio's log-width is about the two n*
log-widths added in quadrature, so two curves each known that well give the ratio the precision
asked; a curve already known that well gets no new points while the other still needs them.
When both are but the ratio is not yet (the two draws need not be independent), the curve with
the wider interval is narrowed further.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict

from caulk.analysis.answers import ratios, sample_complexity
from caulk.analysis.models import curve_models

CURVES = ("curve", "baseline")
#: the fields of an answer an adaptive trace keeps
ANSWER_KEYS = ("target", "n_star", "n_star_lo", "n_star_hi", "status", "family", "note")
#: where the baseline's records go, under the job's output dir
BASELINE_DIR = "baseline"


def baseline_cfg(cfg: DictConfig) -> DictConfig:
    """The baseline curve's config: this job's with ``curve.baseline`` applied, its records in
    ``<output_dir>/baseline`` with ``curve_role: "baseline"``."""
    overrides = [str(o) for o in cfg.curve.baseline]
    out = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    with open_dict(out):
        out.paths.output_dir = str(Path(cfg.paths.output_dir) / BASELINE_DIR)
        out.curve.baseline = None
        out.curve.role = BASELINE_DIR  # its records say so: the analysis keeps the curves apart
    return out


def curve_spec(spec):
    """The spec each curve's rule is asked: precision ``spec.precision ** (1 / sqrt(2))``."""
    return dataclasses.replace(spec, precision=spec.precision ** (1 / math.sqrt(2)))


def fit_ratio(records: dict[str, list[dict]], spec, replicates: int) -> tuple[dict, list, dict]:
    """Both curves' answers (by curve), per target the ratio n*(baseline) / n*(curve) with its
    95% interval, from one fit of the two curves (their draws in pairs), and each curve's model
    (or why it has none)."""
    frame = pd.concat(
        [points_frame(rows, name) for name, rows in records.items()], ignore_index=True
    )
    models = curve_models(frame, ["curve"], "test_error", replicates=replicates)
    table = sample_complexity(
        frame, ["curve"], "test_error", list(spec.targets), replicates=replicates, models=models
    )
    answers = {
        name: [
            {k: plain(row[k]) for k in ANSWER_KEYS}
            for _, row in table[table.curve == name].iterrows()
        ]
        for name in CURVES
    }
    rows = ratios(table, ["curve"], {"curve": "baseline"})
    found = {float(r["target"]): r for _, r in rows.iterrows()}
    out = []
    for t in spec.targets:
        r = found.get(float(t))
        values = (None, None, None) if r is None else (r["ratio"], r["ratio_lo"], r["ratio_hi"])
        out.append(
            dict(
                zip(
                    ("target", "ratio", "ratio_lo", "ratio_hi"),
                    (t, *map(plain, values)),
                    strict=True,
                )
            )
        )
    return answers, out, {name: models.get((name,), "no ok points") for name in CURVES}


def ratio_precise(row: dict, precision: float) -> bool:
    """Whether a target's ratio interval has hi / lo <= ``precision``."""
    lo, hi = row.get("ratio_lo"), row.get("ratio_hi")
    return bool(
        lo and hi and math.isfinite(lo) and math.isfinite(hi) and lo > 0 and hi / lo <= precision
    )


def ratio_text(row: dict) -> str:
    """``n*(baseline) / n*(curve) at E=0.1: 2.8 [2.4, 3.3]`` (or why there is none)."""
    head = f"n*(baseline) / n*(curve) at E={row['target']:g}:"
    if row.get("ratio") is None or not math.isfinite(row["ratio"]):
        return f"{head} not determined (a curve has no finite n* there)"
    return f"{head} {row['ratio']:.3g} [{row['ratio_lo']:.3g}, {row['ratio_hi']:.3g}]"


def plain(value: Any) -> Any:
    """A numpy scalar as the Python number it holds (JSON-ready); anything else as it is."""
    return value.item() if isinstance(value, np.generic) else value


def points_frame(records: list[dict], curve: str) -> pd.DataFrame:
    """The ok records as the analysis' points (curve, n, seed, test_error)."""
    ok = [r for r in records if r.get("status") == "ok"]
    return pd.DataFrame(
        {
            "curve": curve,
            "n": [r["n"] for r in ok],
            "seed": [r["seed"] for r in ok],
            "test_error": [r["test_error"] for r in ok],
        }
    )
