"""Benchmark: the demo's LoRA sweep trained by the batched_suffix engine against the per-point
light loop (``cache.batch_points=false``), measured in one run.

    python benchmarks/suffix.py [--models vit_femto,vit_pico,vit_nano] [--weights none]
                                [--steps 150] [--smoke]

Each model's curve is the demo's (``caulk.demo.demo_sweeps``: ``peft=lora
peft.last_k_blocks=1``, n in ``LORA_N`` x 3 seeds x the two lr candidates of ``LORA_LRS``,
``tune=grid`` on the holdout split, ``--steps`` fixed steps), in this process, once per engine.
``--weights none`` (default) uses random-init backbones, so the benchmark needs no zoo; the
time per step does not depend on the weights' values (``--weights zoo`` uses the demo's m=4000
zoo entries, pre-training them first if the zoo lacks them). Prints per model and in total: the
per-point and batched seconds, their ratio (goal >= 5x), whether every point selected the same
lr, and the largest test-error difference (goal <= 0.005); then the JSON result line.
``--smoke``: ViT-Femto, 4 steps, n=10,40, one seed (seconds; numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from benchmarks.common import parse_args, print_result  # noqa: E402
from caulk.cli import CONFIG_DIR  # noqa: E402
from caulk.demo import LORA_LRS, LORA_N, LORA_STEPS  # noqa: E402
from caulk.train import train_curve  # noqa: E402

SMOKE = {"models": "vit_femto", "steps": 4, "ns": "10,40", "seeds": "0"}


def curve_overrides(model: str, args) -> list[str]:
    """The demo's LoRA curve of ``model`` (see the module doc)."""
    weights = (
        ["model.weights=zoo", "model.source_m=4000"]
        if args.weights == "zoo"
        else ["model.weights=none"]
    )
    return [
        "experiment=demo",
        f"model={model}",
        *weights,
        "peft=lora",
        "peft.last_k_blocks=1",
        "budget.mode=fixed",
        f"trainer.max_steps={args.steps}",
        f"trainer.val_check_interval={min(args.steps, 100)}",  # the trainer's 100 unless fewer
        f"tune.grid={{peft.lr:[{','.join(map(str, LORA_LRS))}]}}",
        f"curve.n=[{args.ns}]",
        f"curve.seeds=[{args.seeds}]",
        "cache.disk=false",
        "logger=none",
        "callbacks=none",
    ]


def timed_curve(overrides: list[str], out: Path) -> tuple[float, list[dict]]:
    """Wall time and records of one curve, in this process."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    start = time.perf_counter()
    records = train_curve(cfg)
    return time.perf_counter() - start, records


def compare(model: str, args, out: Path) -> dict:
    """The per-point and the batched curve of ``model``: timings and agreement."""
    base = curve_overrides(model, args)
    warm = [*base, "trainer.max_steps=2", "trainer.val_check_interval=1"]
    timed_curve(warm, out / "warm")  # imports, the zoo entry, the first extraction
    t_batched, batched = timed_curve(base, out / "batched")
    t_single, single = timed_curve([*base, "cache.batch_points=false"], out / "single")
    pairs = list(zip(batched, single, strict=True))
    return {
        "per_point_s": round(t_single, 2),
        "batched_s": round(t_batched, 2),
        "ratio": round(t_single / t_batched, 2),
        "points": len(batched),
        "train_loops": sorted({r["train_loop"] for r in batched + single}),
        "same_selected_lr": all(a["selected"] == b["selected"] for a, b in pairs),
        "max_test_error_diff": max(abs(a["test_error"] - b["test_error"]) for a, b in pairs),
    }


def main() -> None:
    """Run every model's comparison; print one line per model, then the JSON result line."""
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="vit_femto,vit_pico,vit_nano")
    p.add_argument("--weights", choices=("none", "zoo"), default="none")
    p.add_argument("--steps", type=int, default=LORA_STEPS)
    p.add_argument("--ns", default=",".join(map(str, LORA_N)))
    p.add_argument("--seeds", default="0,1,2")
    args = parse_args(p, SMOKE)
    result: dict = {"name": "batched_suffix_lora_sweep", "steps": args.steps, "models": {}}
    with tempfile.TemporaryDirectory(prefix="caulk-suffix-") as tmp:
        for model in args.models.split(","):
            result["models"][model] = compare(model, args, Path(tmp) / model)
            print(model, json.dumps(result["models"][model]), flush=True)
    per_model = result["models"].values()
    single = sum(m["per_point_s"] for m in per_model)
    batched = sum(m["batched_s"] for m in per_model)
    result.update(
        per_point_s=round(single, 2),
        batched_s=round(batched, 2),
        ratio=round(single / batched, 2),
        same_selected_lr=all(m["same_selected_lr"] for m in per_model),
        max_test_error_diff=max(m["max_test_error_diff"] for m in per_model),
        command="python benchmarks/suffix.py " + " ".join(sys.argv[1:]),
    )
    print(
        f"LoRA sweep: per-point {single:.1f} s, batched {batched:.1f} s: {single / batched:.2f}x "
        f"(goal >= 5x); same lr everywhere: {result['same_selected_lr']}; max test-error diff "
        f"{result['max_test_error_diff']:.4f} (goal <= 0.005)"
    )
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
