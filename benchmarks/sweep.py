"""Benchmark: wall time of an n x seed grid as one curve-mode process vs one process per point.

    python benchmarks/sweep.py [--steps 300] [--model vit_pico] [--peft linear]

Both go through the CLI (``python -m caulk.train``) with the defaults (feature cache on, disk
store in a fresh folder shared by the per-point processes). Prints one JSON object on its last
line: name, ratio (per-point processes / one curve process wall time, higher is better) and the
raw timings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NS = [20, 40, 80, 160]
SEEDS = [0, 1]


def cli(args: list[str]) -> None:
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


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--model", default="vit_pico")
    p.add_argument("--peft", default="linear")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        common = [
            f"model={args.model}",
            f"peft={args.peft}",
            f"trainer.max_steps={args.steps}",
            "trainer.enable_progress_bar=false",
            "logger=csv",
            f"cache.dir={tmp}/features",
        ]
        start = time.perf_counter()
        cli(
            [
                *common,
                f"curve.n=[{','.join(map(str, NS))}]",
                f"curve.seeds=[{','.join(map(str, SEEDS))}]",
                f"hydra.run.dir={tmp}/curve",
            ]
        )
        t_curve = time.perf_counter() - start
        start = time.perf_counter()
        for n in NS:
            for seed in SEEDS:
                cli([*common, f"data.n={n}", f"seed={seed}", f"hydra.run.dir={tmp}/n{n}_s{seed}"])
        t_points = time.perf_counter() - start
    points = len(NS) * len(SEEDS)
    print(
        json.dumps(
            {
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
        )
    )


if __name__ == "__main__":
    main()
