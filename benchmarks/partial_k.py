"""Benchmark: a partial fine-tuning curve (last k=1 of the blocks trains) with and without the
cached frozen prefix, measured in one run.

    python benchmarks/partial_k.py [--steps 300] [--model vit_micro] [--blocks 1]
                                   [--methods partial,lora_last_k]

Also runs ``peft=lora peft.last_k_blocks=1`` the same way (``--methods`` picks). Caching k=1
of L blocks saves at most the L-1 frozen forwards of each step: with ViT-Micro's 8 blocks about
(8 + 2) / (1 + 2) = 3.3x from arithmetic alone, with ViT-Nano's 6 about 2.7x. Prints one JSON
object on its last line: name, ratio (uncached / cached wall time of the partial curve, higher is better), the raw
timings, and the largest test-error difference between the cached and uncached curves.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

from benchmarks.curve import NS, SEEDS, run_curve, warm_up


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--model", default="vit_micro")
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--methods", default="partial,lora_last_k")
    args = p.parse_args()
    base = [f"model={args.model}", f"trainer.max_steps={args.steps}"]
    methods = {
        "partial": ["peft=partial", f"peft.blocks={args.blocks}"],
        "lora_last_k": ["peft=lora", f"peft.last_k_blocks={args.blocks}"],
    }
    unknown = set(args.methods.split(",")) - set(methods)
    if unknown or "partial" not in args.methods.split(","):
        p.error(f"--methods: a comma list of {', '.join(methods)} including partial")
    methods = {k: v for k, v in methods.items() if k in args.methods.split(",")}
    result = {"name": "partial_k_prefix_cache", "model": args.model, "k": args.blocks}
    with tempfile.TemporaryDirectory() as tmp:
        for name, peft in methods.items():
            warm_up([f"model={args.model}", *peft], Path(tmp) / name)
            t_cached, cached = run_curve([*base, *peft], True, Path(tmp) / f"{name}_c")
            t_plain, plain = run_curve([*base, *peft], False, Path(tmp) / f"{name}_u")
            diff = max(
                abs(a["test_error"] - b["test_error"]) for a, b in zip(cached, plain, strict=True)
            )
            result[name] = {
                "ratio": round(t_plain / t_cached, 2),
                "cached_s": round(t_cached, 2),
                "uncached_s": round(t_plain, 2),
                "cache_prefix": cached[0]["cache_prefix"],
                "train_loop": cached[0]["train_loop"],
                "max_test_error_diff": diff,
            }
            print(name, json.dumps(result[name]), flush=True)
    result["ratio"] = result["partial"]["ratio"]
    result.update(points=len(NS) * len(SEEDS), steps_per_point=args.steps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
