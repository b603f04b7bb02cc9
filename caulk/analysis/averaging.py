"""One model per curve: the learning-curve families averaged by how well each extrapolated, with
the uncertainty of the noise and of the family in every answer drawn from it.

For one curve (seed means e_i at n_i):

1. **Noise.** The seed standard deviation is smoothed across n (log sd linear in log n, since
   the spread falls with n and 3 seeds measure it badly at any one n); the standard error of
   e_i is that sd over sqrt(seeds at n_i). Fits are weighted by 1 / se_i^2. With one seed the
   noise is the fit's own residual scale.
2. **Fits.** Every family (``caulk.analysis.families``) is fitted by weighted least squares:
   offset and scale in closed form for each point of a grid over the shape parameters, then
   two rounds of finer local grids around each fit's best point. All bootstrap replicates of a
   family are fitted at once (arrays of replicates x grid points), which keeps a curve at well
   under a second.
3. **Weights** (Bayesian model averaging with a backtest likelihood, as Domhan et al. 2015
   weigh curve models by their fit): each family is refitted without the last one or two n and
   scored by the Gaussian likelihood of the held-out means, whose variance adds the noise and
   the spread of the families' predictions there (so families that all extrapolate badly
   share the weight rather than one winning by chance). Lack of fit beyond the seed noise
   (chi^2 / dof > 1, common on real curves) scales the noise up.
4. **Draws.** Per family, a parametric bootstrap: the fitted curve plus Student-t noise of the
   (scaled) standard errors, refitted; each family contributes in proportion to its weight, so
   the draws carry the family uncertainty as well as the noise. Each n draws its noise from
   its own stream, so refitting with a point added keeps every other n's draws: an interval
   moves by what the new point says, not by a reshuffle of the random numbers (the adaptive
   rule's fantasy refits compare on common random numbers).

The curve is the weighted average of the families' fitted curves: its line, asymptote, local
rate and n*(E) are what every surface shows; intervals are quantiles of the draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

from caulk.analysis.families import FAMILIES, N_HIGH, N_LOW, Family
from caulk.errors import CaulkConfigError

#: families whose weight falls below this share are left out of the draws
MIN_WEIGHT = 0.01
#: bisection steps of n*(E) in log n over [N_LOW, N_HIGH] (precision ~1e-9 relative)
BISECTION_STEPS = 60
#: log-spaced points over [N_LOW, N_HIGH] on which the draws' n* are found (5% apart in n;
#: interpolated linearly in log n between them, far finer than the draws' own spread)
N_GRID = 1000


@dataclass
class BatchFit:
    """One family fitted to R curves at once: internal vectors (R, params) and the SSE."""

    family: Family
    vectors: np.ndarray
    sse: np.ndarray

    def predict(self, n) -> np.ndarray:
        """(R, len(n)) fitted errors."""
        n = np.atleast_1d(np.asarray(n, float))
        k = 1 if self.family.has_offset else 0
        offset = self.vectors[:, 0:1] if self.family.has_offset else 0.0
        with np.errstate(over="ignore", invalid="ignore"):
            basis = self.family.basis(n, self.vectors[:, k + 1 :])
            return offset + self.vectors[:, k : k + 1] * basis

    def asymptotes(self) -> np.ndarray:
        """(R,) the error as n grows without bound."""
        return np.array([self.family.asymptote(v) for v in self.vectors])


def _sums(x: np.ndarray, e: np.ndarray, w: np.ndarray):
    """Weighted sums of the closed form: x (k, m) shared or (R, k, m) per replicate; e (R, m)."""
    ew = e * w
    if x.ndim == 2:
        return x @ w, (x * x) @ w, ew @ x.T
    return (
        np.einsum("rkm,m->rk", x, w),
        np.einsum("rkm,m->rk", x * x, w),
        np.einsum("rkm,rm->rk", x, ew),
    )


def weighted_offset_and_scale(x, e, w, a_max, has_offset: bool):
    """(a, b, sse) of shape (R, k): for each replicate r (row of ``e``) and each basis row x_k,
    the a in [0, a_max[r]] (0 without offset) and b >= 0 minimising sum_i w_i (a + b x_ki - e_ri)^2.
    A convex quadratic: the free optimum where feasible, else the best of the edges' optima."""
    sx, sxx, sxe = _sums(x, e, w)
    sw, se, see = w.sum(), e @ w, (e * e) @ w
    se, see, a_max = se[:, None], see[:, None], np.asarray(a_max, float)[:, None]

    def sse(a, b):
        return a * a * sw + b * b * sxx + see - 2 * a * se - 2 * b * sxe + 2 * a * b * sx

    with np.errstate(divide="ignore", invalid="ignore"):
        zero = np.zeros_like(sxe)
        b0 = np.maximum(0.0, sxe / sxx)
        cands = [(zero, b0)]
        if has_offset:
            det = sw * sxx - sx * sx
            b_free = (sw * sxe - sx * se) / det
            a_free = (se - b_free * sx) / sw
            ok = (det > 0) & (a_free >= 0) & (a_free <= a_max) & (b_free >= 0)
            cands += [
                (np.where(ok, a_free, np.nan), np.where(ok, b_free, np.nan)),
                (a_max + zero, np.maximum(0.0, (sxe - a_max * sx) / sxx)),
                (np.clip(se / sw, 0.0, a_max) + zero, zero),
            ]
        a = np.stack([c[0] for c in cands])
        b = np.stack([c[1] for c in cands])
        s = sse(a, b)
    s = np.where(np.isfinite(s), s, np.inf)
    best = s.argmin(0)
    pick = np.take_along_axis
    return (pick(a, best[None], 0)[0], pick(b, best[None], 0)[0], pick(s, best[None], 0)[0])


