"""Benchmark: the cost of tuning a linear-probe curve (``tune=grid`` over the optimizer's lr and
weight decay, the default SGD-style recipe) against one untuned fit of the same curve, one run.

    python benchmarks/tune_grid.py [--model vit_pico] [--ns 10,40,160,640] [--seeds 0,1,2]
                                   [--lrs 1e-3,1e-2,1e-1] [--wds 0,1e-4] [--steps 300]
                                   [--threads 2] [--smoke] [KEY=VALUE ...]

Three arms on the same cached features (extracted once, not timed): one fit of the curve's heads
(``batched.train_heads``, the untuned curve), the grid's heads as one computation
(``batched.train_heads_grid``, what ``tune=grid`` runs), and the grid one candidate at a time
(``train_heads`` per candidate). Prints one JSON object on its last line: ``grid_over_one_fit``
(the grid's seconds / one fit's: what tuning costs), ``loop_over_grid`` (the per-candidate loop's
seconds / the grid's: what batching the grid saves), candidates, points and the timings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

import torch

from benchmarks.common import int_list, parse_args, print_result
from caulk.api import compose_train
from caulk.engines import batched
from caulk.plan import make_plan
from caulk.provenance import cpu_model
from caulk.run.curve import curve_features
from caulk.tune import candidate_cfg, candidates

SMOKE = {"ns": "10,40", "seeds": "0", "lrs": "0.01,0.1", "wds": "0", "steps": 10}


def float_list(text: str) -> list[float]:
    """``"1e-3,1e-2"`` -> ``[0.001, 0.01]`` (an argparse ``type``)."""
    return [float(x) for x in text.split(",") if x.strip()]


def setup(args):
    """The curve's plan, its cached features and the grid's candidate configs (not timed)."""
    overrides = [
        f"model={args.model}",
        f"curve.n={args.ns}",
        f"curve.seeds={args.seeds}",
        f"trainer.max_steps={args.steps}",
        "cache.disk=false",
        "tune=grid",
        f"tune.grid={{peft.lr:{args.lrs},peft.weight_decay:{args.wds}}}",
        *args.overrides,
    ]
    cfg = compose_train(overrides, output_dir="/nonexistent-output-dir")
    plan = make_plan(cfg)
    _, features = curve_features(plan)
    dms = [p.datamodule for p in plan.points]
    return cfg, dms, features, [candidate_cfg(cfg, c) for c in candidates(cfg)]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_pico")
    parser.add_argument("--ns", type=int_list, default=[10, 40, 160, 640])
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2])
    parser.add_argument("--lrs", type=float_list, default=[1e-3, 1e-2, 1e-1])
    parser.add_argument("--wds", type=float_list, default=[0.0, 1e-4])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. data.val_size=300")
    args = parse_args(parser, SMOKE)
    torch.set_num_threads(args.threads)
    cfg, dms, features, cand_cfgs = setup(args)
    one = timed(lambda: batched.train_heads(cfg, dms, features))
    grid = timed(lambda: batched.train_heads_grid([(c, dms) for c in cand_cfgs], features))
    loop = timed(lambda: [batched.train_heads(c, dms, features) for c in cand_cfgs])
    result = {
        "name": "tune_grid_linear_probe",
        "grid_over_one_fit": grid / one,
        "loop_over_grid": loop / grid,
        "one_fit_s": one,
        "grid_s": grid,
        "loop_s": loop,
        "candidates": len(cand_cfgs),
        "points": len(dms),
        "steps": args.steps,
        "model": args.model,
        "threads": args.threads,
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
    }
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
