"""Benchmark: adaptive curves (``curve.n=auto``, ``caulk.adaptive``) on planted curves, against
fixed log grids, measured in one run.

    python benchmarks/adaptive.py [--trials 20] [--truths pow2,pow3,pow4,exp3,mmf4]
                                  [--precision 1.3] [--seed 0] [--out r.json]
                                  [--real] [--real-lora] [--real-target 0.2]
                                  [--lora-grid-sizes 4-12] [--smoke]

Each trial plants a curve with the truth known (``benchmarks/coverage.py``'s truths and seed
noise, sd 0.03 at n = 10 falling as n^-0.3), asks for n* at the error the truth reaches at n =
200, over the range [10, 5120], and runs the adaptive loop on it (each point's error drawn
afresh from the truth and the noise), with each rule of ``RULES``: caulk's value rule where every
point costs the same (no seconds recorded) and where a point's seconds grow with n (0.01 s per
example, read back from the records as a real run's are), and the cost-blind n* and bracket
rules. Reported per truth and pooled: how often the final 95% n*
interval covers the true n* (optional stopping must not break it: the goal is 90-99%), the share
that reached the precision asked, and the compute spent. Compute is counted two ways: points,
and examples (the sum of the points' n: a training budget that grows with n, as LoRA's does; a
cached probe is nearly flat in n). The same trials are also answered by fixed log grids of 3
seeds: the 7-n grid over the range, and the smallest grid (k log-spaced n, k = 4 … 24) whose
answer reaches the precision; the ratios say how much less the adaptive run spent.
``--real``: also the demo's real probe curves (digits, ``vit_pico`` with m = 0 and m = 4000 from
the zoo, the default ridge probe, n* at ``--real-target``; ``--real-lora`` adds the m = 4000
LoRA curve, last block, lr tuned per point): the training seconds and points of an
adaptive run against the smallest fixed log grid over the same range whose answer reaches the
same precision (the true n* is unknown there, so no coverage), and the wall time of each: the
adaptive run's includes every round's set-up and the rule's refits, the grid's its one fit. The
grids are tried from the smallest k up, and every grid tried is reported (its points, seconds
and hi/lo);
``--lora-grid-sizes`` sets the LoRA curve's (e.g. ``12-16``: a grid of k n costs about k times
a LoRA point, so a search that starts where an earlier run left off saves most of the time).
``--smoke``: one truth, one trial, loose precision (seconds; numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.common import parse_args, print_result, stamped  # noqa: E402
from benchmarks.coverage import TRUTHS, seed_sd, true_n_star  # noqa: E402
from caulk.adaptive import AdaptiveSpec, Trace, adaptive_loop, fit_answers  # noqa: E402
from caulk.api import compose_train  # noqa: E402
from caulk.train import train_curve  # noqa: E402

N_RANGE = (10, 5120)
TARGET_N = 200.0
SEEDS = (0, 1, 2)
#: the fixed grids tried, k log-spaced n x 3 seeds: up to 24 n, where a point costs nothing to
#: plant or little to train (a cached probe's), so that the smallest precise grid is one that
#: reached the precision in (nearly) every trial; LoRA's stop at 12 n by default (a grid of k n
#: costs about k LoRA points: ``--lora-grid-sizes`` goes on from there)
GRID_SIZES = range(4, 25)
REAL_GRID_SIZES = {"probe": GRID_SIZES, "lora": range(4, 13)}
#: the adaptive arms: caulk's ``value`` rule with every point costing the same (a cached probe)
#: and with cost growing in n (LoRA: 0.01 s per example, measured from the records), and the
#: cost-blind rules it was compared with
RULES = {
    "value rule": ("value",),
    "value rule, cost ∝ n": ("value", 0.01),
    "n* rule": ("n_star",),
    "bracket rule": ("bracket",),
}
SMOKE = {"trials": 1, "truths": "pow3", "precision": 2.0}


def planted_train(truth: str, rng: np.random.Generator, seconds_per_example: float = 0.0):
    """A ``train`` for ``adaptive_loop``: each (n, seed) point's error from the planted truth and
    its own noise draw (kept, so a point asked twice answers the same); with
    ``seconds_per_example`` each record says it took that many seconds per example (the cost
    the ``value`` rule measures), else it records no time (every point costs the same)."""
    drawn: dict[tuple[int, int], float] = {}

    def train(points: list[tuple[int, int]]) -> list[dict]:
        out = []
        for n, seed in points:
            if (n, seed) not in drawn:
                noise = seed_sd(np.array(float(n))) * rng.standard_normal()
                drawn[(n, seed)] = float(TRUTHS[truth](float(n)) + noise)
            out.append({"n": n, "seed": seed, "status": "ok", "test_error": drawn[(n, seed)],
                        "wall_time_s": seconds_per_example * n})  # fmt: skip
        return out

    return train


def spec_for(truth: str, precision: float, rule: str = "value") -> AdaptiveSpec:
    """The question of a trial: n* at the truth's error at ``TARGET_N``."""
    target = float(TRUTHS[truth](TARGET_N))
    return AdaptiveSpec((target,), *N_RANGE, precision, 60, None, SEEDS, rule)


