"""Caching the frozen prefix of the network: pay for the frozen forward pass once.

A method whose trainable part starts after a frozen prefix trains on that prefix's output,
computed once per (backbone weights, input transform, dataset, prefix depth):

- nothing inside the backbone trains (``peft=linear``): the whole backbone's output;
- a timm VisionTransformer whose trainable parameters all sit in ``blocks[j:]`` and the neck
  (``peft=partial``; ``lora``/``adapter`` with ``peft.last_k_blocks``): the tokens after
  ``blocks[:j]``; the module then runs ``blocks[j:]``, the final norm and pooling on them.

The prefix runs in eval mode, exactly as on the uncached path (the frozen backbone is kept in eval
mode there too), and batches come in the same order from the same samplers and seeds, so results
agree to floating-point noise (tested). Augmented training images change at every epoch, so
augmentation and the cache exclude each other: ``data.augment`` other than ``none`` turns caching
off. The cache lives in memory for a process (curve mode) and, with ``cache.disk``, in a
content-addressed store on disk shared by the jobs of a sweep (``caulk.feature_store``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader

from caulk.data.sharding import eval_loader, train_loader
from caulk.peft.base import PeftMethod, is_vit

#: ViT modules after the blocks (what the module runs after the cached tokens).
_VIT_NECK = ("norm", "fc_norm", "head", "attn_pool", "head_drop")
_BLOCK = re.compile(r"blocks\.(\d+)\.")


@dataclass(frozen=True)
class PrefixPlan:
    """Where the frozen prefix ends: ``depth=None`` is the whole backbone (its pooled output),
    ``depth=j`` the token sequence after ``blocks[:j]`` of a timm VisionTransformer."""

    depth: int | None

    @property
    def tag(self) -> str:
        return "all" if self.depth is None else f"vit_blocks_{self.depth}"


def plan_prefix(model: nn.Module, method: PeftMethod) -> PrefixPlan | None:
    """The longest frozen prefix of ``model`` (PEFT already applied) worth caching, or None.

    None when a trainable parameter sits before the blocks (VPT prompts, SSF/BitFit in the patch
    embedding, full fine-tuning) or the backbone is not a plain timm VisionTransformer.
    """
    if method.backbone_is_frozen:
        return PrefixPlan(None)
    if not is_vit(model) or _custom_vit_forward(model):
        return None
    first = len(model.blocks)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        m = _BLOCK.match(name)
        if m:
            first = min(first, int(m.group(1)))
        elif name.split(".", 1)[0] not in _VIT_NECK:
            return None
    return PrefixPlan(first) if first > 0 else None


def _custom_vit_forward(model: nn.Module) -> bool:
    from timm.models.vision_transformer import VisionTransformer

    return (
        type(model).forward_features is not VisionTransformer.forward_features
        or type(model).forward_head is not VisionTransformer.forward_head
        or bool(getattr(model, "grad_checkpointing", False))
    )


def run_prefix(model: nn.Module, plan: PrefixPlan, x: torch.Tensor) -> torch.Tensor:
    """The frozen prefix's output for images ``x``."""
    if plan.depth is None:
        return model(x)
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
    for blk in model.blocks[: plan.depth]:
        x = blk(x)
    return x


def run_suffix(model: nn.Module, plan: PrefixPlan, x: torch.Tensor) -> torch.Tensor:
    """The backbone's output from the prefix's output ``x`` (what follows the cached prefix)."""
    if plan.depth is None:
        return x
    for blk in model.blocks[plan.depth :]:
        x = blk(x)
    return model.forward_head(model.norm(x))


def prefix_state(model: nn.Module, plan: PrefixPlan) -> dict[str, torch.Tensor]:
    """The parameters and buffers the prefix's output depends on (what keys the disk cache)."""
    state = model.state_dict()
    if plan.depth is None:
        return state
    late = re.compile(rf"(blocks\.(\d+)\.|({'|'.join(_VIT_NECK)})\.)")
    keep = {}
    for k, v in state.items():
        m = late.match(k)
        if m and (m.group(2) is None or int(m.group(2)) >= plan.depth):
            continue
        keep[k] = v
    return keep


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
                datamodule._dataset(part, None),
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


class IndexedBatches(torch.utils.data.Dataset):
    """(x, y, index) rows of tensors, fetched a batch at a time (no per-row collation)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        self.x, self.y, self.index = x, y, index

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], self.index[i]

    def __getitems__(self, rows: list[int]):
        t = torch.as_tensor(rows)
        return self.x[t], self.y[t], self.index[t]


def _take_batch(batch):
    return batch


class CachedFeatureDataModule:
    """Wraps a DownstreamDataModule: same splits, samplers and seeds, cached tensors for images."""

    def __init__(self, datamodule, features: CachedFeatures):
        self.dm = datamodule
        self.features = features

    def __getattr__(self, name):  # n, pool_size, val_idx, num_classes, ... of the wrapped module
        return getattr(self.dm, name)

    def _loader(self, x: torch.Tensor, y: torch.Tensor, idx, shuffle: bool) -> DataLoader:
        t = torch.as_tensor(idx)
        ds = IndexedBatches(x[t], y[t], t)
        batch_size = int(self.dm.cfg.batch_size)
        if shuffle:  # the same exact-n, seeded, resumable samplers as the uncached path
            return train_loader(ds, batch_size, self.dm.seed, collate_fn=_take_batch)
        return eval_loader(ds, batch_size, collate_fn=_take_batch)

    def _labels(self, part: str) -> torch.Tensor:
        s = self.dm.splits
        return torch.as_tensor(s.pool_labels if part == "pool" else s.test_labels).long()

    def train_dataloader(self) -> DataLoader:
        return self._loader(
            self.features.pool, self._labels("pool"), self.dm.train_idx, shuffle=True
        )

    def val_dataloader(self) -> DataLoader | list:
        if len(self.dm.val_idx) == 0:
            return []
        return self._loader(
            self.features.pool, self._labels("pool"), self.dm.val_idx, shuffle=False
        )

    def test_dataloader(self) -> DataLoader:
        n = len(self.features.test)
        return self._loader(self.features.test, self._labels("test"), range(n), shuffle=False)
