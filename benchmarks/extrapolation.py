"""Benchmark: caulk's n*(E) answers checked on real learning curves from LCDB 1.0.

    python benchmarks/extrapolation.py [--curves 50] [--seed 0] [--replicates 200]
                                       [--methods auto,pow4,mmf4,pow3] [--jobs 1]
                                       [--out result.json] [--smoke]

The curves: LCDB 1.0 (Mohr, Viering, Loog, van Rijn, "LCDB 1.0: An Extensive Learning Curves
Database for Classification Tasks", ECML-PKDD 2022; the ``lcdb`` package on PyPI, MIT,
``pip install -e '.[bench]'``): test accuracy vs training size of 20 scikit-learn learners on
~200 OpenML datasets. One curve is (openmlid, learner); error = 1 - score_test. The package's
``__init__`` imports modules it does not declare, so its CSV is found with ``find_spec`` and never
imported. The CSV (150 MB) is read once and cached, reduced to the columns used, as a parquet
under ``$CAULK_CACHE/lcdb`` (default ``~/.cache/caulk/lcdb``), keyed on the CSV's size and mtime.

Protocol, per curve drawn (a seeded permutation of all curves, walked until ``--curves`` curves
are usable, i.e. have a cut as below and at least one setting whose target is not trivial; the
unusable ones are counted by reason):

- seeds: the outer seed (LCDB's train/test split) is caulk's seed axis, the inner seeds (train/
  validation splits of the same outer training set, scored on the same test set) averaged within
  it. Runs that share an outer seed share the test set and most training examples, so they are
  not independent replicates; caulk's bootstrap resamples seeds as independent ones.
- cut = N_max / 8 (N_max the largest training size); caulk sees only the sizes <= cut (at least 4
  distinct sizes and 2 seeds there, else the curve is skipped as unusable).
- truth: the mean error over seeds per size on the full curve. Setting "4x" ("8x"): the target E
  is the truth at the anchor nearest 4x (8x) the cut in log n; the true n is the smallest anchor
  whose truth is <= E (curves are noisy and non-monotone, so this can be below that anchor). A
  target already reached at or below the cut (trivially inside the data) or equal to 0 (no error
  floor >= 0 reaches it) is skipped and counted.
- methods: ``sample_complexity(family=...)`` with caulk's default ``auto`` and the fixed pow4 and
  mmf4 (LCDB's best) and pow3. One call per curve and method (both targets in it): the targets
  differ per curve, and one batched call would invert every curve at every curve's targets
  (measured on 12 curves, 20 replicates: auto 9.2 s per curve vs 12.8 s batched; pow4 14.4 s
  vs 16.7 s, the gap growing with the curves).

Several ``--seed`` values (``--seed 0,1,2,3,4``) pool their samples: each seed's curves are drawn
as above and named ``seed/curve``.

Reports per setting and method: cases, median |log2(n*/true n)| over finite answers, the share
within 2x, the coverage of the 95% interval (true n in [lo, hi]; hi = inf covers anything >= lo)
over answers with an interval, the share answered "unreachable" (every target was reached by
construction) and the share "not determinable" (an abstention: NaN n*). The answer's ``status``
column is used when caulk gives one, else it is inferred (n* = inf: unreachable; NaN: not
determinable) and, of the finite answers, the share whose interval has no upper end ("no upper
end": the draws do not rule out a floor above E). Rows ``auto>4x`` and ``auto>16x`` score auto's
same answers as if every finite n* more than 4x (16x) the largest n seen with no upper end were
withheld as "at least lo": what withholding far answers (the answers issue's §4) buys in median
error and costs in abstentions. Goals (PASS/FAIL, never a non-zero exit): coverage >= 90% at 4x and >= 85% at 8x,
auto's median |log2| below every fixed family's, unreachable <= 2%, not determinable <= 25%.
Prints a markdown table and the JSON result line; ``--out r.json`` also writes it there and every
case's answer to ``r.cases.csv``. The default of 50 curves took 465 s on 2 busy cores (100
curves: 1,266 s); ``--jobs`` runs curves in parallel. ``--smoke``: 6 curves, 20 replicates
(seconds; the numbers mean nothing; the first run also builds the parquet cache, a few seconds).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

from benchmarks.common import int_list, parse_args, print_result, stamped
from caulk import provenance
from caulk.analysis.answers import sample_complexity

REPO = Path(__file__).resolve().parent.parent
SMOKE = {"curves": 6, "replicates": 20}
METHODS = ("auto", "pow4", "mmf4", "pow3")
SETTINGS = {"4x": 4.0, "8x": 8.0}
CUT = 8.0  # caulk sees n <= N_max / CUT
WITHHOLD = (4.0, 16.0)  # auto's answers also scored as if withheld beyond these factors
MIN_SIZES = 4
COLUMNS = {
    "openmlid": "int32",
    "learner": "category",
    "size_train": "int32",
    "outer_seed": "int16",
    "inner_seed": "int16",
    "score_test": "float32",
}
GOALS = {
    "coverage_4x": ">= 0.90",
    "coverage_8x": ">= 0.85",
    "auto_median_below_every_fixed_family": "per setting",
    "unreachable": "<= 0.02",
    "not_determinable": "<= 0.25",
}


def lcdb_csv() -> Path | None:
    """``database-accuracy.csv`` of the installed ``lcdb`` package, found without importing it
    (``import lcdb`` needs openml and func_timeout, which it does not declare); None if absent."""
    spec = importlib.util.find_spec("lcdb")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "database-accuracy.csv"
    return path if path.is_file() else None


def cache_dir() -> Path:
    return Path(os.environ.get("CAULK_CACHE", Path.home() / ".cache" / "caulk")) / "lcdb"


def load_lcdb(csv: Path) -> tuple[pd.DataFrame, dict]:
    """The CSV's used columns (from the parquet cache when it is current) and how it was read."""
    st = csv.stat()
    cached = cache_dir() / f"accuracy-{st.st_size}-{st.st_mtime_ns}.parquet"
    t0 = time.perf_counter()
    if cached.is_file():
        return pd.read_parquet(cached), {"source": "parquet cache", "load_s": _since(t0)}
    df = pd.read_csv(csv, usecols=list(COLUMNS), dtype=COLUMNS)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp{os.getpid()}")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, cached)  # atomic: a concurrent run never reads half a file
    return df, {"source": "csv (cache built)", "load_s": _since(t0)}