def _outcome(answer: dict, true_n: float, points: list[tuple[int, int]], precision: float):
    lo, hi = answer.get("n_star_lo"), answer.get("n_star_hi")
    finite = lo is not None and np.isfinite(lo) and hi is not None
    return {
        "covered": bool(finite and lo <= true_n <= hi),
        "precise": bool(finite and np.isfinite(hi) and hi / lo <= precision),
        "points": len(points),
        "examples": int(sum(n for n, _ in points)),
        "status": answer["status"],
    }


def adaptive_trial(truth: str, precision: float, rng, rule: str, per_example: float = 0.0) -> dict:
    """One adaptive run on a planted curve (``per_example``: its points' seconds per example)."""
    spec = spec_for(truth, precision, rule)
    trace = Trace(None, spec)
    records = adaptive_loop(spec, planted_train(truth, rng, per_example), trace)
    points = [(r["n"], r["seed"]) for r in records]
    result = _outcome(trace.final[0], true_n_star(truth, spec.targets[0]), points, precision)
    return {**result, "rounds": len(trace.rounds), "stop": trace.rounds[-1]["stop"]}


def grid_trial(truth: str, k: int, precision: float, rng) -> dict:
    """A fixed grid of ``k`` log-spaced n x 3 seeds over the range, answered once."""
    spec = spec_for(truth, precision)
    ns = sorted({int(round(v)) for v in np.geomspace(*N_RANGE, k)})
    points = [(n, s) for n in ns for s in SEEDS]
    answer = fit_answers(planted_train(truth, rng)(points), spec)[0]
    return _outcome(answer, true_n_star(truth, spec.targets[0]), points, precision)


def smallest_precise_grid(truth: str, precision: float, rng) -> dict:
    """The smallest k whose grid reaches the precision (the last one tried when none does)."""
    for k in GRID_SIZES:
        out = grid_trial(truth, k, precision, rng)
        if out["precise"]:
            return {**out, "k": k}
    return {**out, "k": None}


REAL = {
    "vit_pico m=0": ["model.weights=none"],
    "vit_pico m=4000": ["model.weights=zoo", "model.source_m=4000"],
}
#: ``--real-lora``: the demo's LoRA curve (last block, its lr chosen per point by tune=grid)
REAL_LORA = {
    "vit_pico m=4000 LoRA": [*REAL["vit_pico m=4000"], "peft=lora", "peft.last_k_blocks=1"],
}


def _real_cfg(extra: list[str], out: Path, target: float, precision: float, curve: list[str]):
    overrides = ["model=vit_pico", *extra, "logger=csv", "trainer.enable_progress_bar=false"]
    overrides += [f"curve.precision={precision}", *curve]
    if curve[0] == "curve.n=auto":
        overrides.append(f"curve.target_error={target}")
    return compose_train(overrides, out)


def _precise(answer: dict, precision: float) -> bool:
    lo, hi = answer["n_star_lo"], answer["n_star_hi"]
    return bool(lo and np.isfinite(lo) and hi and np.isfinite(hi) and hi / lo <= precision)


def real_curve(
    extra: list[str], target: float, precision: float, out: Path, grid_sizes: range
) -> dict:
    """An adaptive run on a real curve against the smallest precise fixed grid of
    ``grid_sizes`` (or the largest tried, ``precise`` false)."""
    start = time.perf_counter()
    records = train_curve(_real_cfg(extra, out / "adaptive", target, precision, ["curve.n=auto"]))
    wall_s = time.perf_counter() - start
    trace = json.loads((out / "adaptive" / "adaptive.json").read_text())
    spec = AdaptiveSpec((target,), trace["spec"]["n_lo"], trace["spec"]["n_hi"], precision, 60,
                        None, SEEDS)  # fmt: skip
    adaptive = {"points": len(records), "train_s": sum(r["wall_time_s"] for r in records),
                "wall_s": wall_s, "answer": trace["rounds"][-1]["answers"][0]}  # fmt: skip
    tried = []
    for k in grid_sizes:
        ns = sorted({int(round(v)) for v in np.geomspace(spec.n_lo, spec.n_hi, k)})
        curve = [f"curve.n=[{','.join(map(str, ns))}]", "curve.seeds=[0,1,2]"]
        start = time.perf_counter()
        grid = train_curve(_real_cfg(extra, out / f"grid{k}", target, precision, curve))
        answer = fit_answers(grid, spec)[0]
        tried.append({"k": k, "points": len(grid), "train_s": sum(r["wall_time_s"] for r in grid),
                      "wall_s": time.perf_counter() - start, "answer": answer,
                      "precise": _precise(answer, precision)})  # fmt: skip
        if tried[-1]["precise"]:
            break
    fixed = tried[-1]
    return {"adaptive": adaptive, "smallest_precise_grid": fixed, "grids_tried": tried,
            "train_s_ratio": round(fixed["train_s"] / adaptive["train_s"], 2),
            "wall_s_ratio": round(fixed["wall_s"] / adaptive["wall_s"], 2),
            "points_ratio": round(fixed["points"] / adaptive["points"], 2)}  # fmt: skip


