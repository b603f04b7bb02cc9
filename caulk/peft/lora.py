"""LoRA (Hu et al. 2021): W x + (alpha / r) * B A x, with A random, B zero, W frozen.

Targets are nn.Linear layers (ViT attention/MLP, ConvNeXt MLP) and nn.Conv2d layers (ResNet,
ConvNeXt). ``q``/``k``/``v`` split timm's fused ``attn.qkv`` so only the chosen projections get a
delta (the paper's LoRA on Q and V).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from caulk.config import is_int, is_number
from caulk.errors import CaulkConfigError
from caulk.peft.base import (
    PeftMethod,
    check_last_k_blocks,
    last_blocks,
    register_peft,
    replace_module,
)

#: Shorthand target names -> regexes over module names (timm naming).
TARGET_ALIASES = {
    "qkv": r".*\.attn\.qkv",
    "proj": r".*\.attn\.proj",
    "mlp": r".*\.mlp\.fc[12]",
    "conv": r"(layer\d+|stages\.\d+)\..*conv\w*",
}
#: Slices of timm's fused qkv Linear (output rows [q | k | v]).
QKV_SLICES = ("q", "k", "v")


class LoRALayer(nn.Module):
    """A frozen ``base`` layer plus a trainable low-rank update; mergeable for inference.

    Subclasses add the factors ``lora_A`` / ``lora_B`` and define ``update`` (the unscaled
    low-rank output) and ``delta_weight`` (the update as a weight, for merging).
    """

    def __init__(self, base: nn.Module, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        self.base = base
        self.rank = rank
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if self.merged:
            return out
        return out + self.update(self.dropout(x), out) * self.scaling

    def update(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The low-rank branch on the (dropped-out) input ``h``, unscaled; ``out`` is the base's."""
        raise NotImplementedError

    def delta_weight(self) -> torch.Tensor:
        raise NotImplementedError

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


def _init_a(a: torch.Tensor) -> None:
    nn.init.kaiming_uniform_(a, a=math.sqrt(5))


