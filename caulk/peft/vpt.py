"""Visual Prompt Tuning (Jia et al. 2022): learned prompt tokens in a frozen ViT.

``shallow`` inserts ``tokens`` prompts after the class/register tokens before the first block;
``deep`` replaces them with a fresh set before every block. The prompts are dropped after the
last block, so pooling (class token or average) sees the usual tokens only.
"""

from __future__ import annotations

import math
from functools import reduce
from operator import mul

import torch
from torch import nn

from caulk.errors import CaulkConfigError
from caulk.peft.base import PeftMethod, arch_name, check_positive_int, is_vit, register_peft

MODES = ("shallow", "deep")


class VisualPrompts(nn.Module):
    """The prompt parameters, (1 or depth, tokens, dim), and the hooks that splice them in."""

    def __init__(self, depth: int, tokens: int, dim: int, patch_numel: int, prefix: int):
        super().__init__()
        self.prefix = prefix
        self.prompts = nn.Parameter(torch.empty(depth, tokens, dim))
        bound = math.sqrt(6.0 / float(patch_numel + dim))  # VPT's xavier-uniform init
        nn.init.uniform_(self.prompts, -bound, bound)

    @property
    def tokens(self) -> int:
        return self.prompts.shape[1]

    def splice(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Insert (layer 0) or replace (deeper layers, deep mode) the prompts in ``x``."""
        p = self.prefix
        prompts = self.prompts[min(layer, self.prompts.shape[0] - 1)].expand(x.shape[0], -1, -1)
        rest = x[:, p:] if layer == 0 else x[:, p + self.tokens :]
        return torch.cat([x[:, :p], prompts.to(x.dtype), rest], dim=1)

    def drop(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, : self.prefix], x[:, self.prefix + self.tokens :]], dim=1)


@register_peft("vpt")
class VPT(PeftMethod):
    """``tokens`` prompt tokens per layer (deep) or at the input only (shallow)."""

    knob = "tokens"

    def validate(self) -> None:
        check_positive_int(self.cfg, "tokens")
        if self.cfg.mode not in MODES:
            raise CaulkConfigError(
                f"peft.mode must be one of {', '.join(MODES)}, got {self.cfg.mode!r}"
            )

    def apply(self, backbone: nn.Module) -> None:
        if not is_vit(backbone):
            raise CaulkConfigError(
                f"peft=vpt needs a Vision Transformer (prompt tokens join a token sequence); "
                f"{arch_name(backbone)} is a {type(backbone).__name__} with no token sequence"
            )
        deep = self.cfg.mode == "deep"
        depth = len(backbone.blocks)
        patch_numel = reduce(mul, backbone.patch_embed.patch_size, 1) * 3
        vpt = VisualPrompts(
            depth if deep else 1,
            int(self.cfg.tokens),
            int(backbone.embed_dim),
            patch_numel,
            int(backbone.num_prefix_tokens),
        )
        backbone.vpt = vpt
        for i, blk in enumerate(backbone.blocks):
            if i == 0 or deep:
                blk.register_forward_pre_hook(
                    lambda mod, args, kwargs, i=i: ((vpt.splice(args[0], i), *args[1:]), kwargs),
                    with_kwargs=True,
                )
        backbone.blocks[-1].register_forward_hook(lambda mod, args, out: vpt.drop(out))
