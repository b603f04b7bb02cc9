"""Learning-curve fits: e(n) = a + b n^-c (and the pure power law b n^-c), CIs by seed bootstrap."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.optimize import OptimizeWarning, curve_fit

from caulk.errors import CaulkConfigError


@dataclass
class CurveFit:
    a: float
    b: float
    c: float
    rmse: float
    n_points: int


def _offset_law(n, a, b, c):
    return a + b * np.power(n, -c)


def fit_offset_power_law(n, error) -> CurveFit:
    """Least-squares fit of e(n) = a + b n^-c with 0 <= a <= min(e), b > 0, 0 < c <= 5.

    Needs at least 3 distinct n (as many as parameters); several starting points guard
    against the a/c trade-off's flat valleys.
    """
    n, e = np.asarray(n, float), np.asarray(error, float)
    if len(np.unique(n)) < 3:
        raise CaulkConfigError(
            f"a + b*n^-c has 3 parameters: need >= 3 distinct n, got {len(np.unique(n))}"
        )
    if np.any(n <= 0):
        raise CaulkConfigError("n must be positive to fit a power law")
    e_min = float(e.min())
    best = None
    for a0 in (0.0, 0.5 * e_min, 0.9 * e_min):
        resid = np.clip(e - a0, 1e-9, None)
        slope, intercept = np.polyfit(np.log(n), np.log(resid), 1)
        p0 = (a0, float(np.exp(intercept)), float(np.clip(-slope, 1e-3, 5.0)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", OptimizeWarning)
                params, _ = curve_fit(
                    _offset_law,
                    n,
                    e,
                    p0=p0,
                    bounds=([0.0, 0.0, 1e-3], [max(e_min, 1e-12), np.inf, 5.0]),
                    maxfev=20_000,
                )
        except (RuntimeError, ValueError):
            continue
        sse = float(np.sum((_offset_law(n, *params) - e) ** 2))
        if best is None or sse < best[1]:
            best = (params, sse)
    if best is None:
        raise RuntimeError("the offset power-law fit did not converge")
    (a, b, c), sse = best
    return CurveFit(float(a), float(b), float(c), float(np.sqrt(sse / len(e))), len(np.unique(n)))


def fit_power_law(n, error) -> CurveFit:
    """Fit e(n) = b n^-c by linear regression in log-log space (needs >= 2 distinct n, e > 0)."""
    n, e = np.asarray(n, float), np.asarray(error, float)
    if len(np.unique(n)) < 2:
        raise CaulkConfigError(
            f"b*n^-c has 2 parameters: need >= 2 distinct n, got {len(np.unique(n))}"
        )
    if np.any(e <= 0):
        raise CaulkConfigError(
            "a pure power law needs positive errors (an error of 0 was measured)"
        )
    slope, intercept = np.polyfit(np.log(n), np.log(e), 1)
    b, c = float(np.exp(intercept)), float(-slope)
    rmse = float(np.sqrt(np.mean((b * n**-c - e) ** 2)))
    return CurveFit(0.0, b, c, rmse, len(np.unique(n)))


def seed_means(points: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, standard error and count of ``metric`` over seeds, per n."""
    g = points.groupby("n")[metric]
    out = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "seeds": g.count()}).reset_index()
    out["se"] = out["sd"] / np.sqrt(out["seeds"])
    return out


def bootstrap_over_seeds(
    points: pd.DataFrame, metric: str, replicates: int = 200, rng_seed: int = 0, level: float = 0.95
):
    """Percentile CIs of (a, b, c) from refitting on seeds resampled with replacement.

    ``points`` has columns n, seed, metric. Returns {param: (lo, hi)} (NaN with one seed).
    """
    seeds = np.unique(points["seed"])
    nan = {k: (np.nan, np.nan) for k in "abc"}
    if len(seeds) < 2:
        return nan
    rng = np.random.default_rng(rng_seed)
    pivot = points.pivot_table(index="seed", columns="n", values=metric, aggfunc="mean")
    draws = []
    for _ in range(replicates):
        sample = pivot.loc[rng.choice(seeds, size=len(seeds), replace=True)]
        means = sample.mean(axis=0, skipna=True).dropna()
        try:
            fit = fit_offset_power_law(means.index.to_numpy(), means.to_numpy())
        except (RuntimeError, CaulkConfigError):
            continue
        draws.append((fit.a, fit.b, fit.c))
    if not draws:
        return nan
    arr = np.array(draws)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {
        k: (float(np.percentile(arr[:, i], lo)), float(np.percentile(arr[:, i], hi)))
        for i, k in enumerate("abc")
    }


def fit_groups(
    table: pd.DataFrame,
    keys: list[str],
    metric: str = "test_error",
    replicates: int = 200,
    rng_seed: int = 0,
) -> pd.DataFrame:
    """One row per group: offset-law a, b, c with seed-bootstrap CIs, and the pure power law.

    Groups with too few distinct n get NaN parameters and the reason in ``message``.
    """
    rows = []
    for group, pts in table.groupby(keys, dropna=False, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        row = dict(zip(keys, group, strict=True))
        means = seed_means(pts, metric)
        row.update(
            n_points=len(means),
            n_seeds=int(pts["seed"].nunique()),
            n_min=int(means["n"].min()),
            n_max=int(means["n"].max()),
        )
        if "backbone_params" in pts:
            row["backbone_params"] = int(pts["backbone_params"].iloc[0])
        try:
            fit = fit_offset_power_law(means["n"], means["mean"])
            row.update({k: v for k, v in asdict(fit).items() if k != "n_points"}, message="")
            ci = bootstrap_over_seeds(pts, metric, replicates, rng_seed)
            for k, (lo, hi) in ci.items():
                row[f"{k}_lo"], row[f"{k}_hi"] = lo, hi
        except (CaulkConfigError, RuntimeError) as e:
            row.update(a=np.nan, b=np.nan, c=np.nan, rmse=np.nan, message=str(e))
        try:
            pure = fit_power_law(means["n"], means["mean"])
            row.update(pure_b=pure.b, pure_c=pure.c, pure_rmse=pure.rmse)
        except CaulkConfigError as e:
            row.update(pure_b=np.nan, pure_c=np.nan, pure_rmse=np.nan)
            row["message"] = row.get("message") or str(e)
        rows.append(row)
    cols = [
        *keys,
        "backbone_params",
        "n_points",
        "n_seeds",
        "n_min",
        "n_max",
        "a",
        "a_lo",
        "a_hi",
        "b",
        "b_lo",
        "b_hi",
        "c",
        "c_lo",
        "c_hi",
        "rmse",
        "pure_b",
        "pure_c",
        "pure_rmse",
        "message",
    ]
    out = pd.DataFrame(rows)
    return out.reindex(columns=[c for c in cols if c in out.columns or c.endswith(("_lo", "_hi"))])