class LoRALinear(LoRALayer):
    """LoRA on an ``nn.Linear``: A is (r, in), B is (out, r)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__(base, rank, alpha, dropout)
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        _init_a(self.lora_A)

    def update(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return h @ self.lora_A.T @ self.lora_B.T

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scaling


class LoRAConv2d(LoRALayer):
    """LoRA on an ``nn.Conv2d`` (groups=1): A is a conv with the base's kernel into r channels,
    B a 1x1 conv back to the output channels (as in HF peft)."""

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float, dropout: float = 0.0):
        if base.groups != 1:
            raise CaulkConfigError(
                f"peft=lora: grouped/depthwise Conv2d (groups={base.groups}) is not supported; "
                "narrow peft.targets"
            )
        super().__init__(base, rank, alpha, dropout)
        kh, kw = base.kernel_size
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_channels, kh, kw))
        self.lora_B = nn.Parameter(torch.zeros(base.out_channels, rank, 1, 1))
        _init_a(self.lora_A)

    def update(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        b = self.base
        return F.conv2d(
            F.conv2d(h, self.lora_A, None, b.stride, b.padding, b.dilation), self.lora_B
        )

    def delta_weight(self) -> torch.Tensor:
        a = self.lora_A.flatten(1)  # (r, in*kh*kw)
        return (self.lora_B.flatten(1) @ a).view_as(self.base.weight) * self.scaling


class LoRAQKV(LoRALayer):
    """LoRA on chosen slices (q, k, v) of a fused qkv Linear; each slice has its own A, B."""

    def __init__(
        self, base: nn.Linear, slices: list[str], rank: int, alpha: float, dropout: float = 0.0
    ):
        if base.out_features % 3:
            raise CaulkConfigError(f"peft=lora: {base} is not a fused qkv projection")
        super().__init__(base, rank, alpha, dropout)
        self.slices = [s for s in QKV_SLICES if s in slices]
        d = base.out_features // 3
        self.lora_A = nn.ParameterDict(
            {s: nn.Parameter(torch.empty(rank, base.in_features)) for s in self.slices}
        )
        self.lora_B = nn.ParameterDict({s: nn.Parameter(torch.zeros(d, rank)) for s in self.slices})
        for a in self.lora_A.values():
            _init_a(a)

    def update(self, h: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        d = self.base.out_features // 3
        parts = [
            h @ self.lora_A[s].T @ self.lora_B[s].T
            if s in self.lora_A
            else out.new_zeros((*out.shape[:-1], d))
            for s in QKV_SLICES
        ]
        return torch.cat(parts, dim=-1)

    def delta_weight(self) -> torch.Tensor:
        d, w = self.base.out_features // 3, self.base.weight
        return (
            torch.cat(
                [
                    self.lora_B[s] @ self.lora_A[s]
                    if s in self.lora_A
                    else w.new_zeros(d, w.shape[1])
                    for s in QKV_SLICES
                ]
            )
            * self.scaling
        )


def split_targets(target: str | list[str]) -> list[str]:
    """``"q,v"`` or ``[q, v]`` -> ``["q", "v"]``."""
    items = [target] if isinstance(target, str) else [str(t) for t in target]
    return [t.strip() for item in items for t in item.split(",") if t.strip()]


def resolve_targets(target: str | list[str]) -> list[str]:
    """Regexes for the non-slice targets (aliases expanded)."""
    return [TARGET_ALIASES.get(t, t) for t in split_targets(target) if t not in QKV_SLICES]


@register_peft("lora")
class LoRA(PeftMethod):
    """LoRA on the layers whose names match ``targets``.

    Aliases: qkv (fused), q/k/v (slices of the fused qkv), proj, mlp, conv; anything else is a
    regex over module names matched against nn.Linear and nn.Conv2d layers.
    """

    knob = "rank"

    def validate(self) -> None:
        c = self.cfg
        if not is_int(c.rank) or c.rank <= 0:
            raise CaulkConfigError(f"peft.rank must be a positive integer, got {c.rank}")
        if not is_number(c.alpha) or not c.alpha > 0:
            raise CaulkConfigError(f"peft.alpha must be positive, got {c.alpha!r}")
        if not is_number(c.dropout) or not 0.0 <= c.dropout < 1.0:
            raise CaulkConfigError(f"peft.dropout must be in [0, 1), got {c.dropout!r}")
        targets = split_targets(c.targets)
        if not targets:
            raise CaulkConfigError("peft.targets is empty")
        if "qkv" in targets and set(targets) & set(QKV_SLICES):
            raise CaulkConfigError(
                "peft.targets: qkv and q/k/v both target the fused qkv layer; use one of them"
            )
        check_last_k_blocks(c)
        for pattern in resolve_targets(c.targets):
            try:
                re.compile(pattern)
            except re.error as e:
                raise CaulkConfigError(f"peft.targets: bad regex {pattern!r} ({e})") from None

    def apply(self, backbone: nn.Module) -> None:
        c = self.cfg
        rank, alpha, dropout = int(c.rank), float(c.alpha), float(c.dropout)
        slices = [t for t in split_targets(c.targets) if t in QKV_SLICES]
        patterns = [re.compile(p) for p in resolve_targets(c.targets)]
        qkv = re.compile(TARGET_ALIASES["qkv"])
        layers = dict(backbone.named_modules())
        chosen = last_blocks(backbone, c)
        if chosen is not None:  # peft.last_k_blocks: only layers inside the last k blocks
            inside = tuple(f"{n}." for n, _ in chosen)
            layers = {n: m for n, m in layers.items() if n.startswith(inside)}
        wrapped: list[str] = []
        for name, m in layers.items():
            if slices and isinstance(m, nn.Linear) and qkv.fullmatch(name):
                replace_module(backbone, name, LoRAQKV(m, slices, rank, alpha, dropout))
            elif isinstance(m, nn.Linear) and any(p.fullmatch(name) for p in patterns):
                replace_module(backbone, name, LoRALinear(m, rank, alpha, dropout))
            elif isinstance(m, nn.Conv2d) and any(p.fullmatch(name) for p in patterns):
                replace_module(backbone, name, LoRAConv2d(m, rank, alpha, dropout))
            else:
                continue
            wrapped.append(name)
        if slices and not any(
            isinstance(layers[n], nn.Linear) and qkv.fullmatch(n) for n in wrapped
        ):
            raise CaulkConfigError(
                f"peft.targets={_fmt(c.targets)}: q/k/v need a fused attn.qkv layer (a timm ViT)"
            )
        if not wrapped:
            raise CaulkConfigError(
                f"peft.targets={_fmt(c.targets)} matched no nn.Linear or nn.Conv2d layer of the "
                f"backbone (aliases: {', '.join([*TARGET_ALIASES, *QKV_SLICES])}; or a regex over "
                "module names)"
            )
        self.wrapped = wrapped


def _fmt(targets: Any) -> str:
    return targets if isinstance(targets, str) else ",".join(map(str, targets))


def merge_lora(model: nn.Module) -> int:
    """Merge every LoRA layer in ``model``; returns how many were merged."""
    layers = [m for m in model.modules() if isinstance(m, LoRALayer)]
    for m in layers:
        m.merge()
    return len(layers)
