"""Benchmark: steady-state training throughput of a LoRA run through caulk (Lightning Trainer,
TransferModule, CSV logging) against a bare PyTorch loop on the same model, batch and data.

    python benchmarks/overhead.py [--model vit_nano] [--steps 200] [--warmup 20]

Both run the same images (no feature cache: LoRA in every block), the same AdamW + cosine
schedule and batch size; both are timed from step ``warmup`` to the last step. Prints one JSON
object on its last line: name, ratio (caulk images/s over bare images/s, higher is better) and
the raw timings.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's caulk

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from caulk.train import CONFIG_DIR, train

TIMES: dict[str, float] = {}


class StepTimer(pl.Callback):
    """Wall time from the start of step ``warmup`` to the end of the last training step."""

    def __init__(self, warmup: int):
        self.warmup = warmup

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            TIMES["start"] = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        TIMES["end"] = time.perf_counter()


def config(model: str, steps: int, warmup: int, out: Path):
    overrides = [
        f"model={model}",
        "peft=lora",
        "cache.features=false",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        f"+callbacks.step_timer._target_={__name__}.StepTimer",
        f"+callbacks.step_timer.warmup={warmup}",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    return cfg


def run_caulk(cfg, steps: int, warmup: int) -> float:
    TIMES.clear()
    train(cfg)
    return (steps - warmup) / (TIMES["end"] - TIMES["start"])


def run_bare(cfg, steps: int, warmup: int) -> float:
    """The same model (LoRA applied to a fresh timm backbone + BN/Linear head), data and
    optimizer in a plain loop: forward, cross-entropy, backward, step, schedule."""
    from caulk.backbones import create_backbone
    from caulk.data import build_datamodule
    from caulk.module import FeatureStandardize
    from caulk.peft import apply_peft

    pl.seed_everything(0, verbose=False)
    backbone = create_backbone(cfg.model)
    model = copy.deepcopy(backbone.model)
    apply_peft(model, cfg.peft)
    model.eval()  # the frozen backbone stays in eval mode, as in caulk
    dm = build_datamodule(cfg.data, 0)
    dm.set_input_transform(backbone.data_config)
    nf = int(model.num_features)
    head = torch.nn.Sequential(FeatureStandardize(nf), torch.nn.Linear(nf, dm.num_classes))
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = instantiate(cfg.optimizer)(params)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loader = dm.train_dataloader()
    step, start = 0, None
    while step < steps:
        for x, y, _ in loader:
            if step == warmup:
                start = time.perf_counter()
            loss = F.cross_entropy(head(model(x)), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step >= steps:
                break
    return (steps - warmup) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vit_nano")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(args.model, args.steps, args.warmup, Path(tmp) / "run")
        batch = int(cfg.data.batch_size)
        caulk_sps, bare_sps = [], []
        for _ in range(args.repeats):  # interleaved: both see the same machine load
            bare_sps.append(run_bare(cfg, args.steps, args.warmup))
            caulk_sps.append(run_caulk(cfg, args.steps, args.warmup))
    c, b = max(caulk_sps), max(bare_sps)
    print(
        json.dumps(
            {
                "name": "overhead_lora_lightning_vs_bare",
                "ratio": round(c / b, 3),
                "caulk_images_per_s": round(c * batch, 1),
                "bare_images_per_s": round(b * batch, 1),
                "caulk_steps_per_s_runs": [round(s, 2) for s in caulk_sps],
                "bare_steps_per_s_runs": [round(s, 2) for s in bare_sps],
                "batch_size": batch,
                "timed_steps": args.steps - args.warmup,
                "model": args.model,
                "device": "cpu",
            }
        )
    )


if __name__ == "__main__":
    main()