def _axes(grid: np.ndarray) -> list[np.ndarray]:
    """The distinct values of each shape parameter of a family's (product) grid."""
    return [np.unique(grid[:, j]) for j in range(grid.shape[1])]


def _local_grid(axes: list[np.ndarray], best: np.ndarray, points: int):
    """Per replicate, a grid of ``points`` values per shape parameter between the neighbours of
    its best value on each axis. ``axes``: per parameter, the sorted values the best was chosen
    from, shared (P,) or per replicate (R, P). Returns the grid (R, points^p, p) and its axes."""
    rows = np.arange(len(best))
    new_axes = []
    for j, values in enumerate(axes):
        values = np.broadcast_to(values, (len(best), values.shape[-1]))
        i = np.abs(values - best[:, j : j + 1]).argmin(1)
        lo = values[rows, np.maximum(i - 1, 0)]
        hi = values[rows, np.minimum(i + 1, values.shape[1] - 1)]
        new_axes.append(np.linspace(lo, hi, points, axis=1))  # (R, points)
    mesh = np.meshgrid(*[np.arange(points)] * len(axes), indexing="ij")
    grid = np.stack([new_axes[j][:, mesh[j].ravel()] for j in range(len(axes))], -1)
    return grid, new_axes


def _coarse(grid: np.ndarray) -> np.ndarray:
    """Every other value of each axis of a two-parameter grid of over 2,048 points (the knee
    grids of logpower3 and mmf4, smooth in both axes; the local rounds refine it)."""
    if grid.shape[1] < 2 or len(grid) <= 2048:
        return grid
    axes = [values[::2] for values in _axes(grid)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))


def fit_batch(family: Family, n: np.ndarray, e: np.ndarray, w: np.ndarray) -> BatchFit:
    """Weighted least-squares fits of ``family`` to each row of ``e`` (R, m) at ``n`` (m,):
    the family's grid (every other value per axis for two shape parameters), then three rounds
    of finer local grids (7 points per shape parameter between the neighbours of each
    replicate's best point)."""
    a_max = np.maximum(e.min(axis=1), 1e-12)
    grid = _coarse(family.grid(n))
    with np.errstate(over="ignore", invalid="ignore"):
        x = family.basis(n, grid)
    usable = np.isfinite(x).all(-1) & (np.abs(x).sum(-1) > 0)
    a, b, sse = weighted_offset_and_scale(
        np.where(usable[:, None], x, 1.0), e, w, a_max, family.has_offset
    )
    sse = np.where(usable[None], sse, np.inf)
    best = sse.argmin(1)
    rows = np.arange(len(e))
    theta, axes = grid[best], _axes(grid)
    lo_b, hi_b = (np.asarray(v, float) for v in family.shape_bounds(n))
    fit_a, fit_b, fit_sse = a[rows, best], b[rows, best], sse[rows, best]
    for _ in range(3):
        local, axes = _local_grid(axes, theta, 7)  # (R, K, p)
        local = np.clip(local, lo_b, hi_b)
        r_count, k_count, p = local.shape
        with np.errstate(over="ignore", invalid="ignore"):
            x = family.basis(n, local.reshape(-1, p)).reshape(r_count, k_count, -1)
        usable = np.isfinite(x).all(-1)
        a2, b2, s2 = weighted_offset_and_scale(
            np.where(usable[..., None], x, 1.0), e, w, a_max, family.has_offset
        )
        s2 = np.where(usable, s2, np.inf)
        k2 = s2.argmin(1)
        better = s2[rows, k2] < fit_sse
        theta = np.where(better[:, None], local[rows, k2], theta)
        fit_a = np.where(better, a2[rows, k2], fit_a)
        fit_b = np.where(better, b2[rows, k2], fit_b)
        fit_sse = np.where(better, s2[rows, k2], fit_sse)
    head = [fit_a, fit_b] if family.has_offset else [fit_b]
    return BatchFit(family, np.column_stack([*head, theta]), fit_sse)


