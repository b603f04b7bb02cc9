"""Benchmark: a cached linear-probe curve (7 n x 3 seeds) against one feature-extraction pass.

    python benchmarks/curve_floor.py [--model vit_nano] [--steps 300] [--repeats 3]
                                     [--ns 10,20,...,640] [--seeds 0,1,2] [--smoke] [KEY=VALUE ...]

e.g. ``python benchmarks/curve_floor.py --model vit_t --repeats 1 model.weights=none`` (timm's
ViT-Ti/16 at 224 px, random init: offline).

The pass over the data is the floor of any curve on a frozen backbone; what a cached curve adds
to it (21 heads trained, 21 records written) does not grow with the backbone. Prints one JSON
object on its last line: name, ratio (extraction pass / cached curve, higher is better; the
goal "within 1.5x of the pass" is ratio >= 0.67), the medians and every run. ``--smoke``: the
sizes of ``curve.py --smoke``, in seconds (checks the path; the ratio means nothing).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

from benchmarks.common import parse_args, print_result
from benchmarks.curve import SMOKE, add_grid_args, cached_curve_and_floor, warm_up


def main() -> None:
    """Run the benchmark and print its JSON result line."""
    p = argparse.ArgumentParser()
    add_grid_args(p, "vit_nano")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("overrides", nargs="*", help="more Hydra overrides, e.g. model.weights=none")
    args = parse_args(p, SMOKE)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        warm_up([f"model={args.model}", *args.overrides], Path(tmp))
        result = cached_curve_and_floor(
            args.model, args.steps, args.repeats, Path(tmp), args.overrides, args.ns, args.seeds
        )
    result.pop("records")
    result = {
        "name": "curve_cached_vs_extraction_pass",
        "ratio": round(result["extraction_pass_s"] / result["cached_s"], 2),
        **result,
        "steps_per_point": args.steps,
        "model": args.model,
        "overrides": args.overrides,
    }
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
