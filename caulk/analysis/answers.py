"""Sample-complexity answers: n*(E), the examples a curve needs to reach error E, and the ratio
n*(baseline) / n*(curve) between two curves, each with a 95% interval.

Every answer comes from the curve's averaged model (:mod:`caulk.analysis.averaging`): n* is
where the model's line reaches E, and the interval is the 2.5% and 97.5% quantiles of the
model's draws, which carry the seed noise, the lack of fit and the uncertainty about the curve
family. A ratio's draws pair independent draws of the two curves. An answer is one of:

- ``ok``: n* is finite (its interval may still reach infinity: "at least lo");
- ``unreachable``: the line levels off above E and so does 97.5% of the draws' floors;
- ``at_least``: the line levels off above E, but the floor's interval reaches below E and more
  than 2.5% of the draws reach E: no estimate, only the lower bound ``n_star_lo`` (the draws'
  2.5% quantile; ``n_star_hi`` is inf): "at least lo examples";
- ``not_determinable``: as ``at_least``, but almost no draw reaches E: these points cannot
  tell, and no n* is given.

An n* more than ``max_extrapolation`` times the largest measured n (default 4) is answered,
flagged (``beyond_limit``) and said in every surface: its interval holds the family spread, the
largest source of error there (the curve families of LCDB disagree most where they extrapolate).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from caulk.analysis.averaging import CurveModel, n_star_batch
from caulk.analysis.labels import curve_label, varying_keys
from caulk.analysis.models import curve_models
from caulk.errors import CaulkConfigError

INTERVALS = (
    "95%: quantiles of the averaged model's draws (each curve family weighted by its backtest, "
    "a parametric bootstrap of the seed noise scaled by the lack of fit, refitted per family; "
    "where the records keep their per-row test outcomes, the test rows resampled too, one "
    "resample shared by the curves on that test split); "
    "per-n bands: Student-t over seeds; pow3 a, b, c in fits.csv: plain bootstrap percentile"
)
#: an n* beyond this many times the largest measured n is flagged (``--max-extrapolation``)
MAX_EXTRAPOLATION = 4.0
ANSWER_COLUMNS = [
    "target",
    "n_star",
    "n_star_lo",
    "n_star_hi",
    "status",
    "extrapolated",
    "extrapolation",
    "beyond_limit",
    "family",
    "family_n_star",
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


def interval(draws: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of ``draws`` (NaN dropped; inf kept: the inverted CDF, so
    an infinite share above the upper tail gives an infinite bound rather than NaN)."""
    draws = np.asarray(draws, float)
    draws = draws[~np.isnan(draws)]
    if len(draws) < 2:
        return float("nan"), float("nan")
    tail = (1 - level) / 2
    lo, hi = np.quantile(draws, [tail, 1 - tail], method="inverted_cdf")
    return float(lo), float(hi)


def _how_far(n_star: float, n_min: float, n_max: float) -> float:
    """How many times beyond the measured n range n* lies (1 inside it)."""
    if n_star > n_max:
        return n_star / n_max
    if n_star < n_min:
        return n_min / n_star if n_star > 0 else float("inf")
    return 1.0


def _family_spread(model: CurveModel, target: float) -> str:
    """Each family's own n*, e.g. ``pow3 520, mmf4 inf``: how much the answer rests on it."""
    parts = []
    for f in sorted(model.weights, key=lambda k: -model.weights[k]):
        value = float(n_star_batch(model.central[f], target)[0])
        parts.append(f"{f} {'inf' if not np.isfinite(value) else f'{value:,.0f}'}")
    return ", ".join(parts)


def _status(model: CurveModel, n_star: float, target: float, draws_lo: float) -> tuple[str, str]:
    """``ok``, ``unreachable``, ``at_least`` or ``not_determinable``, and the note that says
    why; ``draws_lo``: the 2.5% quantile of the draws' n* (inf where they do not reach E)."""
    if np.isfinite(n_star):
        return "ok", ""
    lo, hi = interval(model.asymptote_draws())
    floor = f"the curve levels off at {model.asymptote:.3g} (95% interval [{lo:.3g}, {hi:.3g}])"
    if lo > target:
        return "unreachable", f"unreachable: {floor}, above the target"
    if np.isfinite(draws_lo):
        return "at_least", (
            f"at least {draws_lo:,.0f}, no estimate: {floor}, which does not rule the target "
            "out; measure larger n"
        )
    return "not_determinable", (
        f"not determinable from these points: {floor}, which does not rule the target out; "
        "measure larger n"
    )


