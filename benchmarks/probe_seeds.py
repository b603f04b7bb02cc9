"""How many seeds a cheap linear-probe curve needs for calibrated answers, measured on a real one.

The design: one ridge-probe curve (caulk's default linear probe; a point costs a fraction of a
second) on digits with many seeds, ``--seeds-total`` (default 20), at n = 10 ... 640. The truth
is that curve's mean over every seed: the errors it reaches at n = 80 (inside the cut), 320 (2x
beyond) and 640 (4x beyond) are the targets, and 80, 320 and 640 their true n*. For each seed
count k, ``--subsets`` random k-seed subsets of the curve, cut at n <= 160, are analysed as a user
would (``sample_complexity``, the averaged model) and asked for n* at those targets. Coverage:
the share of 95% intervals holding the true n* (an answer without an interval counts as not
covering), with the median |log2(n*/truth)| and the not-determinable share.

The subsets share seeds, so the cells are not independent trials; the truth carries its own
noise (the mean of ``--seeds-total`` seeds) and is exact only for this test set and backbone.
``--smoke``: 4 seeds, n <= 80 cut at 40, one subset per k (seconds; the numbers mean nothing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import int_list, parse_args, print_result  # noqa: E402
from coverage import answer_row, summarise  # noqa: E402

from caulk.analysis.answers import sample_complexity  # noqa: E402
from caulk.api import compose_train  # noqa: E402
from caulk.train import train_curve  # noqa: E402


def run_curve(
    ns: list[int], seeds: int, model: str, out: Path, extra: tuple[str, ...] = ()
) -> pd.DataFrame:
    """The ridge-probe curve: a row per (n, seed) with its test error and per-row outcomes."""
    overrides = [
        *extra,
        f"model={model}",
        "peft=linear",
        f"curve.n=[{','.join(map(str, ns))}]",
        f"curve.seeds=[{','.join(map(str, range(seeds)))}]",
        "logger=none",
        "callbacks=none",
    ]
    cfg = compose_train(overrides, output_dir=str(out))
    records = train_curve(cfg)
    keep = ("n", "seed", "test_error", "test_correct", "test_set", "n_test")
    return pd.DataFrame([{k: r[k] for k in keep} for r in records])


def targets(points: pd.DataFrame, at: dict[str, float]) -> dict[str, float]:
    """The all-seed mean error at each named n: the targets whose true n* is that n."""
    means = points.groupby("n")["test_error"].mean()
    return {where: float(means.loc[n]) for where, n in at.items()}


def coverage_rows(
    points: pd.DataFrame, cut: int, at: dict[str, float], ks: list[int], subsets: int, seed: int
) -> pd.DataFrame:
    """One row per (k, subset, target): status, covered, |log2(n*/truth)|."""
    rng = np.random.default_rng(seed)
    wanted = targets(points, at)
    seeds = np.unique(points["seed"])
    measured = points[points["n"] <= cut].assign(curve="probe")
    rows = []
    for k in ks:
        for trial in range(subsets):
            chosen = rng.choice(seeds, size=k, replace=False)
            pts = measured[measured["seed"].isin(chosen)]
            answers = sample_complexity(
                pts, ["curve"], "test_error", list(wanted.values()), "auto", 200, trial
            )
            for (where, true_n), (_, a) in zip(at.items(), answers.iterrows(), strict=True):
                rows.append(answer_row(a, true_n, "digits ridge probe", k, where, trial))
    return pd.DataFrame(rows)


def main() -> None:
    """Run the curve, the subsets' analyses; print the table and the JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seeds-total", type=int, default=20, help="seeds of the truth curve")
    p.add_argument("--ns", type=int_list, default=[10, 20, 40, 80, 160, 320, 640])
    p.add_argument("--cut", type=int, default=160, help="largest n the analysis sees")
    p.add_argument("--ks", type=int_list, default=[2, 3, 5, 10], help="seed counts to test")
    p.add_argument("--subsets", type=int, default=30, help="random seed subsets per k")
    p.add_argument("--model", default="vit_pico", help="the backbone (random init: offline)")
    smoke = {"seeds_total": 4, "ns": "10,20,40,80", "cut": 40, "ks": "3", "subsets": 1}
    args = parse_args(p, smoke)
    ns = int_list(args.ns) if isinstance(args.ns, str) else args.ns
    ks = int_list(args.ks) if isinstance(args.ks, str) else args.ks
    at = {"in range": float(ns[-4]), "2x beyond": float(ns[-2]), "4x beyond": float(ns[-1])}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        points = run_curve(ns, args.seeds_total, args.model, Path(tmp) / "curve")
    train_s = time.perf_counter() - start
    rows = coverage_rows(points, args.cut, at, ks, args.subsets, 0)
    table = summarise(rows)
    table = table[table["truth"] != "pooled"].drop(columns="truth")  # one truth: pooled repeats it
    means = points.groupby("n")["test_error"].mean()
    print(
        "the truth (mean over every seed): " + ", ".join(f"n={n} {e:.4f}" for n, e in means.items())
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    result = {
        "benchmark": "probe_seeds",
        "points": len(points),
        "train_seconds": round(train_s, 1),
        "seconds": round(time.perf_counter() - start, 1),
        "truth": {str(n): float(e) for n, e in means.items()},
        "table": table.to_dict(orient="records"),
    }
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
