"""Benchmark: images/s of the batched_suffix engine against the per-point light loop at K points,
with peak memory, for a large backbone on a GPU (runs on a CPU too, slowly).

    python benchmarks/suffix_throughput.py [--model vit_b] [--ks 8,24,72] [--steps 50]
                                           [--device auto] [--smoke]

For each K: a curve of K points (``curve.n`` = K/8 sizes from 320 up, 8 seeds; every batch
full) of ``peft=lora peft.last_k_blocks=2`` on the cached prefix tokens of ``--model`` (random
init: the speed does not depend on the weights), ``--steps`` fixed steps each, trained by
``python -m caulk.train``'s own path in this process, once batched and once per point
(``cache.batch_points=false``). The prefix is extracted once into a disk cache first, so no
timing pays for it. Reports per K and engine: seconds, images/s (K x steps x batch / seconds,
per point and in all) and the peak memory (``torch.cuda.max_memory_allocated`` on a GPU, the
process's peak RSS on a CPU), then the JSON result line. ``--smoke``: ViT-Femto on the CPU,
K = 2 and 4, 3 steps (seconds; the numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from benchmarks.common import int_list, parse_args, print_result  # noqa: E402
from caulk.cli import CONFIG_DIR  # noqa: E402
from caulk.train import train_curve  # noqa: E402

SMOKE = {"model": "vit_femto", "ks": [2, 4], "steps": 3, "device": "cpu", "batch": 16}
SEEDS_PER_N = 8


def curve_overrides(args, k: int, cache_dir: Path) -> list[str]:
    """A curve of ``k`` points: ceil(k / 8) sizes x up to 8 seeds, every batch full."""
    seeds = min(k, SEEDS_PER_N)
    sizes = [320 + 32 * i for i in range(-(-k // seeds))]
    return [
        f"model={args.model}",
        "model.weights=none",
        "peft=lora",
        "peft.last_k_blocks=2",
        "tune=none",
        "budget.mode=fixed",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={args.steps}",
        f"trainer.accelerator={'cpu' if args.device == 'cpu' else 'auto'}",
        f"data.batch_size={args.batch}",
        f"curve.n=[{','.join(map(str, sizes))}]",
        f"curve.seeds=[{','.join(map(str, range(seeds)))}]",
        "cache.disk=true",
        f"cache.dir={cache_dir}",
        "logger=none",
        "callbacks=none",
    ]


def timed(overrides: list[str], out: Path) -> tuple[float, list[dict], float]:
    """Seconds, records and peak memory (MiB) of one curve."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    cuda = torch.cuda.is_available() and "trainer.accelerator=cpu" not in overrides
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    records = train_curve(cfg)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return seconds, records, peak


def measure(args, k: int, tmp: Path) -> dict:
    """Both engines on the K-point curve."""
    base = curve_overrides(args, k, tmp / "cache")
    out: dict = {}
    for engine, extra in (("batched", []), ("per_point", ["cache.batch_points=false"])):
        seconds, records, peak = timed([*base, *extra], tmp / f"k{k}-{engine}")
        images = sum(r["global_steps"] for r in records) * args.batch
        out[engine] = {
            "seconds": round(seconds, 3),
            "images_per_s": round(images / seconds, 1),
            "images_per_s_per_point": round(images / seconds / len(records), 1),
            "peak_mib": round(peak, 1),
            "train_loop": sorted({r["train_loop"] for r in records}),
            "points": len(records),
        }
    out["ratio"] = round(out["per_point"]["seconds"] / out["batched"]["seconds"], 2)
    return out


def main() -> None:
    """Warm the prefix cache, then measure every K; print one line per K and the JSON line."""
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vit_b")
    p.add_argument("--ks", type=int_list, default=[8, 24, 72])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--device", choices=("auto", "cpu"), default="auto")
    args = parse_args(p, SMOKE)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu"
    result: dict = {"name": "batched_suffix_throughput", "model": args.model, "device": device}
    if device == "cuda":
        result["gpu"] = torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory(prefix="caulk-throughput-") as tmp:
        warm = [*curve_overrides(args, 1, Path(tmp) / "cache"), "trainer.max_steps=1"]
        timed(warm, Path(tmp) / "warm")  # extracts the prefix into the disk cache
        result["ks"] = {}
        for k in args.ks:
            result["ks"][str(k)] = measure(args, k, Path(tmp))
            print(f"K={k}", json.dumps(result["ks"][str(k)]), flush=True)
    result["command"] = "python benchmarks/suffix_throughput.py " + " ".join(sys.argv[1:])
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