def _answer(model: CurveModel, base: dict, target: float, limit: float) -> dict:
    """One (curve, target) answer row (see the module doc)."""
    n_star = model.n_star(target)
    draws = model.n_star_draws(target)
    lo, hi = interval(draws)
    status, note = _status(model, n_star, target, lo)
    if status == "ok" and np.isfinite(lo):
        lo, hi = min(lo, n_star), max(hi, n_star)
    far = _how_far(n_star, base["n_min_measured"], base["n_max_measured"])
    beyond = bool(np.isfinite(n_star) and far > limit)
    if status == "ok" and far > 1:
        where = "the largest" if n_star > base["n_max_measured"] else "below the smallest"
        note = f"extrapolated: n* is {far:.3g}x {where} n measured"
        note += f" (over the {limit:g}x limit)" if beyond else ""
    if not model.noise.measured:  # one seed: the noise of a point is unknown
        note = "; ".join(x for x in (note, "one seed: no interval") if x)
        lo = hi = np.nan
    if status != "ok":
        n_star, lo, hi = {
            "unreachable": (float("inf"), np.nan, np.nan),
            "at_least": (np.nan, lo, float("inf")),
        }.get(status, (np.nan,) * 3)
    return dict(
        base,
        target=target,
        n_star=n_star,
        n_star_lo=lo,
        n_star_hi=hi,
        status=status,
        extrapolated=bool(target < base["err_min_measured"] or target > base["err_max_measured"]),
        extrapolation=far,
        beyond_limit=beyond,
        family=model.name,
        family_n_star=_family_spread(model, target),
        replicates=model.draws.count if model.draws else 0,
        note=note,
        draws=draws,
    )


def _curve_answers(pts, metric, targets, model: CurveModel | str, limit) -> list[dict]:
    """The answer rows of one curve (one per target); ``model``: its model, or why it has none."""
    means = pts.groupby("n")[metric].mean()
    base = {
        "seeds": int(pts["seed"].nunique()),
        "n_min_measured": float(means.index.min()),
        "n_max_measured": float(means.index.max()),
        "err_min_measured": float(means.min()),
        "err_max_measured": float(means.max()),
    }
    if isinstance(model, str):
        return [
            dict(base, target=t, n_star=np.nan, status="not_determinable", family="", note=model)
            for t in targets
        ]
    return [_answer(model, base, t, limit) for t in targets]


def sample_complexity(
    points: pd.DataFrame,
    keys: list[str],
    metric: str,
    targets: list[float],
    family: str = "auto",
    replicates: int = 200,
    rng_seed: int = 0,
    max_extrapolation: float = MAX_EXTRAPOLATION,
    models: dict[tuple, CurveModel | str] | None = None,
) -> pd.DataFrame:
    """Per curve and target error E: n*(E) of the curve's averaged model (``family="auto"``)
    or of one family, its 95% interval, its ``status`` (see the module doc), whether E lies
    outside the measured errors (``extrapolated``), how many times beyond the measured n range
    n* is (``extrapolation``) and whether that is over ``max_extrapolation`` (``beyond_limit``),
    the model's name (``family``) and each family's own n* (``family_n_star``). The ``draws``
    column holds each row's draws of n* for :func:`ratios`. ``models``: the curves' models
    (:func:`caulk.analysis.models.curve_models`), else they are built here."""
    if models is None:
        models = curve_models(points, keys, metric, family, replicates, rng_seed)
    rows = []
    for group, pts in points.groupby(keys, dropna=False, sort=True):
        group = group if isinstance(group, tuple) else (group,)
        answers = _curve_answers(pts, metric, targets, models[group], max_extrapolation)
        names = dict(zip(keys, group, strict=True))
        if "peft_knob" in pts and "peft_knob" not in names:  # "rank=8", as the legend says
            names["peft_knob"] = pts["peft_knob"].iloc[0]
        rows += [{**names, **r} for r in answers]
    knob = ["peft_knob"] if any("peft_knob" in r for r in rows) and "peft_knob" not in keys else []
    return pd.DataFrame(rows).reindex(columns=[*keys, *knob, *ANSWER_COLUMNS, "draws"])


