"""Benchmark: pre-training the demo's zoo entries one after another in one process (as the demo's
sweeps did, building each entry on first use) against ``caulk.zoo.parallel`` (one worker process
per CPU, each with its share of the threads), measured in one run.

    python benchmarks/zoo_build.py [--models vit_femto,vit_pico,vit_nano] [--source-m 0,250,1000,4000]
                                   [--m-sweep-model vit_pico] [--steps 500] [--workers 0] [--smoke]

The entries are those ``python -m caulk.demo`` loads (``caulk.demo.zoo_jobs``: every model at
m=0 and the largest m, ``--m-sweep-model`` at the others), each built into a fresh temporary zoo
by each arm; ``--steps`` sets ``source_task.steps`` (the recipe's 500 by default). ``--workers
0``: one per usable CPU. Prints each entry's seconds, threads and source accuracy in both arms
(the weights differ in the last bits across thread counts; the accuracies should agree), the
two totals and their ratio, then the JSON result line. ``--smoke``: ViT-Femto, m = 0 and 40,
3 steps (seconds; numbers mean nothing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

from benchmarks.common import int_list, parse_args, print_result  # noqa: E402
from caulk.demo import MODELS, SOURCE_M, check_demo_overrides, demo_sweeps, zoo_jobs  # noqa: E402
from caulk.threads import usable_cpus  # noqa: E402
from caulk.zoo.build import build_zoo_entry  # noqa: E402
from caulk.zoo.parallel import ZooJob, build_parallel  # noqa: E402
from caulk.zoo.store import ensure_entry  # noqa: E402

SMOKE = {
    "models": "vit_femto",
    "m_sweep_model": "vit_femto",
    "source_m": "0,40",
    "steps": 3,
    "val_size": 32,
}


def demo_zoo(args, zoo: Path) -> list[ZooJob]:
    """The distinct zoo entries the demo loads, at ``--steps``, in ``zoo``."""
    models = [m for m in args.models.split(",") if m]
    sweeps = demo_sweeps(models, args.source_m, args.m_sweep_model, lora=True)
    extra = [
        f"paths.zoo_dir={zoo}",
        f"source_task.steps={args.steps}",
        f"source_task.warmup_steps={min(50, args.steps)}",
        f"source_task.val_size={args.val_size}",
    ]
    return list({job.entry: job for job in zoo_jobs(check_demo_overrides(sweeps, extra))}.values())


def sequential(jobs: list[ZooJob]) -> dict:
    """Every entry built in this process, one after another (the demo before the zoo stage)."""
    start, entries = time.perf_counter(), []
    for job in jobs:
        model_cfg, source_cfg = job.configs
        entry = job.entry
        build = partial(build_zoo_entry, model_cfg, source_cfg, entry, progress_bar=False)
        meta, _ = ensure_entry(entry, build)
        entries.append(meta)
    return {"seconds": round(time.perf_counter() - start, 2), "entries": summary(entries)}


def parallel(jobs: list[ZooJob], workers: int, log: Path) -> dict:
    """Every entry built by ``caulk.zoo.parallel.build_parallel``."""
    start = time.perf_counter()
    metas = build_parallel(jobs, workers or None, log)
    return {"seconds": round(time.perf_counter() - start, 2), "entries": summary(metas)}


def summary(metas: list[dict]) -> dict:
    """Per entry (``arch m=M``): its own pre-training seconds, threads and source accuracy."""
    return {
        f"{m['arch']} m={m['source_m']}": {
            "wall_time_s": m["wall_time_s"],
            "torch_threads": m["torch_threads"],
            "source_accuracy": m["source_accuracy"],
        }
        for m in metas
    }


def main() -> None:
    """Run both arms, print the table and the JSON result line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--source-m", type=int_list, default=list(SOURCE_M))
    p.add_argument("--m-sweep-model", default="vit_pico", help="the demo's m-sweep model")
    p.add_argument("--steps", type=int, default=500, help="source_task.steps")
    p.add_argument("--val-size", type=int, default=2048, help="source_task.val_size")
    p.add_argument("--workers", type=int, default=0, help="0: one per usable CPU")
    args = parse_args(p, SMOKE)
    with tempfile.TemporaryDirectory() as tmp:
        seq = sequential(demo_zoo(args, Path(tmp) / "sequential"))
        jobs = demo_zoo(args, Path(tmp) / "parallel")
        par = parallel(jobs, args.workers, Path(tmp) / "zoo.log")
    workers = min(len(jobs), args.workers or usable_cpus())
    print(f"| entry | one process: s (threads), acc | {workers} workers: s (threads), acc |")
    print("|---|---|---|")
    for name, one in seq["entries"].items():
        two = par["entries"][name]
        print(
            f"| {name} | {one['wall_time_s']:.1f} ({one['torch_threads']}), "
            f"{one['source_accuracy']:.3f} | {two['wall_time_s']:.1f} ({two['torch_threads']}), "
            f"{two['source_accuracy']:.3f} |"
        )
    ratio = seq["seconds"] / par["seconds"]
    print(
        f"total: one process {seq['seconds']:.1f} s, {workers} workers {par['seconds']:.1f} s: {ratio:.2f}x"
    )
    result = {
        "name": "zoo_build_parallel",
        "steps": args.steps,
        "workers": workers,
        "sequential": seq,
        "parallel": par,
        "ratio": round(ratio, 2),
    }
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
