"""Partial fine-tuning: the last k blocks (timm's ``group_matcher``) and the final norm train."""

from __future__ import annotations

import re

from timm.models import group_parameters
from torch import nn

from caulk.errors import CaulkConfigError
from caulk.peft.base import PeftMethod, arch_name, check_positive_int, register_peft


def block_groups(backbone: nn.Module) -> tuple[list[list[str]], list[str]]:
    """Parameter names per block (in depth order) and of the neck after the blocks.

    Blocks are timm's coarse groups (ViT: each transformer block; ResNet/ConvNeXt: each stage);
    the stem is left out; the neck is what follows the last block (ViT ``norm``, ConvNeXt
    ``head.norm``), trained together with the last block.
    """
    if not hasattr(backbone, "group_matcher"):
        raise CaulkConfigError(
            f"peft=partial: {arch_name(backbone)} has no timm group_matcher to find its blocks"
        )
    matcher = backbone.group_matcher(coarse=True)
    specs = matcher.get("blocks")
    specs = specs if isinstance(specs, (list, tuple)) else [(specs, None)]
    numbered = [re.compile(r) for r, suffix in specs if r and suffix is None]
    groups = group_parameters(backbone, matcher)
    lids = sorted(groups)[1:]  # group 0 is the stem
    blocks, neck = [], []
    for lid in lids:
        names = groups[lid]
        if any(r.match(n) for r in numbered for n in names):
            blocks.append(names)
        else:
            neck.extend(names)
    return blocks, neck


@register_peft("partial")
class PartialFineTune(PeftMethod):
    """The last ``blocks`` blocks train (BatchNorm statistics inside them update); the rest is frozen."""

    knob = "blocks"

    def validate(self) -> None:
        check_positive_int(self.cfg, "blocks")

    def apply(self, backbone: nn.Module) -> None:
        k = int(self.cfg.blocks)
        blocks, neck = block_groups(backbone)
        if k > len(blocks):
            raise CaulkConfigError(
                f"peft.blocks={k} but {arch_name(backbone)} has only {len(blocks)} blocks"
            )
        names = {n for group in blocks[-k:] for n in group} | set(neck)
        for n, p in backbone.named_parameters():
            if n in names:
                p.requires_grad_(True)