def _since(t0: float) -> float:
    return round(time.perf_counter() - t0, 2)


def seed_points(df: pd.DataFrame) -> pd.DataFrame:
    """Error per (curve, n, outer seed), the inner seeds averaged; ``curve`` = "openmlid/learner"."""
    pts = (
        df.assign(test_error=1.0 - df["score_test"].astype(float))
        .groupby(["openmlid", "learner", "size_train", "outer_seed"], observed=True)["test_error"]
        .mean()
        .reset_index()
        .rename(columns={"size_train": "n", "outer_seed": "seed"})
    )
    pts["curve"] = pts["openmlid"].astype(str) + "/" + pts["learner"].astype(str)
    return pts[["curve", "n", "seed", "test_error"]]


def nearest(anchors: np.ndarray, n: float) -> float:
    """The anchor nearest ``n`` in log n."""
    return float(anchors[np.argmin(np.abs(np.log(anchors) - np.log(n)))])


def make_case(pts: pd.DataFrame) -> tuple[dict | None, str]:
    """A curve's cut, the points caulk sees and each setting's target and true n; or None and why
    it is unusable. A setting whose target is trivial is kept as its skip reason."""
    truth = pts.groupby("n")["test_error"].mean()
    anchors = truth.index.to_numpy(float)
    cut = anchors.max() / CUT
    seen = pts[pts["n"] <= cut]
    if seen["n"].nunique() < MIN_SIZES:
        return None, "fewer_than_4_sizes_below_cut"
    if seen["seed"].nunique() < 2:
        return None, "fewer_than_2_seeds"
    case = {"cut": cut, "n_max": float(anchors.max()), "points": seen, "settings": {}}
    for name, factor in SETTINGS.items():
        anchor = nearest(anchors, factor * cut)
        target = float(truth.loc[anchor])
        true_n = float(anchors[truth.to_numpy() <= target].min())
        if target <= 0:
            case["settings"][name] = "target_error_0"
        elif true_n <= cut:
            case["settings"][name] = "reached_at_or_below_cut"
        else:
            case["settings"][name] = {"target": target, "true_n": true_n, "anchor": anchor}
    return case, ""


