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
content-addressed store on disk shared by the jobs of a sweep (``caulk.cache.store``).

This module plans the prefix and runs it; ``extract`` computes its outputs, ``store`` keeps
them on disk, ``data`` serves them as batches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

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