@dataclass
class Noise:
    """The noise of a curve's seed means: standard errors per n (``se``), the degrees of freedom
    they rest on, and whether they were measured (False: one seed, taken from the fit)."""

    se: np.ndarray
    dof: float
    measured: bool


def log_sd_bias(seeds: np.ndarray | int) -> np.ndarray | float:
    """E[log s] - log sigma for the sample sd s of ``seeds`` normal draws (nu = seeds - 1):
    (digamma(nu/2) + log(2/nu)) / 2, about -0.29 (25% low) for 3 seeds, 0 as seeds grow."""
    nu = np.asarray(seeds, float) - 1
    return 0.5 * (special.digamma(nu / 2) + np.log(2 / nu))


def seed_noise(n: np.ndarray, sd: np.ndarray, seeds: np.ndarray) -> Noise:
    """Standard errors of the seed means at ``n`` from the seed standard deviations ``sd`` (NaN
    with one seed) smoothed across n: log sd fitted linearly in log n (a constant with fewer
    than 3 usable n), so no n gets a tiny weight from a lucky spread of 2-3 seeds. The fit in
    log sd is unbiased for the log's own bias (a sd from 3 seeds is on average 25% low in
    log scale, which a plain log fit would carry into every interval)."""
    usable = np.isfinite(sd) & (sd > 0) & (seeds > 1)
    if usable.sum() == 0:
        return Noise(np.full(len(n), np.nan), 0.0, False)
    log_n = np.log(n[usable])
    log_sd = np.log(sd[usable]) - log_sd_bias(seeds[usable])
    dof = float(np.sum(seeds[usable] - 1))
    if usable.sum() >= 3 and np.ptp(log_n) > 0:
        slope, icpt = np.polyfit(log_n, log_sd, 1)
        dof = max(dof - 2, 1.0)
    else:
        slope, icpt = 0.0, float(np.log(np.sqrt(np.mean(sd[usable] ** 2))))  # s^2: unbiased
        dof = max(dof - 1, 1.0)
    smooth = np.exp(icpt + slope * np.log(n))
    return Noise(smooth / np.sqrt(seeds), dof, True)


def n_star_batch(fit: BatchFit, target: float) -> np.ndarray:
    """(R,) n at which each replicate's fitted curve reaches ``target``: inf where it stays
    above it up to N_HIGH, N_LOW where it is below it from N_LOW on (bisection in log n)."""
    lo = np.full(len(fit.vectors), np.log(N_LOW))
    hi = np.full(len(fit.vectors), np.log(N_HIGH))
    ends = fit.predict([N_LOW, N_HIGH])
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        above = _predict_each(fit, np.exp(mid)) > target
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    out = np.exp(hi)
    out = np.where(ends[:, 1] > target, np.inf, out)
    return np.where(ends[:, 0] <= target, N_LOW, out)


def _predict_each(fit: BatchFit, n: np.ndarray) -> np.ndarray:
    """(R,) replicate r's fitted error at its own n[r] (the diagonal of every replicate's curve
    at every n: R^2 values, cheap next to a loop over replicates)."""
    family, v = fit.family, fit.vectors
    k = 1 if family.has_offset else 0
    offset = v[:, 0] if family.has_offset else 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        basis = np.diagonal(family.basis(n, v[:, k + 1 :]))
    return offset + v[:, k] * basis


