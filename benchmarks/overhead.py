"""Benchmark: steady-state training throughput of a LoRA run through caulk (Lightning Trainer,
TransferModule, CSV logging) against a bare PyTorch loop on the same model, batch and data.

    python benchmarks/overhead.py [--model vit_nano] [--steps 200] [--warmup 20] [--repeats 2]
        [--device cpu|cuda] [--precision 32-true|bf16-mixed] [--compile] [--smoke]

Both run the same images (no feature cache: LoRA in every block), the same AdamW + cosine
schedule and batch size; both are timed from step ``warmup`` to the last step, ``--repeats``
times each, interleaved (every caulk run trains into a fresh output folder). Prints one JSON
object on its last line: name, ratio (caulk images/s over bare images/s, higher is better) and
the raw timings. ``--device cuda`` runs both on the GPU, ``--precision bf16-mixed`` under bf16
autocast (Lightning's precision plugin for caulk), ``--compile`` torch.compiles both
(``compile=true`` for caulk) and also runs the bare loop eager: its images/s are reported and
its first steps' losses are checked against the compiled loop's (``compile_max_loss_diff``).
``--smoke``: ViT-Femto, 6 steps, 2 repeats, in seconds (checks the path; the ratio means nothing).
"""

from __future__ import annotations

import argparse
import copy
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

from benchmarks.common import FIXED_RECIPE, parse_args, print_result
from caulk.backbones import create_backbone
from caulk.cli import CONFIG_DIR
from caulk.data import build_datamodule
from caulk.module import FeatureStandardize
from caulk.peft import apply_peft
from caulk.train import train

TIMES: dict[str, float] = {}
CHECK_STEPS = 10  # losses compared between the compiled and the eager bare loop
SMOKE = {"model": "vit_femto", "steps": 6, "warmup": 2, "repeats": 2}


class StepTimer(pl.Callback):
    """Wall time from the start of step ``warmup`` to the end of the last training step."""

    def __init__(self, warmup: int):
        self.warmup = warmup

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            _sync(pl_module.device.type)
            TIMES["start"] = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step >= trainer.max_steps:  # the last step: wait for the GPU once
            _sync(pl_module.device.type)
        TIMES["end"] = time.perf_counter()


def config(model: str, steps: int, warmup: int, device: str, precision: str, compiled: bool):
    """The caulk run's config: LoRA on images (no feature cache), timed by ``StepTimer``."""
    overrides = [
        f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
        f"trainer.precision={precision}",
        f"compile={str(compiled).lower()}",
        f"model={model}",
        "peft=lora",
        *FIXED_RECIPE,
        "cache.features=false",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps}",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        f"+callbacks.step_timer._target_={__name__}.StepTimer",
        f"+callbacks.step_timer.warmup={warmup}",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("train", overrides=overrides)


def run_caulk(cfg, steps: int, warmup: int, out: Path) -> float:
    """Train ``cfg`` through caulk into the fresh folder ``out``; its timed steps per second.

    The folder must be new: caulk skips a point whose folder already holds an ok record (a
    relaunched sweep), and then no step would be timed.
    """
    if out.exists():
        raise FileExistsError(f"overhead.py: {out} exists; each caulk run needs a fresh folder")
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    TIMES.clear()
    record = train(cfg)
    if "start" not in TIMES or "end" not in TIMES:
        raise RuntimeError(
            f"overhead.py: no training step of the caulk run was timed (status "
            f"{record.get('status')!r}, {record.get('global_steps')} steps, warmup {warmup}); "
            "did it train at all? (caulk skips a point whose folder holds an ok record)"
        )
    return (steps - warmup) / (TIMES["end"] - TIMES["start"])


def _bare_setup(cfg, steps: int, device: str):
    """The bare loop's network, optimizer, schedule and train loader, as caulk builds them."""
    pl.seed_everything(0, verbose=False)
    backbone = create_backbone(cfg.model)
    model = copy.deepcopy(backbone.model)
    apply_peft(model, cfg.peft)
    model.eval()  # the frozen backbone stays in eval mode, as in caulk
    dm = build_datamodule(cfg.data, 0)
    dm.set_input_transform(backbone.data_config)
    nf = int(model.num_features)
    head = torch.nn.Sequential(FeatureStandardize(nf), torch.nn.Linear(nf, dm.num_classes))
    model, head = model.to(device), head.to(device)
    params = [p for p in model.parameters() if p.requires_grad] + list(head.parameters())
    opt = instantiate(cfg.optimizer)(params)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    return torch.nn.Sequential(model, head), opt, sched, dm.train_dataloader()


