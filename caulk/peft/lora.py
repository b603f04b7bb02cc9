"""LoRA (Hu et al. 2021): W x + (alpha / r) * B A x, with A random, B zero, W frozen."""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn

from caulk.errors import CaulkConfigError
from caulk.peft.base import PeftMethod, register_peft

#: Shorthand target names -> regexes over module names (timm ViT naming).
TARGET_ALIASES = {
    "qkv": r".*\.attn\.qkv",
    "proj": r".*\.attn\.proj",
    "mlp": r".*\.mlp\.fc[12]",
}


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update; mergeable for inference."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight (outputs unchanged, no extra inference cost)."""
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False


def resolve_targets(target: str | list[str]) -> list[str]:
    targets = [target] if isinstance(target, str) else list(target)
    return [TARGET_ALIASES.get(t, t) for t in targets]


@register_peft("lora")
class LoRA(PeftMethod):
    """LoRA on the Linear layers whose names match ``targets`` (aliases: qkv, proj, mlp)."""

    knob = "rank"

    def validate(self) -> None:
        c = self.cfg
        if int(c.rank) <= 0:
            raise CaulkConfigError(f"peft.rank must be a positive integer, got {c.rank}")
        if float(c.alpha) <= 0:
            raise CaulkConfigError(f"peft.alpha must be positive, got {c.alpha}")
        if not 0.0 <= float(c.dropout) < 1.0:
            raise CaulkConfigError(f"peft.dropout must be in [0, 1), got {c.dropout}")
        for pattern in resolve_targets(c.targets):
            try:
                re.compile(pattern)
            except re.error as e:
                raise CaulkConfigError(f"peft.targets: bad regex {pattern!r} ({e})") from None

    def apply(self, backbone: nn.Module) -> None:
        c = self.cfg
        patterns = [re.compile(p) for p in resolve_targets(c.targets)]
        names = [
            name
            for name, m in backbone.named_modules()
            if isinstance(m, nn.Linear) and any(p.fullmatch(name) for p in patterns)
        ]
        if not names:
            raise CaulkConfigError(
                f"peft.targets={_fmt(c.targets)} matched no nn.Linear layer of the backbone "
                f"(aliases: {', '.join(TARGET_ALIASES)}; or a regex over module names)"
            )
        for name in names:
            parent_name, _, child = name.rpartition(".")
            parent = backbone.get_submodule(parent_name) if parent_name else backbone
            base = getattr(parent, child)
            setattr(parent, child, LoRALinear(base, int(c.rank), float(c.alpha), float(c.dropout)))
        self.wrapped = names


def _fmt(targets: Any) -> str:
    return targets if isinstance(targets, str) else ",".join(map(str, targets))


def merge_lora(model: nn.Module) -> int:
    """Merge every LoRALinear in ``model``; returns how many were merged."""
    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    for m in layers:
        m.merge()
    return len(layers)
