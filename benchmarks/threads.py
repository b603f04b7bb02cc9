"""Benchmark: torch thread settings alone and with the machine shared.

    python benchmarks/threads.py [--seconds 6] [--workloads train,extract,ridge,caulk]
                                 [--settings default,passive,one] [--steps 150] [--smoke]

Each workload runs in a fresh process (the OpenMP runtime reads its environment once, at start),
under each thread setting, first alone and then as two identical processes started together
(the everyday state of CPU DDP, a second job on a Slurm node, parallel tests):

- ``train``: one training step of caulk's ViT-Pico (batch 64, 32 px, AdamW): the light loop's
  and the zoo pre-training's work;
- ``extract``: a no-grad forward of 256 images through ViT-Pico: the feature extraction;
- ``ridge``: caulk's ridge path (``caulk.engines.solvers.ridge_path``) of 8 points of 400 rows
  of 192 features over 12 λ;
- ``caulk``: ``python -m caulk.train peft=full data.n=50`` at a fixed ``--steps`` budget, wall
  time of the whole command (the Lightning path with its start-up), as measured in the threads
  issue (34 s alone, 161 s with two at once).

Settings: ``default`` (torch's: one thread per core, libgomp's busy-wait), ``passive`` (as many
threads, ``OMP_WAIT_POLICY=PASSIVE``: a waiting thread sleeps), ``one`` (one thread), and
``caulk`` (no variable set: caulk's own choice, ``caulk.threads``). A step workload reports the
median seconds per step over ``--seconds`` after a warm-up; ``shared`` is each of the two
processes' median, and ``together`` the steps per second both do, against ``alone``'s.

Prints a markdown table and the JSON result line (machine, commit, each cell). ``--smoke``: 0.5 s
per cell, ``train`` and ``caulk`` at 5 steps, setting ``caulk`` (about 25 s, most of it the two
commands' start-up; the numbers mean nothing).
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

from benchmarks.common import parse_args, print_result, stamped  # noqa: E402
from benchmarks.extrapolation import machine  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SMOKE = {"seconds": 0.5, "steps": 5, "workloads": "train,caulk", "settings": "caulk"}
WORKLOADS = ("train", "extract", "ridge", "caulk")
#: each setting's environment on top of the parent's (with every thread variable removed)
SETTINGS = {
    "default": {"CAULK_THREADS": "off"},
    "passive": {"CAULK_THREADS": "off", "OMP_WAIT_POLICY": "PASSIVE"},
    "one": {"CAULK_THREADS": "off", "OMP_NUM_THREADS": "1"},
    "caulk": {},
}
THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "CAULK_THREADS")


def _step_fn(workload: str):
    """A function doing one unit of ``workload`` (imports here: the worker's own process)."""
    import timm
    import torch

    import caulk.zoo.models  # noqa: F401  (registers caulk_vit_pico with timm)

    torch.manual_seed(0)
    model = timm.create_model("caulk_vit_pico", num_classes=10)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    if workload == "train":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def step():
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step
    if workload == "extract":
        big = torch.randn(256, 3, 32, 32)
        model.eval()

        def step():
            with torch.no_grad():
                model.forward_features(big)

        return step
    from caulk.engines.solvers import padded_rows, ridge_path

    feats, labels = torch.randn(3200, 192), torch.randint(0, 10, (3200,))
    idx = [torch.arange(p * 400, (p + 1) * 400) for p in range(8)]
    rows = padded_rows(feats, labels, idx, [None] * 8)
    lambdas = np.geomspace(1e-4, 10, 12)
    return lambda: ridge_path(rows, lambdas, 10)


def worker(workload: str, seconds: float) -> None:
    """Time one workload in this process; print its JSON (seconds per step, thread count)."""
    import torch

    import caulk.threads

    settings = caulk.threads.configure()
    step = _step_fn(workload)
    for _ in range(3):
        step()
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 3:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(
        json.dumps(
            {
                "step_s": float(np.median(times)),
                "steps": len(times),
                "torch_threads": torch.get_num_threads(),
                "settings": settings.fields(),
            }
        )
    )


def _env(setting: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    return {**env, **SETTINGS[setting]}


def _commands(workload: str, args) -> list[str]:
    if workload == "caulk":
        return [sys.executable, "-m", "caulk.train", "peft=full", "data.n=50", "logger=csv",
                "budget.mode=fixed", "tune=none", f"trainer.max_steps={args.steps}",
                "trainer.val_check_interval=50"]  # fmt: skip
    me = str(Path(__file__).resolve())
    return [sys.executable, me, "--worker", workload, "--seconds", str(args.seconds)]


def run_cell(workload: str, setting: str, copies: int, args, out: Path) -> dict:
    """Start ``copies`` identical processes at once; their results (step workloads) or walls."""
    procs, starts = [], []
    for i in range(copies):
        cmd = _commands(workload, args)
        if workload == "caulk":
            cmd.append(f"hydra.run.dir={out}/{workload}-{setting}-{copies}-{i}")
        starts.append(time.perf_counter())
        procs.append(
            subprocess.Popen(
                cmd,
                env=_env(setting),
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    results = []
    for p, t0 in zip(procs, starts, strict=True):
        stdout, stderr = p.communicate()
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit(f"{workload} under {setting} failed:\n{stderr[-2000:]}")
        if workload == "caulk":
            results.append({"step_s": wall, "steps": 1})
        else:
            results.append(json.loads(stdout.strip().splitlines()[-1]))
    return {
        "each_s": float(np.mean([r["step_s"] for r in results])),
        "per_process": results,
    }


def table(cells: dict) -> str:
    head = (
        "| workload | setting | alone (s) | two at once, each (s) | slowdown | together vs alone |\n"
        "|---|---|---:|---:|---:|---:|"
    )
    lines = [head]
    for workload, by_setting in cells.items():
        for setting, c in by_setting.items():
            alone, shared = c["alone"]["each_s"], c["shared"]["each_s"]
            lines.append(
                f"| {workload} | {setting} | {alone:.4g} | {shared:.4g} | {shared / alone:.2f}x "
                f"| {2 * alone / shared:.2f}x |"
            )
    return "\n".join(lines)


def main() -> None:
    """Run every (workload, setting) alone and two at once; print the table and the JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per step workload")
    p.add_argument("--steps", type=int, default=150, help="trainer.max_steps of workload caulk")
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    args = parse_args(p, SMOKE)
    if args.worker:
        worker(args.worker, args.seconds)
        return
    cells: dict = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="caulk-threads-") as tmp:
        for workload in args.workloads.split(","):
            for setting in args.settings.split(","):
                alone = run_cell(workload, setting, 1, args, Path(tmp))
                shared = run_cell(workload, setting, 2, args, Path(tmp))
                cells.setdefault(workload, {})[setting] = {"alone": alone, "shared": shared}
                print(f"{workload} {setting}: {alone['each_s']:.4g} s alone, "
                      f"{shared['each_s']:.4g} s shared", file=sys.stderr, flush=True)  # fmt: skip
    print(table(cells))
    result = {
        "name": "threads",
        "seconds": args.seconds,
        "steps": args.steps,
        "cells": cells,
        "total_s": round(time.perf_counter() - t0, 1),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/threads.py " + " ".join(sys.argv[1:]),
    }
    if args.out:
        out = {**stamped(result), "smoke": args.smoke}
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