def draw_cases(pts: pd.DataFrame, curves: int, seed: int) -> tuple[dict, dict]:
    """The first ``curves`` usable curves of a seeded permutation of all curves (usable: a cut
    with enough points and at least one setting's target not trivial), and the counts of the
    curves skipped as unusable (and the number walked)."""
    by_curve = dict(tuple(pts.groupby("curve", sort=True)))
    order = np.random.default_rng(seed).permutation(sorted(by_curve))
    cases, skipped = {}, {"walked": 0}
    for name in order:
        if len(cases) == curves:
            break
        skipped["walked"] += 1
        case, why = make_case(by_curve[name])
        if case is not None and not any(isinstance(v, dict) for v in case["settings"].values()):
            case, why = None, "both_targets_trivial"
        if case is None:
            skipped[why] = skipped.get(why, 0) + 1
        else:
            cases[str(name)] = case
    return cases, skipped


def pooled_cases(pts: pd.DataFrame, curves: int, seeds: list[int]) -> tuple[dict, dict]:
    """:func:`draw_cases` per seed, pooled; with several seeds a curve is named ``seed/curve``
    (two samples may draw the same curve: each draw is a case of its own)."""
    cases, skipped = {}, {}
    for seed in seeds:
        drawn, why = draw_cases(pts, curves, seed)
        prefix = f"{seed}/" if len(seeds) > 1 else ""
        cases.update({prefix + name: case for name, case in drawn.items()})
        for k, v in why.items():
            skipped[k] = skipped.get(k, 0) + v
    return cases, skipped


def status_of(row: pd.Series) -> str:
    """ok / unreachable / not_determinable: caulk's ``status`` when it gives one, else inferred
    from n* (inf: unreachable; NaN: not determinable)."""
    status = row.get("status")
    if isinstance(status, str) and status:
        return status
    n_star = float(row["n_star"])
    if np.isnan(n_star):
        return "not_determinable"
    return "unreachable" if np.isinf(n_star) else "ok"


def answer(task: tuple) -> list[dict]:
    """caulk's answers for one curve and method: one row per setting with a target."""
    name, case, method, replicates = task
    settings = {k: v for k, v in case["settings"].items() if isinstance(v, dict)}
    targets = sorted({s["target"] for s in settings.values()})
    pts = case["points"].assign(curve=name)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = sample_complexity(
            pts, keys=["curve"], metric="test_error", targets=targets, family=method,
            replicates=replicates,
        )  # fmt: skip
    seconds = time.perf_counter() - t0
    rows = []
    for setting, s in settings.items():
        r = res[np.isclose(res["target"].astype(float), s["target"])].iloc[0]
        rows.append(
            {
                "curve": name,
                "setting": setting,
                "method": method,
                "target": s["target"],
                "true_n": s["true_n"],
                "cut": case["cut"],
                "n_max_seen": float(pts["n"].max()),
                "n_star": float(r["n_star"]),
                "lo": float(r["n_star_lo"]),
                "hi": float(r["n_star_hi"]),
                "status": status_of(r),
                "family": str(r["family"]),
                "note": str(r["note"]),
                "seconds": seconds / len(settings),
            }
        )
    return rows


