"""Benchmark: a linear-probe curve (7 n x 3 seeds) with and without feature caching, one run.

    python benchmarks/curve.py [--steps 300] [--model vit_pico] [--repeats 3]
                               [--ns 10,20,...,640] [--seeds 0,1,2] [--smoke]

Prints one JSON object on its last line: name, ratio (uncached / cached wall time, higher is
better; the cached time is the median of ``--repeats`` curves), the raw timings, the cost of one
feature-extraction pass (the floor, median of as many passes) and the cached curve's multiple of
it, and whether the cached and uncached curves agree. ``benchmarks/curve_floor.py`` measures the
floor multiple alone, for backbones whose uncached curve would take too long. ``--smoke``:
ViT-Femto, 2 n x 1 seed, 4 steps, 1 repeat, in seconds (checks the path; the ratio means nothing).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from benchmarks.common import FIXED_RECIPE, int_list, parse_args, print_result
from caulk.backbones import create_backbone
from caulk.cache.extract import extract_features
from caulk.cli import CONFIG_DIR
from caulk.data import build_datamodule
from caulk.train import train_curve

NS = [10, 20, 40, 80, 160, 320, 640]
SEEDS = [0, 1, 2]
#: ``--smoke``'s model, steps and grid (also of curve_floor.py, partial_k.py with one n)
SMOKE_GRID = {"model": "vit_femto", "steps": 4, "ns": "10,20", "seeds": "0"}
SMOKE = {**SMOKE_GRID, "repeats": 1}


def run_curve(
    overrides: list[str], cached: bool, out: Path, ns=NS, seeds=SEEDS
) -> tuple[float, list[dict]]:
    """Wall time and records of the ``ns`` x ``seeds`` curve under ``overrides``, in this process."""
    overrides = [
        *overrides,
        f"curve.n=[{','.join(map(str, ns))}]",
        f"curve.seeds=[{','.join(map(str, seeds))}]",
        f"cache.features={str(cached).lower()}",
        "cache.disk=false",  # the in-process cache only: the prefix is computed inside the timing
        "trainer.enable_progress_bar=false",
        "logger=none",
        "callbacks=none",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    gc.collect()  # no timing pays for the garbage of what ran before it
    start = time.perf_counter()
    records = train_curve(cfg)
    return time.perf_counter() - start, records


def warm_up(overrides: list[str], out: Path) -> None:
    """One tiny point down each path first, so neither timing pays the one-off imports and
    model set-up of this process."""
    for cached in (True, False):
        run_curve(
            [*overrides, *FIXED_RECIPE, "trainer.max_steps=2"],
            cached,
            out / f"warm{cached}",
            [10],
            [0],
        )


def extraction_pass(model: str, extra: list[str] = ()) -> float:
    """Seconds of one feature-extraction pass of ``model`` over the data (pool and test)."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}", *extra])
    bb = create_backbone(cfg.model)
    dm = build_datamodule(cfg.data, 0)
    dm.set_input_transform(bb.data_config, augment=False)
    gc.collect()
    start = time.perf_counter()
    extract_features(bb.model, dm)
    return time.perf_counter() - start


def cached_curve_and_floor(
    model: str, steps: int, repeats: int, out: Path, extra: list[str] = (), ns=NS, seeds=SEEDS
) -> dict:
    """Median seconds of ``repeats`` cached curves and of as many extraction passes, alternated
    (``extra``: more overrides, e.g. ``model.weights=none``)."""
    base = [f"model={model}", f"trainer.max_steps={steps}", *FIXED_RECIPE, *extra]
    curves, passes, records = [], [], []
    for r in range(repeats):
        t, records = run_curve(base, True, out / f"cached{r}", ns, seeds)
        curves.append(t)
        passes.append(extraction_pass(model, extra))
    cached, floor = statistics.median(curves), statistics.median(passes)
    return {
        "cached_s": round(cached, 3),
        "cached_runs_s": [round(t, 3) for t in curves],
        "extraction_pass_s": round(floor, 3),
        "extraction_runs_s": [round(t, 3) for t in passes],
        "cached_over_extraction": round(cached / floor, 2),
        "points": len(records),
        "records": records,
    }


def add_grid_args(p: argparse.ArgumentParser, model: str) -> None:
    """The flags curve.py, curve_floor.py and partial_k.py share: model, steps and the grid."""
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--model", default=model)
    p.add_argument("--ns", type=int_list, default=NS, help="the curve's n, e.g. 10,20,40")
    p.add_argument("--seeds", type=int_list, default=SEEDS, help="its seeds, e.g. 0,1,2")


def max_test_error_diff(a: list[dict], b: list[dict]) -> float:
    """The largest test-error difference between two curves' records, point by point."""
    return max(abs(x["test_error"] - y["test_error"]) for x, y in zip(a, b, strict=True))


def main() -> None:
    """Run the benchmark and print its JSON result line."""
    p = argparse.ArgumentParser()
    add_grid_args(p, "vit_pico")
    p.add_argument("--repeats", type=int, default=3, help="cached curves (median reported)")
    args = parse_args(p, SMOKE)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    grid = {"ns": args.ns, "seeds": args.seeds}
    with tempfile.TemporaryDirectory() as tmp:
        warm_up([f"model={args.model}"], Path(tmp))
        cached = cached_curve_and_floor(args.model, args.steps, args.repeats, Path(tmp), **grid)
        base = [f"model={args.model}", f"trainer.max_steps={args.steps}", *FIXED_RECIPE]
        t_plain, plain = run_curve(base, False, Path(tmp) / "plain", **grid)
    diff = max_test_error_diff(cached.pop("records"), plain)
    result = {
        "name": "curve_linear_probe_cache",
        "ratio": round(t_plain / cached["cached_s"], 2),
        "uncached_s": round(t_plain, 2),
        **cached,
        "steps_per_point": args.steps,
        "max_test_error_diff": diff,
        "model": args.model,
    }
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
