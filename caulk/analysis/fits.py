"""Learning-curve fits: e(n) = a + b n^-c (and the pure power law b n^-c), CIs by seed bootstrap."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

from caulk.errors import CaulkConfigError


@dataclass
class CurveFit:
    """A fitted curve e(n) = a + b n^-c (a = 0 for the pure power law), its RMSE and #n."""

    a: float
    b: float
    c: float
    rmse: float
    n_points: int


def offset_law(n, a, b, c):
    """The offset power law e(n) = a + b n^-c (``n`` may be an array)."""
    return a + b * np.power(n, -c)


C_MIN, C_MAX = 1e-3, 5.0
_C_GRID = np.geomspace(C_MIN, C_MAX, 256)


def best_offset_and_scale(x: np.ndarray, e: np.ndarray, a_max: float):
    """For each row x_c of ``x`` (rows: values of c, columns: n^-c), the (a, b, sse) minimising
    ||a + b x_c - e||^2 over 0 <= a <= a_max, b >= 0: a convex quadratic, so the optimum is the
    unconstrained one when feasible, else the best of the edges' own optima."""
    m = e.size
    sx, sxx, se, sxe = x.sum(1), (x * x).sum(1), e.sum(), x @ e
    det = m * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        b_free = (m * sxe - sx * se) / det
        a_free = (se - b_free * sx) / m
        feasible = (det > 0) & (a_free >= 0) & (a_free <= a_max) & (b_free >= 0)
        a_lo, a_hi = np.zeros_like(sx), np.full_like(sx, a_max)
        candidates = [
            (np.where(feasible, a_free, 0.0), np.where(feasible, b_free, 0.0), feasible),
            (a_lo, np.maximum(0.0, sxe / sxx), None),
            (a_hi, np.maximum(0.0, (sxe - a_max * sx) / sxx), None),
            (np.full_like(sx, min(max(se / m, 0.0), a_max)), np.zeros_like(sx), None),
        ]
    a = np.stack([c[0] for c in candidates])
    b = np.stack([c[1] for c in candidates])
    sse = ((a[..., None] + b[..., None] * x[None] - e) ** 2).sum(-1)
    sse[0] = np.where(candidates[0][2], sse[0], np.inf)
    sse = np.where(np.isfinite(sse), sse, np.inf)
    k, cols = sse.argmin(0), np.arange(x.shape[0])
    return a[k, cols], b[k, cols], sse[k, cols]


def fit_offset_power_law(n, error) -> CurveFit:
    """Least-squares fit of e(n) = a + b n^-c with 0 <= a <= min(e), b >= 0, 1e-3 <= c <= 5.

    Needs at least 3 distinct n (as many as parameters). For a fixed c the best (a, b) has a
    closed form (bounded linear least squares), so the fit minimises that profile over c: a
    256-point grid over the whole c range, then finer grids around the best point. The grid
    sees every valley of the a/c trade-off, where local fits from a few starts can stop early,
    and a fit costs about a millisecond (the seed bootstrap refits hundreds of times).
    """
    n, e = np.asarray(n, float), np.asarray(error, float)
    if len(np.unique(n)) < 3:
        raise CaulkConfigError(
            f"a + b*n^-c has 3 parameters: need >= 3 distinct n, got {len(np.unique(n))}"
        )
    if np.any(n <= 0):
        raise CaulkConfigError("n must be positive to fit a power law")
    if not np.all(np.isfinite(e)):
        raise RuntimeError("the offset power-law fit needs finite errors")
    a_max = max(float(e.min()), 1e-12)
    log_n = np.log(n)

    def profile(cs: np.ndarray):
        return best_offset_and_scale(np.exp(-np.outer(cs, log_n)), e, a_max)

    grid = _C_GRID
    for _ in range(4):  # zoom in on the best point's bracket: c to ~1e-8 relative
        k = int(np.argmin(profile(grid)[2]))
        c = float(grid[k])
        grid = np.linspace(grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)], 65)
    a, b, sse = (float(v[0]) for v in profile(np.array([c])))
    return CurveFit(a, b, c, float(np.sqrt(sse / len(e))), len(np.unique(n)))


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


def seed_means(points: pd.DataFrame, metric: str, level: float = 0.95) -> pd.DataFrame:
    """Mean, standard error and count of ``metric`` over seeds, per n, and ``ci_half``: the
    half width of the mean's ``level`` interval from Student's t with seeds - 1 degrees of
    freedom (t = 4.30 for 3 seeds, where the normal's 1.96 is far too narrow; NaN for 1 seed)."""
    g = points.groupby("n")[metric]
    out = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "seeds": g.count()}).reset_index()
    out["se"] = out["sd"] / np.sqrt(out["seeds"])
    dof = (out["seeds"] - 1).where(out["seeds"] > 1)
    out["ci_half"] = stats.t.ppf((1 + level) / 2, dof) * out["se"]
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
            n_seeds=int(pts.loc[pts[metric].notna(), "seed"].nunique()),  # the seeds used
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