@dataclass
class CurveModel:
    """A curve's averaged model: its families' central fits and weights, and bootstrap fits."""

    n: np.ndarray
    e: np.ndarray
    noise: Noise
    scale: float  # lack-of-fit factor on the standard errors (>= 1)
    weights: dict[str, float]
    central: dict[str, BatchFit]
    draws: Draws | None = None
    backtest: dict[str, float] = field(default_factory=dict)
    test_rows: bool = False  # the draws resample the test rows too (caulk.analysis.test_rows)

    @property
    def name(self) -> str:
        """``pow3`` for a single family, else ``avg(pow3 0.62, mmf4 0.30, ...)`` by weight."""
        used = sorted(self.weights.items(), key=lambda kv: -kv[1])
        if len(used) == 1:
            return used[0][0]
        return "avg(" + ", ".join(f"{k} {v:.2f}" for k, v in used) + ")"

    @property
    def short_name(self) -> str:
        """The families by weight, e.g. ``pow3+mmf4`` (a legend's width)."""
        return "+".join(sorted(self.weights, key=lambda f: -self.weights[f]))

    def predict(self, n) -> np.ndarray:
        """The averaged fitted error at ``n``."""
        n = np.atleast_1d(np.asarray(n, float))
        return sum(w * self.central[f].predict(n)[0] for f, w in self.weights.items())

    @property
    def asymptote(self) -> float:
        """The averaged curve's error as n grows without bound."""
        return float(sum(w * self.central[f].asymptotes()[0] for f, w in self.weights.items()))

    def rate(self, at: float | None = None) -> float:
        """The local rate -d log(e) / d log(n) of the averaged curve at ``at`` (default: the
        largest measured n): defined whatever the families, pow2's c for a pure power law."""
        at = float(self.n.max()) if at is None else at
        lo, hi = self.predict([at / 1.01, at * 1.01])
        return float(-(np.log(hi) - np.log(lo)) / (2 * np.log(1.01)))

    def n_star(self, target: float) -> float:
        """The n at which the averaged curve reaches ``target`` (inf: it levels off above it)."""
        if self.predict(N_HIGH)[0] > target:
            return float("inf")
        if self.predict(N_LOW)[0] <= target:
            return N_LOW
        lo, hi = np.log(N_LOW), np.log(N_HIGH)
        for _ in range(BISECTION_STEPS):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if self.predict(np.exp(mid))[0] > target else (lo, mid)
        return float(np.exp(hi))

    def n_star_draws(self, target: float) -> np.ndarray:
        """(R,) draws of n*(target) (inf where a replicate never reaches it; NaN: no draws)."""
        return self.draws.n_star(target) if self.draws else np.full(0, np.nan)

    def asymptote_draws(self) -> np.ndarray:
        """(R,) draws of the error the curve levels off at."""
        return self.draws.asymptotes() if self.draws else np.full(0, np.nan)

    def rate_draws(self, at: float | None = None) -> np.ndarray:
        """(R,) draws of the local rate at ``at`` (default: the largest measured n)."""
        at = float(self.n.max()) if at is None else at
        if not self.draws:
            return np.full(0, np.nan)
        lo, hi = (self.draws.predict(np.full(self.draws.count, x)) for x in (at / 1.01, at * 1.01))
        with np.errstate(divide="ignore", invalid="ignore"):
            return -(np.log(hi) - np.log(lo)) / (2 * np.log(1.01))


