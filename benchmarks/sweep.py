"""Benchmark: wall time of an n x seed grid as one curve-mode process vs one process per point.

    python benchmarks/sweep.py [--steps 300] [--model vit_pico] [--peft linear]
                               [--ns 20,40,80,160] [--seeds 0,1] [--smoke]

Both go through the CLI (``python -m caulk.train``) with the defaults (feature cache on, disk
store in a fresh folder shared by the per-point processes). Prints one JSON object on its last
line: name, ratio (per-point processes / one curve process wall time, higher is better) and the
raw timings. ``--smoke``: ViT-Femto, one point of 4 steps (two processes), in seconds (checks the
path; the ratio means nothing).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's benchmarks

from benchmarks.common import FIXED_RECIPE, int_list, parse_args, print_result

REPO = Path(__file__).resolve().parent.parent
NS = [20, 40, 80, 160]
SEEDS = [0, 1]
SMOKE = {"model": "vit_femto", "steps": 4, "ns": "20", "seeds": "0"}


def cli(args: list[str]) -> None:
    """Run ``python -m caulk.train ARGS`` in this checkout; raise with its stderr if it fails."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "caulk.train", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])


def timed(args: list[list[str]]) -> float:
    """Seconds of the CLI runs ``args``, one after the other."""
    start = time.perf_counter()
    for a in args:
        cli(a)
    return time.perf_counter() - start


def parse() -> argparse.Namespace:
    """The command line (``--smoke``: ``SMOKE``'s sizes)."""
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--model", default="vit_pico")
    p.add_argument("--peft", default="linear")
    p.add_argument("--ns", type=int_list, default=NS, help="the grid's n, e.g. 20,40")
    p.add_argument("--seeds", type=int_list, default=SEEDS, help="its seeds, e.g. 0,1")
    return parse_args(p, SMOKE)


def main() -> None:
    """Run the benchmark and print its JSON result line."""
    args = parse()
    with tempfile.TemporaryDirectory() as tmp:
        common = [
            f"model={args.model}",
            f"peft={args.peft}",
            f"trainer.max_steps={args.steps}",
            *FIXED_RECIPE,
            "trainer.enable_progress_bar=false",
            "logger=csv",
            f"cache.dir={tmp}/features",
        ]
        grid = [
            f"curve.n=[{','.join(map(str, args.ns))}]",
            f"curve.seeds=[{','.join(map(str, args.seeds))}]",
        ]
        t_curve = timed([[*common, *grid, f"hydra.run.dir={tmp}/curve"]])
        t_points = timed(
            [
                [*common, f"data.n={n}", f"seed={seed}", f"hydra.run.dir={tmp}/n{n}_s{seed}"]
                for n in args.ns
                for seed in args.seeds
            ]
        )
    points = len(args.ns) * len(args.seeds)
    result = {
        "name": "sweep_curve_process_vs_process_per_point",
        "ratio": round(t_points / t_curve, 2),
        "curve_process_s": round(t_curve, 2),
        "process_per_point_s": round(t_points, 2),
        "per_point_process_mean_s": round(t_points / points, 2),
        "points": points,
        "steps_per_point": args.steps,
        "model": args.model,
        "peft": args.peft,
    }
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
