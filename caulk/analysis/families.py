"""Learning-curve families (those the learning-curve database LCDB compares), each fitted by
profiling and chosen per curve by backtest: fit on the smaller n, score on the largest.

Every family is written ``offset + scale * basis(n; theta)`` with offset in [0, min e] (or 0),
scale >= 0 and one or two shape parameters theta in bounds; with those signs every curve falls
as n grows. For a fixed theta the best (offset, scale) is a bounded linear least-squares problem
with a closed form (:func:`caulk.analysis.fits.best_offset_and_scale`), so a fit scans a grid
over theta (a global search that cannot stop in a local valley), then polishes the best grid
point with ``scipy.optimize.least_squares`` inside the bounds. pow3 keeps caulk's own fit
(:func:`caulk.analysis.fits.fit_offset_power_law`). Parameters that end at a bound are flagged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, least_squares
from scipy.special import expit

from caulk.analysis.fits import C_MAX, C_MIN, best_offset_and_scale, fit_offset_power_law
from caulk.errors import CaulkConfigError

#: n*(E) is searched in [N_LOW, N_HIGH]; a target not reached by N_HIGH has n* = inf
N_LOW, N_HIGH = 1e-3, 1e18


@dataclass(frozen=True)
class Family:
    """One family: its formula, parameter names (internal vector order: offset if any, scale,
    shape parameters), how to build its basis, its shape grid and bounds, and how its internal
    vector reads as the formula's parameters."""

    name: str
    formula: str
    names: tuple[str, ...]
    has_offset: bool
    basis: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (n (m,), theta (k, p)) -> (k, m)
    grid: Callable[[np.ndarray], np.ndarray]  # n -> (k, p) shape parameters to scan
    shape_bounds: Callable[[np.ndarray], tuple[list[float], list[float]]]
    report: Callable[[np.ndarray], dict[str, float]]
    asymptote: Callable[[np.ndarray], float]


def _grid2(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    return np.stack(np.meshgrid(first, second, indexing="ij"), -1).reshape(-1, 2)


def _named(*names: str) -> Callable[[np.ndarray], dict[str, float]]:
    return lambda v: {k: float(x) for k, x in zip(names, v, strict=True)}


def _logistic_in_log_n(n: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """1 / (1 + (n / e^knee)^slope), theta = (knee, slope): falls from 1 to 0 around e^knee."""
    return expit(-theta[:, 1:2] * (np.log(n)[None] - theta[:, 0:1]))


def _knee_bounds(n: np.ndarray) -> tuple[list[float], list[float]]:
    return [np.log(n.min()) - 10, C_MIN], [np.log(n.max()) + 10, C_MAX]


def _knee_grid(n: np.ndarray) -> np.ndarray:
    (k_lo, s_lo), (k_hi, s_hi) = _knee_bounds(n)
    return _grid2(np.linspace(k_lo, k_hi, 48), np.geomspace(s_lo, s_hi, 48))


def _exp3_bounds(n: np.ndarray) -> tuple[list[float], list[float]]:
    return [1e-3 / n.max()], [20 / n.min()]


def _pow4_bounds(n: np.ndarray) -> tuple[list[float], list[float]]:
    return [C_MIN, 0.0], [C_MAX, 10 * n.max()]


def _vap3_bounds(n: np.ndarray) -> tuple[list[float], list[float]]:
    return [0.0, -C_MAX], [20 * n.min(), 0.0]


def _mmf4_report(v: np.ndarray) -> dict[str, float]:
    """LCDB's (a b + c n^d) / (b + n^d) from offset c, scale a - c, knee log(b)/d and d."""
    offset, scale, knee, d = v
    return {
        "a": float(offset + scale),
        "b": float(np.exp(d * knee)),
        "c": float(offset),
        "d": float(d),
    }


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "pow2", "b n^-c", ("b", "c"), False,
            lambda n, t: np.exp(-np.outer(t[:, 0], np.log(n))),
            lambda n: np.geomspace(C_MIN, C_MAX, 256)[:, None],
            lambda n: ([C_MIN], [C_MAX]),
            _named("b", "c"), lambda v: 0.0,
        ),
        Family(
            "pow3", "a + b n^-c", ("a", "b", "c"), True,
            lambda n, t: np.exp(-np.outer(t[:, 0], np.log(n))),
            lambda n: np.geomspace(C_MIN, C_MAX, 256)[:, None],
            lambda n: ([C_MIN], [C_MAX]),
            _named("a", "b", "c"), lambda v: float(v[0]),
        ),
        Family(
            "exp3", "a + b exp(-c n)", ("a", "b", "c"), True,
            lambda n, t: np.exp(-np.outer(t[:, 0], n)),
            lambda n: np.geomspace(*_exp3_bounds(n)[0], *_exp3_bounds(n)[1], 256)[:, None],
            _exp3_bounds,
            _named("a", "b", "c"), lambda v: float(v[0]),
        ),
        Family(
            "logpower3", "a / (1 + (n / e^b)^c)", ("a", "b", "c"), False,
            _logistic_in_log_n, _knee_grid, _knee_bounds,
            _named("a", "b", "c"), lambda v: 0.0,
        ),
        Family(
            "vap3", "exp(a + b / n + c log n)", ("a", "b", "c"), False,
            lambda n, t: np.exp(t[:, 0:1] / n[None] + t[:, 1:2] * np.log(n)[None]),
            lambda n: _grid2(
                np.r_[0.0, np.geomspace(0.01 * n.min(), 20 * n.min(), 31)],
                np.r_[-np.geomspace(C_MAX, C_MIN, 47), 0.0],
            ),
            _vap3_bounds,
            lambda v: {"a": float(np.log(v[0])) if v[0] > 0 else -np.inf, "b": float(v[1]), "c": float(v[2])},
            lambda v: float(v[0]) if v[2] == 0 else 0.0,
        ),
        Family(
            "pow4", "a + b (n + d)^-c", ("a", "b", "c", "d"), True,
            lambda n, t: np.exp(-t[:, 0:1] * np.log(n[None] + t[:, 1:2])),
            lambda n: _grid2(
                np.geomspace(C_MIN, C_MAX, 64),
                np.r_[0.0, np.geomspace(0.01 * n.min(), 10 * n.max(), 31)],
            ),
            _pow4_bounds,
            _named("a", "b", "c", "d"), lambda v: float(v[0]),
        ),
        Family(
            "mmf4", "(a b + c n^d) / (b + n^d)", ("c", "a", "b", "d"), True,
            _logistic_in_log_n, _knee_grid, _knee_bounds,
            _mmf4_report, lambda v: float(v[0]),
        ),
    )
}  # fmt: skip