@dataclass
class Draws:
    """Bootstrap replicates of a curve's model: per family, R refits (``fits``), and per
    replicate the families' weights (R, F), recomputed on that replicate's data."""

    fits: dict[str, BatchFit]
    weights: np.ndarray

    @property
    def count(self) -> int:
        return len(self.weights)

    def __bool__(self) -> bool:
        return self.count > 0

    def predict(self, n: np.ndarray) -> np.ndarray:
        """(R,) replicate r's averaged curve at its own n[r]."""
        parts = [_predict_each(fit, n) for fit in self.fits.values()]
        with np.errstate(invalid="ignore"):
            return np.nansum(self.weights * np.column_stack(parts), axis=1)

    def asymptotes(self) -> np.ndarray:
        """(R,) each replicate's averaged floor."""
        parts = np.column_stack([fit.asymptotes() for fit in self.fits.values()])
        return np.sum(self.weights * parts, axis=1)

    def n_star(self, target: float) -> np.ndarray:
        """(R,) where each replicate's averaged curve first reaches ``target``: the first
        crossing on a grid of N_GRID log-spaced n over [N_LOW, N_HIGH], interpolated linearly
        in log n (inf where it stays above the target up to N_HIGH)."""
        grid = np.geomspace(N_LOW, N_HIGH, N_GRID)
        with np.errstate(invalid="ignore", over="ignore"):
            curves = sum(
                self.weights[:, j : j + 1] * np.nan_to_num(fit.predict(grid), nan=0.0)
                for j, fit in enumerate(self.fits.values())
            )
        below = curves <= target
        first = np.where(below.any(axis=1), below.argmax(axis=1), -1)
        rows = np.arange(self.count)
        i = np.clip(first, 1, N_GRID - 1)
        e0, e1 = curves[rows, i - 1], curves[rows, i]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.clip((e0 - target) / (e0 - e1), 0.0, 1.0)
        log_n = np.log(grid[i - 1]) + share * (np.log(grid[i]) - np.log(grid[i - 1]))
        out = np.where(first < 0, np.inf, np.exp(log_n))
        return np.where(first == 0, N_LOW, out)


def _params(family: Family) -> int:
    return len(family.names)


def _fit_one(family: Family, n, e, w) -> BatchFit:
    return fit_batch(family, n, np.asarray(e, float)[None], w)


def held_out(m: int) -> int:
    """How many of the largest n a backtest holds out: 1 below 6 distinct n, else 2."""
    return 1 if m < 6 else 2


