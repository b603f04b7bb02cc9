"""Benchmark: how a point is trained and chosen changes the curve. The offline default (random-init
ViT-Pico on digits, the default validation split) trained by several recipes, one run:

    python benchmarks/protocol_table.py [--ns 10,40,160,640,1047] [--seeds 0,1,2] [--lbfgs]
                                        [--threads 2] [--smoke] [KEY=VALUE ...]

Arms (each a real ``train_curve`` on the same cached features):
- ``fixed``: the old recipe, ``peft.solver=sgd`` with 300 AdamW steps at lr 1e-2, last step kept;
- ``sgd_tuned``: the same optimizer with the default step budget (``budget.mode=epochs``) and
  ``tune=grid`` over lr x {0.1, 1, 10}, chosen per point on validation;
- ``ridge``: the default linear probe (``peft.solver=ridge``, λ chosen per point on validation);
- ``lbfgs`` (with ``--lbfgs``; slow on a CPU): ``peft.solver=lbfgs``;
- ``sklearn``: scikit-learn's L2 ``LogisticRegression`` on the same standardised features, C over
  ``np.logspace(-4, 4, 17)`` chosen per point on the same validation rows (outside oracle).
Prints a markdown table (mean test error per n over seeds, the fitted a and c of
e(n) = a + b n^-c on the seed means, seconds) and then one JSON line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from benchmarks.common import int_list, parse_args, print_result
from caulk.analysis.fits import fit_offset_power_law
from caulk.api import compose_train
from caulk.cache.data import CachedFeatureDataModule
from caulk.engines import solvers
from caulk.plan import make_plan
from caulk.provenance import cpu_model
from caulk.run.curve import curve_features
from caulk.train import train_curve

SMOKE = {"ns": "10,40", "seeds": "0"}
ARMS = {
    "fixed": ["peft.solver=sgd", "budget.mode=fixed", "trainer.max_steps=300", "tune=none"],
    "sgd_tuned": ["peft.solver=sgd", "budget.mode=epochs", "tune=grid"],
    "ridge": ["peft.solver=ridge"],
    "lbfgs": ["peft.solver=lbfgs"],
}
SKLEARN_C = np.logspace(-4, 4, 17)


def caulk_arm(common: list[str], arm: list[str], out: Path) -> tuple[float, dict]:
    """Seconds and {(n, seed): test error} of one arm's curve."""
    start = time.perf_counter()
    records = train_curve(compose_train([*common, *arm], out))
    return time.perf_counter() - start, {(r["n"], r["seed"]): r["test_error"] for r in records}


def sklearn_arm(common: list[str], out: Path) -> tuple[float, dict]:
    """Seconds and {(n, seed): test error} of scikit-learn's per-point C search."""
    plan = make_plan(compose_train([*common, "peft.solver=ridge"], out))
    _, features = curve_features(plan)
    cached = CachedFeatureDataModule(plan.points[0].datamodule, features)
    y_pool, y_test = cached.labels("pool").numpy(), cached.labels("test").numpy()
    pool, test = features.pool.double(), features.test.double()
    start, errors = time.perf_counter(), {}
    for p in plan.points:
        dm = p.datamodule
        stats = solvers.standardizer(pool[dm.train_idx], True)
        x_tr, x_val, x_te = (
            solvers.standardize(x, stats).numpy()
            for x in (pool[dm.train_idx], pool[dm.val_idx], test)
        )
        fits = [
            LogisticRegression(C=c, max_iter=2000).fit(x_tr, y_pool[dm.train_idx])
            for c in SKLEARN_C
        ]
        val = [float((m.predict(x_val) != y_pool[dm.val_idx]).mean()) for m in fits]
        best = fits[int(np.argmin(val))]
        errors[(p.n, p.seed)] = float((best.predict(x_te) != y_test).mean())
    return time.perf_counter() - start, errors


def summarise(errors: dict, ns: list[int]) -> dict:
    """Mean test error per n over seeds and the fitted a, c of the offset power law."""
    means = [float(np.mean([e for (n, _), e in errors.items() if n == m])) for m in ns]
    fit = fit_offset_power_law(np.array(ns, float), np.array(means)) if len(ns) >= 3 else None
    return {
        "mean_error": [round(m, 3) for m in means],
        "a": None if fit is None else round(float(fit.a), 3),
        "c": None if fit is None else round(float(fit.c), 3),
    }


def table(results: dict, ns: list[int]) -> str:
    head = "| arm | " + " | ".join(f"n={n}" for n in ns) + " | fit a / c | seconds |"
    rows = [head, "|" + "---|" * (len(ns) + 3)]
    for name, r in results.items():
        errs = " | ".join(f"{e:.3f}" for e in r["mean_error"])
        rows.append(f"| {name} | {errs} | a={r['a']}, c={r['c']} | {r['seconds']:.1f} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ns", type=int_list, default=[10, 40, 160, 640, 1047])
    p.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    p.add_argument("--lbfgs", action="store_true", help="also the lbfgs solver (slow on a CPU)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("overrides", nargs="*", help="config overrides for every arm")
    args = parse_args(p, SMOKE)
    torch.set_num_threads(args.threads)
    common = [f"curve.n={args.ns}", f"curve.seeds={args.seeds}", "logger=csv", *args.overrides]
    arms = {k: v for k, v in ARMS.items() if k != "lbfgs" or args.lbfgs}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, arm in arms.items():
            seconds, errors = caulk_arm(common, arm, Path(tmp) / name)
            results[name] = {**summarise(errors, args.ns), "seconds": seconds}
        seconds, errors = sklearn_arm(common, Path(tmp) / "sklearn")
        results["sklearn"] = {**summarise(errors, args.ns), "seconds": seconds}
    print(table(results, args.ns))
    result = {
        "name": "protocol_table",
        "ns": args.ns,
        "seeds": args.seeds,
        "arms": results,
        "threads": args.threads,
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
    }
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