def summarize(rows: pd.DataFrame) -> dict:
    """The metrics of one (setting, method)."""
    n = len(rows)
    ok = rows[np.isfinite(rows["n_star"]) & (rows["n_star"] > 0)]
    log2 = np.abs(np.log2(ok["n_star"] / ok["true_n"]))
    # "at least lo" (status at_least) is a one-sided bound, not an interval: not counted here
    has_ci = rows[rows["lo"].notna() & rows["hi"].notna() & (rows["status"] != "at_least")]
    covered = (has_ci["lo"] <= has_ci["true_n"]) & (has_ci["true_n"] <= has_ci["hi"])
    families = rows.loc[rows["family"] != "", "family"].value_counts().to_dict()
    return {
        "cases": n,
        "answered_finite": len(ok),
        "median_abs_log2": float(np.median(log2)) if len(ok) else float("nan"),
        "within_2x": float(np.mean(log2 <= 1)) if len(ok) else float("nan"),
        "with_interval": len(has_ci),
        "coverage": float(covered.mean()) if len(has_ci) else float("nan"),
        "unreachable": float(np.mean(rows["status"] == "unreachable")) if n else float("nan"),
        "not_determinable": float(np.mean(rows["status"] == "not_determinable"))
        if n
        else float("nan"),
        "at_least": float(np.mean(rows["status"] == "at_least")) if n else float("nan"),
        "unbounded_above": float(np.mean(np.isinf(ok["hi"]))) if len(ok) else float("nan"),
        "families": {k: int(v) for k, v in families.items()},
        "seconds": round(float(rows["seconds"].sum()), 2),
    }


def withheld(rows: pd.DataFrame, factor: float) -> pd.DataFrame:
    """auto's rows as if an n* more than ``factor`` times the largest n seen, whose interval has
    no upper end, were withheld as "at least lo" (method ``auto>{factor}x``): what that rule of
    the answers' §4 would buy and cost."""
    rows = rows[rows["method"] == "auto"].copy()
    wild = (rows["status"] == "ok") & np.isinf(rows["hi"])
    wild &= rows["n_star"] > factor * rows["n_max_seen"]
    rows.loc[wild, ["status", "n_star"]] = ["at_least", np.nan]
    return rows.assign(method=f"auto>{factor:g}x")


def paired_medians(rows: pd.DataFrame, methods: list[str]) -> dict:
    """Per setting and fixed family: median |log2(n*/truth)| of auto and of the family over the
    curves both answer with a finite n* (the plain medians are over different curves when one
    method abstains more)."""
    rows = rows.assign(log2=np.abs(np.log2(rows["n_star"] / rows["true_n"])))
    answered = rows[np.isfinite(rows["n_star"]) & (rows["n_star"] > 0)]
    out: dict = {}
    for setting in SETTINGS:
        here = answered[answered["setting"] == setting].pivot_table(
            index="curve", columns="method", values="log2"
        )
        for m in (m for m in methods if m != "auto" and m in here and "auto" in here):
            both = here[["auto", m]].dropna()
            out.setdefault(setting, {})[m] = {
                "cases": len(both),
                "auto": float(both["auto"].median()) if len(both) else float("nan"),
                m: float(both[m].median()) if len(both) else float("nan"),
            }
    return out


def goals(metrics: dict, methods: list[str]) -> dict[str, bool]:
    """Each goal of the issue: met or not (auto's numbers; the rates over every method)."""
    out = {}
    auto = {s: metrics[s].get("auto") for s in SETTINGS}
    if all(auto.values()):
        out["coverage_4x"] = auto["4x"]["coverage"] >= 0.90
        out["coverage_8x"] = auto["8x"]["coverage"] >= 0.85
        fixed = [m for m in methods if m != "auto"]
        out["auto_median_below_every_fixed_family"] = bool(fixed) and all(
            auto[s]["median_abs_log2"] < metrics[s][m]["median_abs_log2"]
            for s in SETTINGS
            for m in fixed
        )
        out["unreachable"] = all(auto[s]["unreachable"] <= 0.02 for s in SETTINGS)
        out["not_determinable"] = all(  # a lower bound alone gives no n*: it counts here too
            auto[s]["not_determinable"] + auto[s]["at_least"] <= 0.25 for s in SETTINGS
        )
    return out


def _pct(x: float) -> str:
    return f"{x:.0%}" if np.isfinite(x) else "-"


