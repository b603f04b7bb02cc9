"""Rates of error-vs-n curves: log-log slope, a + b·n^(−c) fit, sample complexity on a grid."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy import optimize


def loglog_rate(ns: Sequence[float], errors: Sequence[float]) -> float:
    """c in error ≈ b·n^(−c), by least squares on (log n, log error); the observed rate."""
    slope, _ = np.polyfit(np.log(ns), np.log(errors), 1)
    return float(-slope)


def power_law_fit(ns: Sequence[float], errors: Sequence[float]) -> dict[str, float]:
    """Fit error ≈ a + b·n^(−c) with a ≥ 0, b ≥ 0, 0 ≤ c ≤ 4 (scipy.optimize.curve_fit).

    Starts from the log-log fit with a = 0; returns a, b, c.
    """
    ns = np.asarray(ns, dtype=float)
    errors = np.asarray(errors, dtype=float)
    c0 = max(loglog_rate(ns, errors), 1e-3)
    b0 = float(np.exp(np.mean(np.log(errors) + c0 * np.log(ns))))

    def model(n, a, b, c):
        return a + b * n ** (-c)

    with warnings.catch_warnings():  # the parameter covariance is not used
        warnings.simplefilter("ignore", optimize.OptimizeWarning)
        (a, b, c), _ = optimize.curve_fit(
            model,
            ns,
            errors,
            p0=[0.0, b0, min(c0, 4.0)],
            bounds=([0.0, 0.0, 0.0], [np.inf, np.inf, 4.0]),
            sigma=errors,  # relative errors: every decade of n weighs the same
            maxfev=20_000,
        )
    return {"a": float(a), "b": float(b), "c": float(c)}


def sample_complexity(ns: Sequence[int], errors: Sequence[float], target: float) -> int | None:
    """The smallest n on the grid from which every larger n has error ≤ ``target`` (None: never)."""
    order = np.argsort(ns)
    ns_sorted = np.asarray(ns)[order]
    ok = np.asarray(errors)[order] <= target
    for i in range(len(ns_sorted)):
        if ok[i:].all():
            return int(ns_sorted[i])
    return None
