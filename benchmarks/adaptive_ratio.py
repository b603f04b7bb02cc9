"""Benchmark: adaptive curves against a baseline (``curve.baseline``, ``caulk.adaptive.ratio_loop``)
on planted pairs of curves whose ratio n*(baseline) / n*(curve) is known, measured in one run.

    python benchmarks/adaptive_ratio.py [--trials 4] [--truths pow2,pow3,pow4,exp3,mmf4]
                                        [--factor 3] [--precision 1.5] [--rule value]
                                        [--out r.json] [--smoke]

Each trial plants a baseline curve (one of ``benchmarks/coverage.py``'s truths, with its seed
noise) and a curve that reaches every error at 1/``factor`` of the baseline's n (its error at n
is the truth's at ``factor`` x n), asks for the ratio at the error the baseline reaches at n =
200 over the range [10, 5120], and runs the loop on both, every point's error drawn afresh.
Reported per truth and pooled: how often the final 95% ratio interval covers ``factor`` (the
promise: about 95%), the share that reached the precision, the points and examples spent.
``--smoke``: one truth, one trial, loose precision (seconds; numbers mean nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.adaptive import planted_train, spec_for  # noqa: E402
from benchmarks.common import parse_args, print_result  # noqa: E402
from benchmarks.coverage import TRUTHS  # noqa: E402
from caulk.adaptive import Trace, ratio_loop  # noqa: E402

SMOKE = {"trials": 1, "truths": "pow3", "precision": 3.0}


def scaled(train, factor: float):
    """A ``train`` whose error at n is ``train``'s at ``factor`` x n (the faster curve)."""

    def faster(points: list[tuple[int, int]]) -> list[dict]:
        rows = train([(round(factor * n), s) for n, s in points])
        return [{**r, "n": n} for r, (n, _) in zip(rows, points, strict=True)]

    return faster


def ratio_trial(truth: str, factor: float, precision: float, rule: str, seed: list[int]) -> dict:
    """One adaptive run of a planted pair; its outcome against the true ratio ``factor``."""
    spec = dataclasses.replace(spec_for(truth, precision, rule), baseline=("planted",))
    base = planted_train(truth, np.random.default_rng([*seed, 0]))
    curve = scaled(planted_train(truth, np.random.default_rng([*seed, 1])), factor)
    trace = Trace(None, spec)
    rows = ratio_loop(spec, {"curve": curve, "baseline": base}, trace)
    (r,) = trace.rounds[-1]["ratios"]
    lo, hi = r.get("ratio_lo"), r.get("ratio_hi")
    finite = lo is not None and hi is not None and np.isfinite(lo) and np.isfinite(hi)
    points = rows["curve"] + rows["baseline"]
    return {
        "covered": bool(finite and lo <= factor <= hi),
        "precise": bool(finite and lo > 0 and hi / lo <= precision),
        "points": len(points),
        "examples": int(sum(p["n"] for p in points)),
        "rounds": len(trace.rounds),
        "stop": trace.rounds[-1]["stop"],
    }


def summarise(rows: pd.DataFrame) -> dict:
    """Coverage, precision reached and mean compute."""
    return {
        "trials": len(rows),
        "coverage": round(float(rows["covered"].mean()), 3),
        "precise": round(float(rows["precise"].mean()), 3),
        "mean_points": round(float(rows["points"].mean()), 1),
        "mean_examples": round(float(rows["examples"].mean()), 1),
    }


def main() -> None:
    """Run the trials; print the table and the JSON result line."""
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--truths", default=",".join(TRUTHS))
    p.add_argument("--factor", type=float, default=3.0)
    p.add_argument("--precision", type=float, default=1.5)
    p.add_argument("--rule", default="value")
    p.add_argument("--seed", type=int, default=0)
    args = parse_args(p, SMOKE)
    start, rows = time.perf_counter(), []
    for i, truth in enumerate(args.truths.split(",")):
        for trial in range(args.trials):
            seed = [args.seed, trial, i]
            out = ratio_trial(truth, args.factor, args.precision, args.rule, seed)
            rows.append({"truth": truth, "trial": trial, **out})
    table = pd.DataFrame(rows)
    result = {
        "name": "adaptive_ratio",
        "factor": args.factor,
        "precision": args.precision,
        "rule": args.rule,
        "trials_per_truth": args.trials,
        "pooled": summarise(table),
        "per_truth": {t: summarise(g) for t, g in table.groupby("truth", sort=False)},
        "stops": table["stop"].value_counts().to_dict(),
        "seconds": round(time.perf_counter() - start, 1),
        "command": "python benchmarks/adaptive_ratio.py " + " ".join(sys.argv[1:]),
    }
    s = result["pooled"]
    print(f"ratio {args.factor:g}: coverage {s['coverage']:.2f}, precise {s['precise']:.2f}, "
          f"{s['mean_points']:.1f} points, {s['mean_examples']:.0f} examples")  # fmt: skip
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