@dataclass
class FamilyFit:
    """A fitted family: its internal vector, the formula's parameters, RMSE, flagged bounds."""

    family: str
    vector: np.ndarray
    params: dict[str, float]
    rmse: float
    at_bound: tuple[str, ...]
    n_points: int

    def predict(self, n) -> np.ndarray:
        """The fitted error at ``n`` (scalar or array)."""
        return _curve(FAMILIES[self.family], np.atleast_1d(np.asarray(n, float)), self.vector)

    @property
    def asymptote(self) -> float:
        """The error as n grows without bound."""
        return FAMILIES[self.family].asymptote(self.vector)

    def n_star(self, target: float) -> float:
        """The n at which the fitted curve reaches ``target`` (root of a falling curve, found by
        brentq in log n): inf when the target is at or below the asymptote or beyond N_HIGH, 0
        when the curve is below it from N_LOW on."""
        if target <= self.asymptote or self.predict(N_HIGH)[0] > target:
            return float("inf")
        if self.predict(N_LOW)[0] <= target:
            return 0.0
        log_n = brentq(
            lambda x: self.predict(np.exp(x))[0] - target, np.log(N_LOW), np.log(N_HIGH), xtol=1e-10
        )
        return float(np.exp(log_n))

    def describe(self) -> str:
        """The parameters as text, e.g. ``a=0.1, b=1.5, c=0.5``."""
        return ", ".join(f"{k}={v:.4g}" for k, v in self.params.items())


def _curve(family: Family, n: np.ndarray, vector: np.ndarray) -> np.ndarray:
    k = 1 if family.has_offset else 0
    offset = vector[0] if family.has_offset else 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        return offset + vector[k] * family.basis(n, np.asarray(vector[k + 1 :], float)[None])[0]


