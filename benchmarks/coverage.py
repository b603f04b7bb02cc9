"""Benchmark: do caulk's "95%" n* intervals cover the truth about 95% of the time?

    python benchmarks/coverage.py [--trials 40] [--seeds 3,5,10] [--replicates 200]
                                  [--families auto] [--out result.json] [--smoke]

Planted learning curves with the truth known: for each truth family (pow2, pow3, pow4, exp3,
mmf4, with parameters that still fall at 4x the largest n), seed count and trial, the seed
errors at n = 10, 20, ..., 640 are the true curve plus Gaussian seed noise whose sd falls with n
(0.03 (n/10)^-0.3, a realistic spread for a probe at these n). caulk's analysis
(``sample_complexity``, the curve's averaged model unless ``--families`` forces one, i.e.
misspecified for every other truth) answers n* for the true error at n = 200 (inside the
measured range) and at 2560 (4x beyond the largest n). Coverage: the share of answers whose 95%
interval holds the true n* (an infinite upper bound holds anything above the lower one; an
answer without an interval, "not determinable", or with a lower bound alone, "at least",
counts as not covering). Also: median
|log2(n*/truth)| over finite answers, and the shares unreachable / not determinable.

Prints a table per (target, seeds) with each truth and the pooled coverage, the goal (pooled
coverage between 90% and 99%: PASS/FAIL, never a non-zero exit) and the JSON result line.
``--smoke``: 2 trials, 2 truths, 3 seeds, 30 replicates (seconds; the numbers mean nothing).
``tests/test_coverage.py`` runs a fixed small design through :func:`coverage_rows` and fails
outside the band.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import brentq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

from common import parse_args, print_result, stamped  # noqa: E402

from caulk import provenance  # noqa: E402
from caulk.analysis.answers import sample_complexity  # noqa: E402

NS = np.array([10, 20, 40, 80, 160, 320, 640], float)
TARGET_N = {"in range": 200.0, "4x beyond": 2560.0}
TRUTHS = {
    "pow2": lambda n: 1.2 * n**-0.35,
    "pow3": lambda n: 0.1 + 1.5 * n**-0.5,
    "pow4": lambda n: 0.05 + 2.0 * (n + 20) ** -0.6,
    "exp3": lambda n: 0.12 + 0.5 * np.exp(-n / 1500),
    "mmf4": lambda n: (0.8 * 30 + 0.08 * n**0.6) / (30 + n**0.6),
}


def seed_sd(n: np.ndarray) -> np.ndarray:
    """The planted seed noise: sd 0.03 at n = 10, falling as n^-0.3."""
    return 0.03 * (n / 10) ** -0.3


def true_n_star(truth: str, target: float) -> float:
    """The n at which the planted curve reaches ``target`` (brentq in log n)."""
    curve = TRUTHS[truth]
    return float(np.exp(brentq(lambda x: curve(np.exp(x)) - target, 0.0, 40.0)))


def planted_points(truth: str, seeds: int, rng) -> pd.DataFrame:
    """One planted curve: a row per (n, seed) with the seed's error."""
    errors = TRUTHS[truth](NS) + seed_sd(NS) * rng.standard_normal((seeds, len(NS)))
    return pd.DataFrame(
        [
            {"curve": truth, "n": n, "seed": s, "test_error": errors[s, i]}
            for s in range(seeds)
            for i, n in enumerate(NS)
        ]
    )


def coverage_rows(
    truths: list[str], seeds: int, trials: int, replicates: int, family: str, rng_seed: int = 0
) -> pd.DataFrame:
    """One row per (truth, trial, target): the answer and whether its interval covers the truth."""
    rng = np.random.default_rng([rng_seed, seeds])
    targets = {where: {t: float(TRUTHS[t](n)) for t in truths} for where, n in TARGET_N.items()}
    rows = []
    for truth in truths:
        wanted = [targets[where][truth] for where in TARGET_N]
        for trial in range(trials):
            points = planted_points(truth, seeds, rng)
            answers = sample_complexity(
                points, ["curve"], "test_error", wanted, family, replicates, rng_seed + trial
            )
            for where, (_, a) in zip(TARGET_N, answers.iterrows(), strict=True):
                rows.append(answer_row(a, TARGET_N[where], truth, seeds, where, trial))
    return pd.DataFrame(rows)


def answer_row(a: pd.Series, true_n: float, truth: str, seeds: int, where: str, trial: int):
    """One answer scored against its true n*: status, whether its 95% interval covers (only an
    ``ok`` answer can), |log2(n*/truth)| (NaN without a finite n*)."""
    lo, hi, n_star = a["n_star_lo"], a["n_star_hi"], a["n_star"]
    return {
        "truth": truth,
        "seeds": seeds,
        "target": where,
        "trial": trial,
        "status": a["status"],
        "covered": bool(a["status"] == "ok" and lo <= true_n <= hi),
        "log2_error": abs(np.log2(n_star / true_n)) if np.isfinite(n_star) else np.nan,
    }


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Coverage (an abstention, or a lower bound alone, counts as not covering), median |log2|,
    the unreachable, not-determinable and at-least shares per (target, seeds, truth), pooled over
    the truths too, and the coverage over the answered cases only (``coverage_answered``: status
    ok or unreachable; NaN when none was)."""
    both = pd.concat([rows, rows.assign(truth="pooled")])
    keys = ["target", "seeds", "truth"]
    table = both.groupby(keys, sort=False).agg(
        cases=("covered", "size"),
        coverage=("covered", "mean"),
        median_log2=("log2_error", "median"),
        unreachable=("status", lambda s: float(np.mean(s == "unreachable"))),
        not_determinable=("status", lambda s: float(np.mean(s == "not_determinable"))),
        at_least=("status", lambda s: float(np.mean(s == "at_least"))),
    )
    answered = both[~both["status"].isin(["not_determinable", "at_least"])]
    by_answered = answered.groupby(keys, sort=False)["covered"].mean()
    return table.assign(coverage_answered=by_answered).reset_index()


def main() -> None:
    """Run the design, print the table and the JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=40, help="curves per (truth, seeds)")
    p.add_argument("--seeds", default="3,5,10", help="seed counts, comma-separated")
    p.add_argument("--replicates", type=int, default=200, help="bootstrap replicates")
    p.add_argument("--families", default="auto", help="auto, or a family forced on every truth")
    p.add_argument("--truths", default=",".join(TRUTHS), help="planted families")
    p.add_argument("--out", type=Path, help="also write the JSON result here")
    args = parse_args(p, {"trials": 2, "seeds": "3", "replicates": 30, "truths": "pow3,mmf4"})
    start = time.perf_counter()
    truths = [t for t in args.truths.split(",") if t]
    rows = pd.concat(
        [
            coverage_rows(truths, int(s), args.trials, args.replicates, args.families)
            for s in args.seeds.split(",")
        ]
    )
    table = summarise(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    pooled = table[table["truth"] == "pooled"]
    ok = bool(((pooled["coverage"] >= 0.90) & (pooled["coverage"] <= 0.99)).all())
    print(
        f"goal: pooled coverage in [0.90, 0.99] for every (target, seeds): {'PASS' if ok else 'FAIL'}"
    )
    result = {
        "benchmark": "coverage",
        "family": args.families,
        "trials": args.trials,
        "replicates": args.replicates,
        "seconds": round(time.perf_counter() - start, 1),
        "goal_met": ok,
        "table": json.loads(table.to_json(orient="records")),
        "cpu": provenance.cpu_model(),
        "commit": provenance.git_commit(),
    }
    if args.out:
        args.out.write_text(json.dumps(stamped(result), indent=2))
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
