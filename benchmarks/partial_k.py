"""Benchmark: a partial fine-tuning curve (last k=1 of the blocks trains) with and without the
cached frozen prefix, measured in one run.

    python benchmarks/partial_k.py [--steps 300] [--model vit_micro] [--blocks 1]
                                   [--methods partial,lora_last_k] [--ns 10,20,...,640]
                                   [--seeds 0,1,2] [--smoke]

Also runs ``peft=lora peft.last_k_blocks=1`` the same way (``--methods`` picks). Caching k=1
of L blocks saves at most the L-1 frozen forwards of each step: with ViT-Micro's 8 blocks about
(8 + 2) / (1 + 2) = 3.3x from arithmetic alone, with ViT-Nano's 6 about 2.7x. Prints one JSON
object on its last line: name, ratio (uncached / cached wall time of the partial curve, higher is better), the raw
timings, and the largest test-error difference between the cached and uncached curves.
``--smoke``: ViT-Femto (3 blocks), one point of 4 steps, both methods, in seconds
(checks the path; the ratios mean nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

from benchmarks.common import FIXED_RECIPE, parse_args, print_result
from benchmarks.curve import SMOKE_GRID, add_grid_args, max_test_error_diff, run_curve, warm_up

METHODS = {
    "partial": lambda k: ["peft=partial", f"peft.blocks={k}"],
    "lora_last_k": lambda k: ["peft=lora", f"peft.last_k_blocks={k}"],
}


def parse() -> argparse.Namespace:
    """The command line (``--smoke``: tiny sizes), ``--methods`` as a list."""
    p = argparse.ArgumentParser()
    add_grid_args(p, "vit_micro")
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--methods", default="partial,lora_last_k")
    args = parse_args(p, {**SMOKE_GRID, "ns": "10"})  # one point: both methods in seconds
    args.methods = args.methods.split(",")
    if set(args.methods) - set(METHODS) or "partial" not in args.methods:
        p.error(f"--methods: a comma list of {', '.join(METHODS)} including partial")
    return args


def compare(args, name: str, out: Path) -> dict:
    """The cached and the uncached curve of method ``name``: timings and agreement."""
    base = [
        f"model={args.model}",
        f"trainer.max_steps={args.steps}",
        *FIXED_RECIPE,
        *METHODS[name](args.blocks),
    ]
    grid = {"ns": args.ns, "seeds": args.seeds}
    warm_up([f"model={args.model}", *METHODS[name](args.blocks)], out / name)
    t_cached, cached = run_curve(base, True, out / f"{name}_c", **grid)
    t_plain, plain = run_curve(base, False, out / f"{name}_u", **grid)
    return {
        "ratio": round(t_plain / t_cached, 2),
        "cached_s": round(t_cached, 2),
        "uncached_s": round(t_plain, 2),
        "cache_prefix": cached[0]["cache_prefix"],
        "train_loop": cached[0]["train_loop"],
        "max_test_error_diff": max_test_error_diff(cached, plain),
    }


def main() -> None:
    """Run the benchmark and print its JSON result line (and one line per method before it)."""
    args = parse()
    result = {"name": "partial_k_prefix_cache", "model": args.model, "k": args.blocks}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.methods:
            result[name] = compare(args, name, Path(tmp))
            print(name, json.dumps(result[name]), flush=True)
    result["ratio"] = result["partial"]["ratio"]
    result.update(points=len(args.ns) * len(args.seeds), steps_per_point=args.steps)
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