def run_bare(
    cfg, steps: int, warmup: int, device: str, compiled: bool
) -> tuple[float, list[float]]:
    """The same model (LoRA applied to a fresh timm backbone + BN/Linear head), data and
    optimizer in a plain loop: forward, cross-entropy, backward, step, schedule. Returns
    steps/s and the losses of the first ``CHECK_STEPS`` steps."""
    net, opt, sched, loader = _bare_setup(cfg, steps, device)
    forward = torch.compile(net) if compiled else net
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    step, start, losses = 0, None, []
    while step < steps:
        for x, y, _ in loader:
            if step == warmup:
                _sync(device)
                start = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(forward(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step < CHECK_STEPS:
                losses.append(loss.item())
            step += 1
            if step >= steps:
                break
    _sync(device)
    return (steps - warmup) / (time.perf_counter() - start), losses


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def parse() -> argparse.Namespace:
    """The command line (``--smoke``: ``SMOKE``'s sizes)."""
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vit_nano")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed first steps (default 20; with --compile one epoch + 5, so the epoch's "
        "short last batch, which recompiles, is not timed)",
    )
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true")
    p.add_argument("--compile", action="store_true", help="torch.compile (checked against eager)")
    args = parse_args(p, SMOKE)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("overhead.py: --device cuda but torch sees no GPU")
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    return args


def default_warmup(cfg, compiled: bool) -> int:
    """20 steps; compiled, one epoch + 5 (the epoch's short last batch recompiles)."""
    if not compiled:
        return 20
    per_epoch = -(-len(build_datamodule(cfg.data, 0).train_idx) // int(cfg.data.batch_size))
    return per_epoch + 5


def measure(cfg, args, tmp: Path) -> dict:
    """Steps/s of ``args.repeats`` bare and caulk runs, interleaved (both see the same machine
    load), and with ``--compile`` the eager bare loop's speed and loss check."""
    caulk_sps, bare_sps, eager = [], [], {}
    for r in range(args.repeats):
        sps, losses = run_bare(cfg, args.steps, args.warmup, args.device, args.compile)
        bare_sps.append(sps)
        caulk_sps.append(run_caulk(cfg, args.steps, args.warmup, tmp / f"run{r}"))
    if args.compile:
        sps, eager_losses = run_bare(cfg, args.steps, args.warmup, args.device, False)
        diff = max(abs(a - b) for a, b in zip(losses, eager_losses, strict=True))
        batch = int(cfg.data.batch_size)
        eager = {
            "bare_eager_images_per_s": round(sps * batch, 1),
            "compile_speedup_bare": round(max(bare_sps) / sps, 3),
            "compile_max_loss_diff": diff,
            "compile_loss_steps_checked": len(losses),
        }
    return {"caulk": caulk_sps, "bare": bare_sps, "eager": eager}


def main() -> None:
    """Run the benchmark and print its JSON result line."""
    args = parse()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = config(args.model, args.steps, 0, args.device, args.precision, args.compile)
    if args.warmup is None:
        args.warmup = default_warmup(cfg, args.compile)
    if args.warmup >= args.steps:
        sys.exit(f"overhead.py: --steps must exceed the warmup of {args.warmup} steps")
    cfg.callbacks.step_timer.warmup = args.warmup
    with tempfile.TemporaryDirectory() as tmp:
        runs = measure(cfg, args, Path(tmp))
    c, b, batch = max(runs["caulk"]), max(runs["bare"]), int(cfg.data.batch_size)
    result = {
        "name": "overhead_lora_lightning_vs_bare",
        "ratio": round(c / b, 3),
        "caulk_images_per_s": round(c * batch, 1),
        "bare_images_per_s": round(b * batch, 1),
        "caulk_steps_per_s_runs": [round(s, 2) for s in runs["caulk"]],
        "bare_steps_per_s_runs": [round(s, 2) for s in runs["bare"]],
        **runs["eager"],
        "batch_size": batch,
        "timed_steps": args.steps - args.warmup,
        "model": args.model,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "precision": args.precision,
        "compile": args.compile,
    }
    print_result(result, args.smoke)


if __name__ == "__main__":
    main()