def table(metrics: dict) -> str:
    """The metrics as a markdown table (coverage: over the answers with an interval, counted)."""
    head = (
        "| setting | method | cases | median abs log2(n*/n) | within 2x | 95% coverage "
        "| unreachable | not determinable | at least | no upper end |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for setting, by_method in metrics.items():
        for method, m in by_method.items():
            lines.append(
                f"| {setting} | {method} | {m['cases']} | {m['median_abs_log2']:.2f} "
                f"| {_pct(m['within_2x'])} | {_pct(m['coverage'])} ({m['with_interval']}) "
                f"| {_pct(m['unreachable'])} | {_pct(m['not_determinable'])} "
                f"| {_pct(m['at_least'])} | {_pct(m['unbounded_above'])} |"
            )
    return "\n".join(lines)


def machine() -> dict:
    """Where it ran (``caulk.provenance.machine``), the git commit and lcdb's version."""
    try:
        lcdb = importlib.metadata.version("lcdb")
    except importlib.metadata.PackageNotFoundError:
        lcdb = "unknown"
    return {**provenance.machine(), "commit": provenance.git_commit(), "lcdb": lcdb}


def main() -> None:
    """Run the benchmark; print the table, the goals and the JSON result line."""
    p = argparse.ArgumentParser()
    p.add_argument("--curves", type=int, default=50, help="usable curves to check")
    p.add_argument(
        "--seed", type=int_list, default=[0],
        help="seed(s) of the curves' permutation; several (0,1,2) pool their samples",
    )  # fmt: skip
    p.add_argument("--replicates", type=int, default=200, help="bootstrap replicates")
    p.add_argument("--methods", default=",".join(METHODS), help="auto and/or families")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parse_args(p, SMOKE)
    methods = [m for m in args.methods.split(",") if m]
    csv = lcdb_csv()
    if csv is None:
        sys.exit("extrapolation.py needs LCDB's CSV: pip install -e '.[bench]' (the lcdb package)")
    t_start = time.perf_counter()
    df, load = load_lcdb(csv)
    pts = seed_points(df)
    cases, skipped = pooled_cases(pts, args.curves, args.seed)
    load["prepare_s"] = _since(t_start)
    tasks = [(name, c, m, args.replicates) for name, c in cases.items() for m in methods]
    t0 = time.perf_counter()
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(answer, tasks, chunksize=4))
    else:
        results = []
        for i, task in enumerate(tasks, 1):
            results.append(answer(task))
            if i % 40 == 0 or i == len(tasks):
                print(f"answered {i}/{len(tasks)} ({_since(t0)} s)", file=sys.stderr, flush=True)
    answers_s = _since(t0)
    rows = pd.DataFrame([r for rs in results for r in rs])
    variants = [withheld(rows, f) for f in WITHHOLD] if "auto" in methods else []
    shown = [*methods, *(v["method"].iloc[0] for v in variants if len(v))]
    every = pd.concat([rows, *variants])
    metrics = {
        s: {m: summarize(every[(every["setting"] == s) & (every["method"] == m)]) for m in shown}
        for s in SETTINGS
    }
    trivial = {
        s: {
            why: sum(c["settings"][s] == why for c in cases.values())
            for why in ("reached_at_or_below_cut", "target_error_0")
        }
        for s in SETTINGS
    }
    met = goals(metrics, methods)
    paired = paired_medians(rows, methods)
    print(table(metrics))
    for setting, by_method in paired.items():
        for m, v in by_method.items():
            print(
                f"{setting}: on the {v['cases']} curves both answer, median |log2| "
                f"auto {v['auto']:.2f} vs {m} {v[m]:.2f}"
            )
    for goal, ok in met.items():
        print(f"{'PASS' if ok else 'FAIL'} {goal} ({GOALS[goal]})")
    result = {
        "name": "extrapolation_lcdb",
        "curves": len(cases),
        "seed": args.seed,
        "replicates": args.replicates,
        "methods": methods,
        "cut": f"N_max/{CUT:g}",
        "seed_axis": "outer_seed (inner seeds averaged)",
        "skipped_curves": skipped,
        "skipped_trivial_targets": trivial,
        "metrics": metrics,
        "paired_medians": paired,
        "goals": {k: bool(v) for k, v in met.items()},
        "timing": {**load, "answers_s": answers_s, "total_s": _since(t_start)},
        "machine": {**machine(), "jobs": args.jobs},
    }
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        out = {**stamped(result), "smoke": args.smoke}
        args.out.write_text(json.dumps(out, indent=1) + "\n")
        rows.to_csv(args.out.with_suffix(".cases.csv"), index=False)  # every answer, per case
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
