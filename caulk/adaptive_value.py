"""The ``value`` rule of adaptive curves: of the candidate next points for an answer whose n*
interval is too wide, measure the ones expected to shrink that interval most per unit of cost.

- **Cost is measured**: each finished point's training seconds (``wall_time_s``) are fitted as
  ``fixed + per_example * n`` (non-negative least squares, ``scipy.optimize.nnls``), so a cached
  probe comes out flat in n and a LoRA curve's cost grows with n. With no seconds recorded every
  point costs the same.
- **Shrink is predicted** by refitting on fantasised outcomes, under three scenarios: the
  bootstrap curves whose n* sits low, in the middle and high in the current draws. Under each,
  the candidate's points take that curve's error at their n, spread by the curve's seed noise
  there (the measured seed spread, smoothed in log n as the analysis does) at the normal
  quantiles of their seeds, scaled to a typical sample spread of that many seeds so that the
  refit's noise model reads back the predicted noise, neither more nor less: a candidate adds
  leverage and degrees of freedom but no luck, and a point that tells the scenarios apart is
  worth more than one they agree on. The expected
  shrink is the mean over the scenarios of log(n*_hi / n*_lo) now minus after, refitted by the
  analysis' own model (``caulk.adaptive.fit_answers``, common random numbers throughout).
- Candidates: a new n at n*, at either end of its interval, at both ends, halfway (in log)
  between the measured n that the interval spans, and more seeds at the measured n nearest n*.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import optimize, stats

from caulk.analysis.averaging import CurveModel, log_sd_bias, seed_noise

#: bootstrap replicates of each fantasy refit (fewer than the answers' own: only compared)
FANTASY_REPLICATES = 60


@dataclass(frozen=True)
class CostModel:
    """Seconds a point of n examples is expected to cost: ``fixed + per_example * n``."""

    fixed: float
    per_example: float
    measured: bool

    def __call__(self, n: float) -> float:
        return self.fixed + self.per_example * n

    def text(self) -> str:
        """``cost 2.1 s + 0.004 s/example`` (or that nothing was measured)."""
        if not self.measured:
            return "no cost measured: every point counts the same"
        fixed = self.fixed if self.fixed > 1e-9 else 0.0
        return f"cost {fixed:.3g} s + {self.per_example:.3g} s/example"


def cost_model(records: list[dict]) -> CostModel:
    """The cost model fitted to the ok records' training seconds (see the module doc)."""
    rows = [
        (float(r["n"]), float(r["wall_time_s"]))
        for r in records
        if r.get("status") == "ok" and (r.get("wall_time_s") or 0) > 0
    ]
    if not rows:
        return CostModel(1.0, 0.0, False)
    n, seconds = np.array(rows).T
    if len(set(n)) < 2:
        return CostModel(float(seconds.mean()), 0.0, True)
    (fixed, per_example), _ = optimize.nnls(np.column_stack([np.ones_like(n), n]), seconds)
    if fixed + per_example * n.min() <= 0:
        return CostModel(float(seconds.mean()), 0.0, True)
    return CostModel(float(fixed), float(per_example), True)


def seed_sd_at(records: list[dict], ns: list[int]) -> np.ndarray:
    """The curve's seed standard deviation at ``ns``: the measured spread per n, smoothed and
    extended in log n as :func:`caulk.analysis.averaging.seed_noise` does."""
    ok = pd.DataFrame([r for r in records if r.get("status") == "ok"])
    per_n = ok.groupby("n")["test_error"].agg(["std", "count"])
    n = np.concatenate([per_n.index.to_numpy(float), np.asarray(ns, float)])
    sd = np.concatenate([per_n["std"].to_numpy(float), np.full(len(ns), np.nan)])
    seeds = np.concatenate([per_n["count"].to_numpy(float), np.ones(len(ns))])
    noise = seed_noise(n, sd, seeds)
    if not noise.measured:
        return np.full(len(ns), float(np.std(ok["test_error"])))
    return noise.se[len(per_n) :]


def fantasy(
    predict: Callable[[float], float], records: list[dict], points: list[tuple[int, int]]
) -> list[dict]:
    """Records for ``points`` as the model expects them: the averaged error at each n plus the
    seed noise there at the normal quantiles of that n's new seeds, spread as a sample of that
    many seeds typically is (``log_sd_bias``: 25% below the sd for 3 seeds), which the noise
    model's unbiasing turns back into the predicted sd."""
    by_n: dict[int, list[int]] = {}
    for n, seed in points:
        by_n.setdefault(n, []).append(seed)
    ns = sorted(by_n)
    sds = seed_sd_at(records, ns)
    out = []
    for n, sd in zip(ns, sds, strict=True):
        seeds = by_n[n]
        z = stats.norm.ppf((np.arange(len(seeds)) + 0.5) / len(seeds))
        if len(seeds) > 1:
            z = z / z.std(ddof=1) * math.exp(log_sd_bias(len(seeds)))
        mean = predict(n)
        out += [
            {"n": n, "seed": s, "status": "ok", "test_error": mean + sd * q}
            for s, q in zip(seeds, z, strict=True)
        ]
    return out


def log_width(answer: dict, cap: float) -> float:
    """log(n*_hi / n*_lo) of an answer, its ends clipped to [1, ``cap``] (an open end counts as
    reaching the cap), so that widths of open intervals compare."""
    lo, hi = answer.get("n_star_lo"), answer.get("n_star_hi")
    lo = 1.0 if lo is None or not np.isfinite(lo) else min(max(lo, 1.0), cap)
    hi = cap if hi is None or not np.isfinite(hi) else min(max(hi, 1.0), cap)
    return math.log(hi / lo) if hi > lo else 0.0


#: the quantiles of the n* draws whose curves are the scenarios a candidate is fantasised under
SCENARIO_QUANTILES = (0.1, 0.5, 0.9)


def scenarios(model: CurveModel, target: float) -> list[Callable[[float], float]]:
    """The curves a candidate's outcome is fantasised under: the bootstrap replicates whose
    n*(``target``) sits at ``SCENARIO_QUANTILES`` of the draws ("what if the truth were at the
    low end, the middle, the high end of the interval"), so a point that would tell them apart
    is worth more; the averaged line alone where the model has no draws."""
    draws = model.n_star_draws(target)
    finite = np.flatnonzero(np.isfinite(draws))
    if not model.draws or len(finite) < len(SCENARIO_QUANTILES):
        return [lambda n: float(model.predict(n)[0])]
    order = finite[np.argsort(draws[finite])]
    picks = [order[int(q * (len(order) - 1))] for q in SCENARIO_QUANTILES]
    count = model.draws.count
    return [lambda n, r=r: float(model.draws.predict(np.full(count, float(n)))[r]) for r in picks]
