"""Computing the frozen prefix's outputs over the training pool and the test split, once."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from caulk.cache.prefix import PrefixPlan, run_prefix


@dataclass
class CachedFeatures:
    """Prefix outputs for the whole training pool and the test split, in dataset order."""

    pool: torch.Tensor
    test: torch.Tensor
    plan: PrefixPlan = PrefixPlan(None)
    source: str = "computed"  # computed | disk


@torch.no_grad()
def extract_features(
    backbone: nn.Module,
    datamodule,
    batch_size: int = 256,
    plan: PrefixPlan | None = None,
    device: str | torch.device | None = None,
) -> CachedFeatures:
    """Run the frozen prefix of ``backbone`` (eval mode) once over the pool and the test split,
    on ``device`` (default: where the backbone is); the features come back on the CPU."""
    plan = plan or PrefixPlan(None)
    was_training = backbone.training
    home = next(backbone.parameters()).device
    device = torch.device(device) if device is not None else home
    backbone.eval().to(device)
    try:
        out = {}
        for part in ("pool", "test"):
            loader = DataLoader(
                datamodule.dataset(part, None),
                batch_size=batch_size,
                shuffle=False,
                collate_fn=datamodule.transform.collate if datamodule.in_memory else None,
                num_workers=datamodule.loader_kwargs.get("num_workers", 0),
            )
            out[part] = torch.cat(
                [run_prefix(backbone, plan, x.to(device)).cpu() for x, _, _ in loader]
            )
    finally:
        backbone.train(was_training).to(home)
    return CachedFeatures(out["pool"].contiguous(), out["test"].contiguous(), plan)