def family_weights(
    n, data, se, families: dict[str, Family], full: dict[str, BatchFit], temper: float = 1.0
) -> tuple[np.ndarray, list[str], dict[str, float]]:
    """Weights (R, F) of the families ``full`` names, per row of ``data`` (R, m): the Gaussian
    likelihood (noise ``se``) of the held-out means of a backtest (refit without the largest n)
    times that of the ``full`` fit to all n, so a family must both extrapolate and fit.
    Log-likelihoods are divided by ``temper`` (the squared lack-of-fit factor of the best fit:
    a curve the seed noise does not explain spreads the weight); weights under MIN_WEIGHT are
    dropped. Families with too many parameters for the kept n sit the backtest out (only the fit
    to all n scores them). Also returns the first row's mean |held-out error| per family."""
    keep = np.arange(len(n)) < len(n) - held_out(len(n))
    names, loglik, scores = list(full), [], {}
    for name in names:
        fit = full[name]
        chi2 = np.sum((fit.predict(n) - data) ** 2 / se**2, axis=1)
        if _params(families[name]) <= keep.sum() - 1:
            held = fit_batch(families[name], n[keep], data[:, keep], 1 / se[keep] ** 2)
            miss = held.predict(n[~keep]) - data[:, ~keep]
            chi2 = chi2 + np.sum(miss**2 / se[~keep] ** 2, axis=1)
            scores[name] = float(np.mean(np.abs(miss[0])))
        loglik.append(-0.5 * chi2 / temper)
    loglik = np.nan_to_num(np.column_stack(loglik), nan=-np.inf)
    weights = np.exp(loglik - loglik.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    weights = np.where(weights >= MIN_WEIGHT, weights, 0.0)
    return weights / weights.sum(axis=1, keepdims=True), names, scores


def _lack_of_fit(fit: BatchFit, n, e, se) -> float:
    """sqrt(chi^2 / dof) of a fit against the seed noise, at least 1."""
    pred = fit.predict(n)[0]
    dof = len(n) - _params(fit.family)
    if dof < 1:
        return 1.0
    chi2 = float(np.sum((pred - e) ** 2 / se**2))
    return max(1.0, float(np.sqrt(chi2 / dof)))


def fit_curve_model(
    n,
    e,
    sd,
    seeds,
    family: str = "auto",
    replicates: int = 200,
    rng_seed: int = 0,
    shift: np.ndarray | None = None,
) -> CurveModel:
    """The averaged model of one curve (seed means ``e`` at distinct ``n``, seed sd ``sd`` and
    seed counts ``seeds`` per n): see the module doc. ``family``: ``auto`` averages every family,
    a family name uses that one alone. ``replicates``: bootstrap fits per family (0: none).
    ``shift``: (>= replicates, len(n)) moves of each replicate's data on top of its seed noise,
    in the order of ``n`` as given (the test-row resamples, :mod:`caulk.analysis.test_rows`)."""
    order = np.argsort(n)
    shift = None if shift is None else np.asarray(shift, float)[:, order]
    n, e = np.asarray(n, float)[order], np.asarray(e, float)[order]
    sd, seeds = np.asarray(sd, float)[order], np.asarray(seeds, float)[order]
    families = dict(FAMILIES) if family == "auto" else {family: _known(family)}
    if len(n) < min(_params(f) for f in families.values()):
        need = min(_params(f) for f in families.values())
        raise CaulkConfigError(f"need >= {need} distinct n to fit a curve, got {len(n)}")
    noise = seed_noise(n, sd, seeds)
    if not noise.measured:  # one seed: the residual scale of the best fit is the noise
        noise = _residual_noise(n, e, families)
    se = noise.se
    full = {
        f: _fit_one(fam, n, e, 1 / se**2) for f, fam in families.items() if _params(fam) <= len(n)
    }
    scale = min(_lack_of_fit(fit, n, e, se) for fit in full.values()) if noise.measured else 1.0
    weights, names, scores = family_weights(n, e[None], se, families, full, scale**2)
    chosen = {f: float(w) for f, w in zip(names, weights[0], strict=True) if w > 0}
    model = CurveModel(n, e, noise, scale, chosen, {f: full[f] for f in chosen}, backtest=scores)
    if replicates > 0 and noise.measured:
        model.draws = _bootstrap(model, families, replicates, rng_seed, shift)
        model.test_rows = shift is not None
    return model


def _residual_noise(n, e, families: dict[str, Family]) -> Noise:
    """One seed: the noise is the residual scale of the family that fits best (unweighted)."""
    best = np.inf
    for fam in families.values():
        dof = len(n) - _params(fam)
        if dof >= 1:
            fit = _fit_one(fam, n, e, np.ones(len(n)))
            best = min(best, float(np.sqrt(fit.sse[0] / dof)))
    level = max(best if np.isfinite(best) else float(np.std(e)), 1e-6)
    return Noise(np.full(len(n), level), 1.0, False)


def _known(family: str) -> Family:
    if family not in FAMILIES:
        raise CaulkConfigError(
            f"unknown curve family {family!r}; choose auto or one of {', '.join(FAMILIES)}"
        )
    return FAMILIES[family]


def _noise_at(n: np.ndarray, replicates: int, rng_seed: int) -> np.ndarray:
    """(replicates, len(n)) standard normals, each n's column from its own stream (seeded by
    ``rng_seed`` and n), so that a replicate's noise at an n stays the same when other n are
    added: refits on more points share their random numbers (common random numbers)."""
    columns = [
        np.random.default_rng([rng_seed, int(round(x))]).standard_normal(replicates) for x in n
    ]
    return np.column_stack(columns)


def _bootstrap(
    model: CurveModel, families, replicates: int, rng_seed: int, shift: np.ndarray | None = None
) -> Draws:
    """Replicates of the curve: its averaged line plus Gaussian noise of the (lack-of-fit
    scaled) standard errors, with one noise scale per replicate drawn from sigma-hat's own
    chi-square law (Student-t margins); every family refitted and reweighted on each (also
    those under MIN_WEIGHT on the data: leaving them out cost 4x-beyond coverage 0.97 -> 0.83
    in benchmarks/coverage.py's design)."""
    se = model.noise.se * model.scale
    dof = max(model.noise.dof, 1.0)
    uniform = np.random.default_rng(rng_seed).random((replicates, 1))
    spread = np.sqrt(dof / stats.chi2.ppf(uniform, dof))
    data = model.predict(model.n) + se * spread * _noise_at(model.n, replicates, rng_seed)
    if shift is not None:  # the test rows' own sampling error, shared across n
        data = data + shift[:replicates]
    usable = {f: fam for f, fam in families.items() if _params(fam) <= len(model.n)}
    full = {f: fit_batch(fam, model.n, data, 1 / se**2) for f, fam in usable.items()}
    weights, names, _ = family_weights(model.n, data, se, usable, full, 1.0)
    return Draws({f: full[f] for f in names}, weights)