def _ratios_to_grid(pooled: dict) -> dict:
    """The smallest precise grid's points over the value rule's (every point costing the same)
    and its examples over the value rule's where a point's seconds grow with n."""
    flat, grows = pooled["adaptive, value rule"], pooled["adaptive, value rule, cost ∝ n"]
    small = pooled["smallest precise grid"]
    return {
        "examples_ratio_vs_smallest_grid": round(
            small["mean_examples"] / grows["mean_examples"], 2
        ),
        "points_ratio_vs_smallest_grid": round(small["mean_points"] / flat["mean_points"], 2),
    }


def _sizes(text: str) -> range:
    """``12-16`` (or ``12``): the grid sizes k to try, ascending."""
    lo, _, hi = text.partition("-")
    return range(int(lo), int(hi or lo) + 1)


def summarise(rows: pd.DataFrame) -> dict:
    """Coverage, precision reached and mean compute per arm."""
    out = {}
    for arm, g in rows.groupby("arm", sort=False):
        out[arm] = {
            "trials": len(g),
            "coverage": round(float(g["covered"].mean()), 3),
            "precise": round(float(g["precise"].mean()), 3),
            "mean_points": round(float(g["points"].mean()), 1),
            "mean_examples": round(float(g["examples"].mean()), 1),
        }
    return out


def main() -> None:
    """Run the trials; print the table and the JSON result line."""
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--truths", default=",".join(TRUTHS))
    p.add_argument("--precision", type=float, default=1.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--real", action="store_true", help="also the demo's real probe curves")
    p.add_argument("--real-lora", action="store_true", help="also the demo's LoRA curve")
    p.add_argument("--real-target", type=float, default=0.2)
    p.add_argument("--lora-grid-sizes", type=_sizes, default=REAL_GRID_SIZES["lora"])
    args = parse_args(p, SMOKE)
    start, rows = time.perf_counter(), []
    for truth in args.truths.split(","):
        for trial in range(args.trials):
            seed = [args.seed, trial, sorted(TRUTHS).index(truth)]
            arms = {
                f"adaptive, {rule}": adaptive_trial(
                    truth, args.precision, np.random.default_rng(seed), *how
                )
                for rule, how in RULES.items()
            } | {
                "grid 7 n": grid_trial(truth, 7, args.precision, np.random.default_rng(seed)),
                "smallest precise grid": smallest_precise_grid(
                    truth, args.precision, np.random.default_rng(seed)
                ),
            }
            rows += [{"truth": truth, "trial": trial, "arm": a, **r} for a, r in arms.items()]
    real = {}
    if args.real:
        with tempfile.TemporaryDirectory(prefix="caulk-adaptive-") as tmp:
            curves = {**REAL, **(REAL_LORA if args.real_lora else {})}
            for name, extra in curves.items():
                out = Path(tmp) / name.replace(" ", "_")
                sizes = args.lora_grid_sizes if name in REAL_LORA else REAL_GRID_SIZES["probe"]
                real[name] = real_curve(extra, args.real_target, args.precision, out, sizes)
    table = pd.DataFrame(rows)
    pooled = summarise(table) if rows else {}  # --trials 0: the real curves only
    per_truth = {t: summarise(g) for t, g in table.groupby("truth", sort=False)} if rows else {}
    result = {
        "name": "adaptive_planted",
        "precision": args.precision,
        "trials_per_truth": args.trials,
        "n_range": list(N_RANGE),
        "pooled": pooled,
        "per_truth": per_truth,
        **(_ratios_to_grid(pooled) if rows else {}),
        "real": real,
        "real_target": args.real_target if args.real else None,
        "seconds": round(time.perf_counter() - start, 1),
        "command": "python benchmarks/adaptive.py " + " ".join(sys.argv[1:]),
    }
    for arm, s in pooled.items():
        print(f"{arm:>22}: coverage {s['coverage']:.2f}, precise {s['precise']:.2f}, "
              f"{s['mean_points']:.1f} points, {s['mean_examples']:.0f} examples")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({**stamped(result), "smoke": args.smoke}, indent=1) + "\n")
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
