"""Effective data transferred (Hernandez et al. 2021): D_T = D_E - n, fitted as k n^alpha N^beta."""

from __future__ import annotations

import numpy as np
import pandas as pd

from caulk.analysis.fits import CurveFit
from caulk.errors import CaulkConfigError


def effective_data(error: np.ndarray, scratch: CurveFit) -> np.ndarray:
    """D_E: the n a from-scratch model needs to reach ``error``, inverting e(n) = a + b n^-c.

    NaN where ``error <= a`` (below the from-scratch asymptote: never extrapolated).
    """
    error = np.asarray(error, float)
    out = np.full(error.shape, np.nan)
    ok = error > scratch.a
    out[ok] = (scratch.b / (error[ok] - scratch.a)) ** (1.0 / scratch.c)
    return out


def effective_data_transferred(
    fine_tuned: pd.DataFrame, scratch: CurveFit, scratch_n_max: float | None = None
) -> pd.DataFrame:
    """Per fine-tuned point (columns n, mean error, model keys...): D_E, D_T = D_E - n, flags.

    ``extrapolated``: D_E lies beyond ``scratch_n_max``, the largest n the from-scratch curve
    measured, so D_E extrapolates that curve (never flagged without ``scratch_n_max``)."""
    out = fine_tuned.copy()
    out["D_E"] = effective_data(out["mean"].to_numpy(), scratch)
    out["D_T"] = out["D_E"] - out["n"]
    out["below_scratch_asymptote"] = out["mean"] <= scratch.a
    out["no_transfer"] = ~out["below_scratch_asymptote"] & (out["D_T"] <= 0)
    limit = np.inf if scratch_n_max is None else scratch_n_max
    out["extrapolated"] = np.isfinite(out["D_E"]) & (out["D_E"] > limit)
    return out


def fit_transfer_law(
    points: pd.DataFrame, max_n: float | None = None, allow_extrapolation: bool = False
) -> dict[str, float | int | str]:
    """Fit D_T = k n^alpha N^beta by least squares on log D_T (points with D_T > 0, n <= max_n).

    ``points`` needs columns n, D_T and backbone_params (N). With one model size, beta is not
    identifiable: it is NaN and k, alpha come from the fit in n alone. Points flagged
    ``extrapolated`` (D_E beyond the from-scratch curve's measured n) are left out unless
    ``allow_extrapolation``; ``left_out_extrapolated`` counts them.
    """
    use = points[np.isfinite(points["D_T"]) & (points["D_T"] > 0)]
    if max_n is not None:
        use = use[use["n"] <= max_n]
    beyond = use["extrapolated"].astype(bool) if "extrapolated" in use else use["n"] < 0
    left_out = 0 if allow_extrapolation else int(beyond.sum())
    if not allow_extrapolation:
        use = use[~beyond]
    sizes = use["backbone_params"].nunique()
    need = 3 if sizes > 1 else 2
    if len(use) < need:
        extra = f" ({left_out} more left out: D_E beyond the from-scratch n)" if left_out else ""
        raise CaulkConfigError(
            f"D_T = k n^alpha N^beta: need >= {need} points with D_T > 0, got {len(use)}{extra}"
        )
    y = np.log(use["D_T"].to_numpy(float))
    cols = [np.ones(len(use)), np.log(use["n"].to_numpy(float))]
    if sizes > 1:
        cols.append(np.log(use["backbone_params"].to_numpy(float)))
    X = np.stack(cols, axis=1)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    return {
        "k": float(np.exp(coef[0])),
        "alpha": float(coef[1]),
        "beta": float(coef[2]) if sizes > 1 else float("nan"),
        "points": int(len(use)),
        "model_sizes": int(sizes),
        "rmse_log": float(np.sqrt(np.mean(resid**2))),
        "max_n": float(max_n) if max_n is not None else float("nan"),
        "left_out_extrapolated": left_out,
        "allow_extrapolation": bool(allow_extrapolation),
    }
