"""The model of each curve, built once and read by every surface: fits.csv, the console, the
figures, the report and the answers (see :mod:`caulk.analysis.averaging`)."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from caulk.analysis.averaging import CurveModel, fit_curve_model, held_out
from caulk.analysis.families import FAMILIES
from caulk.analysis.test_rows import row_resample_shift, row_weights
from caulk.errors import CaulkConfigError


def curve_model(
    pts: pd.DataFrame,
    metric: str,
    family: str = "auto",
    replicates: int = 200,
    rng_seed: int = 0,
    row_weights: dict[str, np.ndarray] | None = None,
) -> CurveModel:
    """The averaged model of one curve's points (columns n, seed, ``metric``); ``replicates=0``
    gives its line without draws (the same line: the weights do not depend on the draws).
    ``row_weights`` (:func:`caulk.analysis.test_rows.row_weights`): resample the test rows in
    the draws too, where the points kept their per-row outcomes."""
    g = pts.groupby("n")[metric]
    per_n = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "seeds": g.count()})
    return fit_curve_model(
        per_n.index.to_numpy(float),
        per_n["mean"].to_numpy(float),
        per_n["sd"].to_numpy(float),
        per_n["seeds"].to_numpy(float),
        family,
        replicates,
        rng_seed,
        row_resample_shift(pts, metric, row_weights or {}),
    )


def _interval(draws: np.ndarray) -> tuple[float, float]:
    draws = draws[np.isfinite(draws)]
    if len(draws) < 2:
        return float("nan"), float("nan")
    lo, hi = np.quantile(draws, [0.025, 0.975], method="inverted_cdf")
    return float(lo), float(hi)


def model_row(model: CurveModel) -> dict:
    """fits.csv's columns of one curve's model: its name and weights, its local rate at the
    largest n and the error it levels off at (with 95% intervals from the draws), each family's
    parameters and backtest error, and the leading family's parameters at a bound."""
    at = float(model.n.max())
    rate_draws, floor_draws = model.rate_draws(at), model.asymptote_draws()
    lead = max(model.weights, key=model.weights.get)
    row = {
        "family": model.name,
        "model_weights": ";".join(f"{f}:{w:.3f}" for f, w in model.weights.items()),
        "rate": model.rate(),
        "rate_at_n": at,
        "asymptote": model.asymptote,
        "noise_scale": model.scale,
        "test_rows_resampled": model.test_rows,
        "at_bound": ",".join(_at_bound(model, lead)),
        "family_params": "; ".join(f"{f}: {_params_text(model, f)}" for f in model.weights),
        "backtest_n": float(model.n[-held_out(len(model.n))]),
    }
    row["rate_lo"], row["rate_hi"] = _interval(rate_draws)
    row["asymptote_lo"], row["asymptote_hi"] = _interval(floor_draws)
    row.update({f"backtest_{f}": model.backtest.get(f, np.nan) for f in FAMILIES})
    return row


def _params_text(model: CurveModel, family: str) -> str:
    vector = model.central[family].vectors[0]
    params = FAMILIES[family].report(vector)
    return ", ".join(f"{k}={v:.4g}" for k, v in params.items())


def _at_bound(model: CurveModel, family: str) -> tuple[str, ...]:
    """The parameters of ``family``'s central fit that sit at a bound of the fit."""
    fam = FAMILIES[family]
    vector = model.central[family].vectors[0]
    lo, hi = (np.asarray(v, float) for v in fam.shape_bounds(model.n))
    head_lo = [0.0, 0.0] if fam.has_offset else [0.0]
    head_hi = [float(model.e.min()), np.inf] if fam.has_offset else [np.inf]
    lo, hi = np.r_[head_lo, lo], np.r_[head_hi, hi]
    span = np.where(np.isfinite(hi - lo), hi - lo, np.maximum(np.abs(vector), 1.0))
    near = (vector - lo <= 1e-4 * span) | (hi - vector <= 1e-4 * span)
    return tuple(name for name, flag in zip(fam.names, near, strict=True) if flag)


def curve_seed(rng_seed: int, group: tuple) -> int:
    """The seed of one curve's draws: ``rng_seed`` and the curve's key values, the same in every
    analysis of that curve."""
    return rng_seed * 2**32 + zlib.crc32("|".join(map(str, group)).encode())


def curve_models(
    points: pd.DataFrame,
    keys: list[str],
    metric: str,
    family: str = "auto",
    replicates: int = 200,
    rng_seed: int = 0,
) -> dict[tuple, CurveModel | str]:
    """Each curve's model by its key values (a tuple), or why it has none: built once per
    analysis and read by the fits table, the answers and the figures. Each curve's draws
    come from its own random stream (:func:`curve_seed`), so two curves' draws are independent
    and the ratios taken from them in pairs are not narrowed by shared noise."""
    models: dict[tuple, CurveModel | str] = {}
    weights = row_weights(points, replicates, rng_seed)
    for group, pts in points.groupby(keys, dropna=False, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        seed = curve_seed(rng_seed, group)
        try:
            models[group] = curve_model(pts, metric, family, replicates, seed, weights)
        except CaulkConfigError as e:
            models[group] = str(e)
    return models


def _knob_names(points: pd.DataFrame, keys: list[str]) -> dict[tuple, object]:
    """Each curve's PEFT knob name (``rank``), when the points say it and it is no curve key."""
    if "peft_knob" not in points or "peft_knob" in keys or not len(points):
        return {}
    first = points.groupby(keys, dropna=False, sort=True)["peft_knob"].first()
    return {g if isinstance(g, tuple) else (g,): v for g, v in first.items()}


def model_table(
    points: pd.DataFrame,
    keys: list[str],
    metric: str,
    family: str = "auto",
    replicates: int = 200,
    rng_seed: int = 0,
    models: dict[tuple, CurveModel | str] | None = None,
) -> pd.DataFrame:
    """One :func:`model_row` per curve (a ``model_message`` where no model can be fitted);
    ``models``: those of :func:`curve_models`, else they are built here."""
    if models is None:
        models = curve_models(points, keys, metric, family, replicates, rng_seed)
    knobs = _knob_names(points, keys)
    rows = []
    for group, model in models.items():
        row = dict(zip(keys, group, strict=True))
        if knobs:  # "rank=8" in the console, as the legend and the answers name the curve
            row["peft_knob"] = knobs.get(group)
        if isinstance(model, str):
            row.update(family="", model_message=model)
        else:
            row.update(model_row(model))
        rows.append(row)
    return pd.DataFrame(rows)
