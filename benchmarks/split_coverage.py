"""Do the n* intervals cover a truth that does not share their test set? With and without the
bootstrap of the test rows (``caulk.analysis.test_rows``), on real ridge-probe curves.

The design: a ridge probe (random-init ViT-Pico) on digits, ``--splits`` (default 10) data
splits (``data.split_seed``: each its own 450-row test set and training pool), ``--seeds`` (5)
seeds at n = 10 ... 320. The truth is the mean over every split and seed: the error it reaches
at n = 80 is the target, so its true n* is 80, a quantity of the task, not of one test set. Each
split is analysed alone, as a user with one test set would, on ``--subsets`` random
``--k``-seed subsets (default 3), twice: with the records' per-row outcomes (the test rows resampled in the draws) and
without them (seed noise only). Coverage: the share of 95% intervals holding 80.

The truth carries its own noise (the mean of splits x seeds), the cases of one split share a
test set and are not independent, and a split also changes the pool: read the cells loosely.
``--smoke``: 2 splits, 3 seeds, n <= 80, 1 subset (seconds; the numbers mean nothing).
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
from probe_seeds import run_curve  # noqa: E402

from caulk.analysis.answers import sample_complexity  # noqa: E402


def answer_rows(points: pd.DataFrame, at_n: int, k: int, subsets: int) -> pd.DataFrame:
    """Per (split, subset, arm): whether the 95% n* interval holds the true n* (= ``at_n``)."""
    target = float(points.loc[points["n"] == at_n, "test_error"].mean())
    rng = np.random.default_rng(0)
    rows = []
    for split, pts in points.groupby("split"):
        for trial in range(subsets):
            chosen = rng.choice(np.unique(pts["seed"]), size=k, replace=False)
            sub = pts[pts["seed"].isin(chosen)].assign(curve="probe")
            for arm, data in (
                ("test rows + seeds", sub),
                ("seeds only", sub.drop(columns="test_correct")),
            ):
                a = sample_complexity(data, ["curve"], "test_error", [target], "auto", 200, trial)
                a = a.iloc[0]
                ok = a["status"] == "ok"
                rows.append(
                    {
                        "arm": arm,
                        "split": split,
                        "covered": bool(ok and a["n_star_lo"] <= at_n <= a["n_star_hi"]),
                        "width": float(np.log2(a["n_star_hi"] / a["n_star_lo"])) if ok else np.nan,
                    }
                )
    return pd.DataFrame(rows)


def main() -> None:
    """Run the splits' curves, answer each split alone, print the table and the JSON line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--splits", type=int, default=10, help="data.split_seed values 0..splits-1")
    p.add_argument("--seeds", type=int, default=5, help="seeds per split")
    p.add_argument("--ns", type=int_list, default=[10, 20, 40, 80, 160, 320])
    p.add_argument("--at-n", type=int, default=80, help="the truth's n* (the target's n)")
    p.add_argument("--subsets", type=int, default=5, help="k-seed subsets per split")
    p.add_argument("--k", type=int, default=3, help="seeds a split's analysis sees")
    smoke = {"splits": 2, "seeds": 3, "ns": "10,20,40,80", "at_n": 40, "subsets": 1}
    args = parse_args(p, smoke)
    ns = int_list(args.ns) if isinstance(args.ns, str) else args.ns
    start = time.perf_counter()
    curves = []
    with tempfile.TemporaryDirectory() as tmp:
        for split in range(args.splits):
            extra = (f"data.split_seed={split}",)
            pts = run_curve(ns, args.seeds, "vit_pico", Path(tmp) / f"s{split}", extra)
            curves.append(pts.assign(split=split))
    points = pd.concat(curves, ignore_index=True)
    train_s = time.perf_counter() - start
    rows = answer_rows(points, args.at_n, args.k, args.subsets)
    table = (
        rows.groupby("arm")
        .agg(
            cases=("covered", "size"),
            coverage=("covered", "mean"),
            median_log2_width=("width", "median"),
        )
        .reset_index()
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    result = {
        "benchmark": "split_coverage",
        "points": len(points),
        "test_sets": int(points["test_set"].nunique()),
        "train_seconds": round(train_s, 1),
        "seconds": round(time.perf_counter() - start, 1),
        "k": args.k,
        "table": table.to_dict(orient="records"),
    }
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