def _curve_name(row: pd.Series, shown: list[str]) -> str:
    """The curve's name as the report and the figures write it: ``vit_pico · lora · rank=8``."""
    return curve_label(row.to_dict(), shown)


def _baseline_of(curve: pd.Series, base: pd.DataFrame, free: list[str]) -> pd.DataFrame:
    """The baseline rows that agree with ``curve`` on every key the selector does not fix."""
    same = pd.Series(True, index=base.index)
    for k in free:
        same &= base[k].astype(str) == str(curve[k])
    return base[same]


def ratios(
    answers: pd.DataFrame, keys: list[str], baseline: dict[str, str], level: float = 0.95
) -> pd.DataFrame:
    """Per curve and target: n*(baseline) / n*(curve) with an interval from the two curves'
    draws taken in pairs (> 1:
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
    shown = varying_keys(answers, keys)
    knob = ["peft_knob"] if "peft_knob" in answers and "peft_knob" not in keys else []
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
        lo, hi = interval(paired, level) if len(paired) else (np.nan, np.nan)
        rows.append(
            {
                **{k: row[k] for k in [*keys, *knob]},
                "baseline": _curve_name(ref, shown),
                "target": row["target"],
                "ratio": float(ratio),
                "ratio_lo": lo,
                "ratio_hi": hi,
                "extrapolated": bool(row["extrapolated"] or ref["extrapolated"]),
            }
        )
    cols = [*keys, *knob, "baseline", "target", "ratio", "ratio_lo", "ratio_hi", "extrapolated"]
    return pd.DataFrame(rows, columns=cols)


def _selector_text(selector: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


def _count(n: float) -> str:
    if pd.isna(n):
        return "-"
    return "inf" if not np.isfinite(n) else f"{n:,.0f}"


def answer_lines(answers: pd.DataFrame, ratio_table: pd.DataFrame, keys: list[str]) -> list[str]:
    """The answers in plain words, e.g. ``vit_pico linear: n*(0.20) = 310 [240, 420]`` and
    ``vit_nano linear needs 2.3x [1.8, 2.9] fewer examples than vit_pico linear for error 0.20``."""
    shown = varying_keys(answers, keys)
    lines = []
    for _, r in answers.iterrows():
        ci = f" [{_count(r['n_star_lo'])}, {_count(r['n_star_hi'])}]"
        ci = ci if pd.notna(r["n_star_lo"]) and np.isfinite(r["n_star_lo"]) else ""
        note = f" ({r['note']})" if isinstance(r["note"], str) and r["note"] else ""
        value = f"= {_count(r['n_star'])}{ci}"
        if r.get("status") == "at_least":
            value, ci = f">= {_count(r['n_star_lo'])}", ""
        lines.append(
            f"{_curve_name(r, shown)}: n*({r['target']:.2f}) {value} [{r['family']}]{note}"
        )
    for _, r in ratio_table.iterrows():
        if not 0 < r["ratio"] < np.inf:
            lines.append(
                f"{_curve_name(r, shown)} vs {r['baseline']} for error {r['target']:.2f}: "
                "no ratio (an n* is unreachable or zero)"
            )
            continue
        more = r["ratio"] < 1
        with np.errstate(divide="ignore"):
            inv = (lambda v: np.float64(1.0) / v) if more else np.float64
            lo, hi = sorted((inv(r["ratio_lo"]), inv(r["ratio_hi"])))
        ci = f" [{lo:.2g}, {hi:.2g}]" if np.isfinite(lo) and np.isfinite(hi) else ""
        lines.append(
            f"{_curve_name(r, shown)} needs {inv(r['ratio']):.2g}x{ci} "
            f"{'more' if more else 'fewer'} examples than {r['baseline']} for error "
            f"{r['target']:.2f}" + (" (extrapolated)" if r["extrapolated"] else "")
        )
    return lines
