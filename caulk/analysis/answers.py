"""Sample-complexity answers: n*(E), the examples a curve needs to reach error E, and the ratio
n*(baseline) / n*(curve) between two curves, each with a bootstrap interval over seeds.

Intervals: 95% expanded bootstrap percentile over seeds. A replicate draws seed labels with
replacement (as many as there are seeds in the sweep), takes each n's mean over the drawn seeds,
refits the curve's family and inverts it; the same draws serve every curve, so a ratio's
replicates are paired. A plain percentile interval over k seeds is too narrow (it acts as if
the spread were known and divides by k, not k - 1), so the percentiles are expanded as in
Hesterberg (2015, "What teachers should know about the bootstrap", Am. Stat. 69(4), sec. 6):
the tail probability a' solves Phi^-1(1 - a') = sqrt(k / (k - 1)) t_{k-1, 1 - a/2} (with k = 3
seeds that is the min and max of the draws; with 8, the 0.6% and 99.4% points). Percentiles use
the inverted CDF (no interpolation), so a replicate whose target is out of reach (n* = inf)
gives an infinite bound rather than NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from caulk.analysis.families import fit_family, held_out_noise, resolve_family
from caulk.errors import CaulkConfigError

INTERVALS = (
    "95% expanded bootstrap percentile over seeds (Hesterberg 2015: tail level from "
    "sqrt(k/(k-1)) t_(k-1) for k seeds; seed labels resampled with replacement, the same draws "
    "for every curve, each replicate refits the curve's family); per-n bands: Student-t over "
    "seeds; pow3 a, b, c in fits.csv: plain bootstrap percentile"
)
ANSWER_COLUMNS = [
    "target",
    "n_star",
    "n_star_lo",
    "n_star_hi",
    "extrapolated",
    "extrapolation",
    "family",
    "n_min_measured",
    "n_max_measured",
    "seeds",
    "err_min_measured",
    "err_max_measured",
    "replicates",
    "note",
]


def parse_targets(text: str | None) -> list[float]:
    """``"0.2,0.1"`` -> [0.2, 0.1]: each target error must be a number in (0, 1)."""
    if not text:
        return []
    targets = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        try:
            value = float(item)
        except ValueError:
            raise CaulkConfigError(
                f"--target-error takes errors in (0, 1) like 0.2,0.1, got {item!r}"
            ) from None
        if not 0 < value < 1:
            raise CaulkConfigError(f"--target-error {item} is not an error in (0, 1)")
        targets.append(value)
    return targets


def expanded_tail(level: float, seeds: int) -> float:
    """The tail probability a' of Hesterberg's expanded percentile interval over ``seeds``
    seeds: Phi^-1(1 - a') = sqrt(k / (k - 1)) t_{k-1, (1 + level) / 2}."""
    z = np.sqrt(seeds / (seeds - 1)) * stats.t.ppf((1 + level) / 2, seeds - 1)
    return float(stats.norm.sf(z))


def _quantiles(values: np.ndarray, level: float, seeds: int) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if len(values) < 2 or seeds < 2:
        return float("nan"), float("nan")
    tail = expanded_tail(level, seeds)
    q = np.quantile(values, [tail, 1 - tail], method="inverted_cdf")
    return float(q[0]), float(q[1])


def seed_draws(seeds, replicates: int, rng_seed: int = 0) -> list[np.ndarray]:
    """``replicates`` resamples (with replacement) of the seed labels, shared by every curve."""
    seeds = np.unique(np.asarray(seeds))
    rng = np.random.default_rng(rng_seed)
    return [rng.choice(seeds, size=len(seeds), replace=True) for _ in range(replicates)]


def _replicate_n_star(pivot, draws, family: str, targets: list[float]) -> np.ndarray:
    """(replicates, targets) n* refitted on each draw's seed means (NaN where a fit fails)."""
    out = np.full((len(draws), len(targets)), np.nan)
    for r, draw in enumerate(draws):
        means = pivot.reindex(draw).mean(axis=0, skipna=True).dropna()
        try:
            fit = fit_family(family, means.index.to_numpy(float), means.to_numpy(float))
        except CaulkConfigError:
            continue
        out[r] = [fit.n_star(t) for t in targets]
    return out


def _how_far(n_star: float, n_min: float, n_max: float) -> float:
    """How many times beyond the measured n range n* lies (1 inside it)."""
    if n_star > n_max:
        return n_star / n_max
    if n_star < n_min:
        return n_min / n_star if n_star > 0 else float("inf")
    return 1.0


def _note(n_star: float, extrapolation: float, asymptote: float, n_max: float) -> str:
    if np.isinf(n_star):
        return f"unreachable: the fitted curve levels off at {asymptote:.4g}, not below the target"
    if extrapolation > 1:
        where = "the largest" if n_star > n_max else "below the smallest"
        return f"extrapolated: n* is {extrapolation:.3g}x {where} n measured"
    return ""


def _curve_answers(pts, metric, targets, family, draws, level) -> list[dict]:
    """The answer rows of one curve (one per target); replicate n* in ``draws``."""
    means = pts.groupby("n")[metric].mean()
    n, e = means.index.to_numpy(float), means.to_numpy(float)
    base = {
        "seeds": int(pts["seed"].nunique()),
        "n_min_measured": float(n.min()),
        "n_max_measured": float(n.max()),
        "err_min_measured": float(e.min()),
        "err_max_measured": float(e.max()),
    }
    try:
        name, _ = resolve_family(family, n, e, held_out_noise(pts, metric))
        fit = fit_family(name, n, e)
    except CaulkConfigError as err:
        return [dict(base, target=t, n_star=np.nan, family="", note=str(err)) for t in targets]
    pivot = pts.pivot_table(index="seed", columns="n", values=metric, aggfunc="mean")
    reps = _replicate_n_star(pivot, draws, name, targets) if pivot.shape[0] > 1 else None
    rows = []
    for j, target in enumerate(targets):
        n_star = fit.n_star(target)
        draws_j = reps[:, j] if reps is not None else np.full(0, np.nan)
        lo, hi = _quantiles(draws_j, level, pivot.shape[0])
        far = _how_far(n_star, base["n_min_measured"], base["n_max_measured"])
        note = _note(n_star, far, fit.asymptote, base["n_max_measured"])
        rows.append(
            dict(
                base,
                target=target,
                n_star=n_star,
                n_star_lo=lo,
                n_star_hi=hi,
                extrapolated=bool(target < e.min() or target > e.max()),
                extrapolation=far,
                family=name,
                replicates=int(np.sum(~np.isnan(draws_j))),
                note=note if reps is not None else (note + "; one seed: no interval").lstrip("; "),
                draws=draws_j,
            )
        )
    return rows


def sample_complexity(
    points: pd.DataFrame,
    keys: list[str],
    metric: str,
    targets: list[float],
    family: str = "auto",
    replicates: int = 200,
    rng_seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per curve and target error E: n*(E) on the curve's family fitted to the seed means,
    its bootstrap interval (see the module doc), whether E lies outside the measured errors
    (``extrapolated``) and how many times beyond the measured n range n* is (``extrapolation``);
    n* = inf when E is at or below the fitted asymptote (said in ``note``). The ``draws``
    column holds each row's replicate n* (paired across curves by index) for :func:`ratios`."""
    draws = seed_draws(points["seed"], replicates, rng_seed)
    rows = []
    for group, pts in points.groupby(keys, dropna=False, sort=True):
        group_row = dict(zip(keys, group if isinstance(group, tuple) else (group,), strict=True))
        rows += [
            {**group_row, **r} for r in _curve_answers(pts, metric, targets, family, draws, level)
        ]
    return pd.DataFrame(rows).reindex(columns=[*keys, *ANSWER_COLUMNS, "draws"])


def _curve_name(row: pd.Series, keys: list[str]) -> str:
    return " ".join(str(row[k]) for k in keys)


def _baseline_of(curve: pd.Series, base: pd.DataFrame, free: list[str]) -> pd.DataFrame:
    """The baseline rows that agree with ``curve`` on every key the selector does not fix."""
    same = pd.Series(True, index=base.index)
    for k in free:
        same &= base[k].astype(str) == str(curve[k])
    return base[same]


def ratios(
    answers: pd.DataFrame, keys: list[str], baseline: dict[str, str], level: float = 0.95
) -> pd.DataFrame:
    """Per curve and target: n*(baseline) / n*(curve) with a paired bootstrap interval (> 1:
    the curve needs that many times fewer examples). A curve's baseline is the curve the
    selector matches that agrees with it on every other key (so ``model=vit_pico`` compares
    each peft with vit_pico's same peft); curves without exactly one such baseline are left out."""
    unknown = [k for k in baseline if k not in keys]
    if unknown:
        raise CaulkConfigError(f"--baseline key {unknown[0]!r} is not a curve key ({keys})")
    is_base = pd.Series(True, index=answers.index)
    for k, v in baseline.items():
        is_base &= answers[k].astype(str) == v
    if not is_base.any():
        raise CaulkConfigError(f"--baseline {_selector_text(baseline)} matches no curve")
    free = [k for k in keys if k not in baseline]
    rows = []
    for _, row in answers[~is_base].iterrows():
        ref = _baseline_of(row, answers[is_base], free)
        ref = ref[ref["target"] == row["target"]]
        if len(ref) != 1:
            continue
        ref = ref.iloc[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = ref["n_star"] / row["n_star"]
            paired = np.asarray(ref["draws"], float) / np.asarray(row["draws"], float)
        seeds = min(int(row["seeds"]), int(ref["seeds"]))
        lo, hi = _quantiles(paired, level, seeds) if len(paired) else (np.nan, np.nan)
        rows.append(
            {
                **{k: row[k] for k in keys},
                "baseline": _curve_name(ref, keys),
                "target": row["target"],
                "ratio": float(ratio),
                "ratio_lo": lo,
                "ratio_hi": hi,
                "extrapolated": bool(row["extrapolated"] or ref["extrapolated"]),
            }
        )
    cols = [*keys, "baseline", "target", "ratio", "ratio_lo", "ratio_hi", "extrapolated"]
    return pd.DataFrame(rows, columns=cols)


def _selector_text(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


def _count(n: float) -> str:
    return "inf" if not np.isfinite(n) else f"{n:,.0f}"


def answer_lines(answers: pd.DataFrame, ratio_table: pd.DataFrame, keys: list[str]) -> list[str]:
    """The answers in plain words, e.g. ``vit_pico linear: n*(0.20) = 310 [240, 420]`` and
    ``vit_nano linear needs 2.3x [1.8, 2.9] fewer examples than vit_pico linear for error 0.20``."""
    lines = []
    for _, r in answers.iterrows():
        ci = f" [{_count(r['n_star_lo'])}, {_count(r['n_star_hi'])}]"
        ci = ci if np.isfinite(r["n_star_lo"]) else ""
        note = f" ({r['note']})" if isinstance(r["note"], str) and r["note"] else ""
        lines.append(
            f"{_curve_name(r, keys)}: n*({r['target']:.2f}) = {_count(r['n_star'])}{ci}"
            f" [{r['family']}]{note}"
        )
    for _, r in ratio_table.iterrows():
        if not 0 < r["ratio"] < np.inf:
            lines.append(
                f"{_curve_name(r, keys)} vs {r['baseline']} for error {r['target']:.2f}: "
                "no ratio (an n* is unreachable or zero)"
            )
            continue
        more = r["ratio"] < 1
        with np.errstate(divide="ignore"):
            inv = (lambda v: np.float64(1.0) / v) if more else np.float64
            lo, hi = sorted((inv(r["ratio_lo"]), inv(r["ratio_hi"])))
        ci = f" [{lo:.2g}, {hi:.2g}]" if np.isfinite(lo) and np.isfinite(hi) else ""
        lines.append(
            f"{_curve_name(r, keys)} needs {inv(r['ratio']):.2g}x{ci} "
            f"{'more' if more else 'fewer'} examples than {r['baseline']} for error "
            f"{r['target']:.2f}" + (" (extrapolated)" if r["extrapolated"] else "")
        )
    return lines
