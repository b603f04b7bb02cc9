"""Full fine-tuning: every backbone parameter trains (with ``model.weights=none``: from scratch)."""

from __future__ import annotations

from torch import nn

from caulk.peft.base import PeftMethod, register_peft


@register_peft("full")
class FullFineTune(PeftMethod):
    """Everything trains; BatchNorm statistics update. The baseline for every caulk.

    With ``model.weights=none`` this is the from-scratch baseline of the transfer scaling laws
    (effective data transferred, Hernandez et al. 2021).
    """

    def apply(self, backbone: nn.Module) -> None:
        for p in backbone.parameters():
            p.requires_grad_(True)

    def train_mode_modules(self, backbone: nn.Module) -> list[nn.Module]:
        return list(backbone.modules())