def _bounds(family: Family, n: np.ndarray, a_max: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = family.shape_bounds(n)
    head_lo, head_hi = ([0.0, 0.0], [a_max, np.inf]) if family.has_offset else ([0.0], [np.inf])
    return np.array(head_lo + list(lo), float), np.array(head_hi + list(hi), float)


def _at_bound(family: Family, vector: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple:
    span = np.where(np.isfinite(hi - lo), hi - lo, np.maximum(np.abs(vector), 1.0))
    linear = 2 if family.has_offset else 1  # offset and scale: 1e-4 of their range, shapes 1e-6
    tol = np.where(np.arange(len(vector)) < linear, 1e-4, 1e-6) * span
    near = (vector - lo <= tol) | (hi - vector <= tol)
    return tuple(name for name, flag in zip(family.names, near, strict=True) if flag)


def _linear_part(family: Family, n, e, theta: np.ndarray, a_max: float):
    """Rows (offset, scale, sse) of the best bounded offset and scale for each shape row."""
    with np.errstate(all="ignore"):
        x = family.basis(n, theta)
        usable = np.isfinite(x).all(axis=1) & (np.abs(x).sum(axis=1) > 0)
        x = np.where(usable[:, None], x, 1.0)
        offset, scale, sse = best_offset_and_scale(x, e, a_max if family.has_offset else 0.0)
    return offset, scale, np.where(usable, sse, np.inf)


def _vector(family: Family, offset: float, scale: float, theta) -> np.ndarray:
    head = [offset, scale] if family.has_offset else [scale]
    return np.array([*head, *theta], float)


def _profile(family: Family, n, e, a_max: float) -> np.ndarray:
    """The best internal vector over the family's shape grid (offset, scale in closed form)."""
    theta = family.grid(n)
    offset, scale, sse = _linear_part(family, n, e, theta, a_max)
    k = int(np.argmin(sse))
    return _vector(family, offset[k], scale[k], theta[k])


def _polish(family: Family, n, e, start: np.ndarray, lo, hi, a_max: float) -> np.ndarray:
    """Bounded local least squares over the shape parameters from the grid's best point, the
    offset and scale still in closed form (variable projection: an offset or scale at its bound
    stays exactly there); kept only if it lowers the SSE."""
    k = 2 if family.has_offset else 1

    def solve(theta):
        offset, scale, sse = _linear_part(family, n, e, np.asarray(theta)[None], a_max)
        return _vector(family, offset[0], scale[0], theta), sse[0]

    def resid(theta):
        r = _curve(family, n, solve(theta)[0]) - e
        return np.where(np.isfinite(r), r, 1e6)

    try:
        theta = least_squares(resid, np.clip(start[k:], lo[k:], hi[k:]), bounds=(lo[k:], hi[k:])).x
    except ValueError:
        return start
    vector, sse = solve(theta)
    return vector if sse < np.sum((_curve(family, n, start) - e) ** 2) else start


def fit_family(name: str, n, error) -> FamilyFit:
    """Least-squares fit of family ``name`` to errors at ``n``: grid profile, then a bounded
    polish (pow3: caulk's offset power-law fit). Needs as many distinct n as parameters."""
    family = _family(name)
    n, e = np.asarray(n, float), np.asarray(error, float)
    distinct = len(np.unique(n))
    if distinct < len(family.names):
        raise CaulkConfigError(
            f"{name} has {len(family.names)} parameters: need >= {len(family.names)} distinct n, "
            f"got {distinct}"
        )
    if np.any(n <= 0) or not np.all(np.isfinite(e)):
        raise CaulkConfigError(f"{name}: n must be positive and errors finite")
    a_max = max(float(e.min()), 1e-12)
    lo, hi = _bounds(family, n, a_max)
    if name == "pow3":
        f = fit_offset_power_law(n, e)
        vector = np.array([f.a, f.b, f.c])
    else:
        vector = _polish(family, n, e, _profile(family, n, e, a_max), lo, hi, a_max)
    rmse = float(np.sqrt(np.mean((_curve(family, n, vector) - e) ** 2)))
    at_bound = _at_bound(family, vector, lo, hi)
    return FamilyFit(name, vector, family.report(vector), rmse, at_bound, distinct)


def _family(name: str) -> Family:
    if name not in FAMILIES:
        raise CaulkConfigError(
            f"unknown curve family {name!r}; choose auto or one of {', '.join(FAMILIES)}"
        )
    return FAMILIES[name]
