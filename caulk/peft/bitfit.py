"""BitFit (Ben Zaken et al. 2022): only the bias terms train."""

from __future__ import annotations

from torch import nn

from caulk.errors import CaulkConfigError
from caulk.peft.base import PeftMethod, arch_name, register_peft


@register_peft("bitfit")
class BitFit(PeftMethod):
    """Every ``bias`` parameter of the backbone trains (for BatchNorm nets: the BN shifts).

    BatchNorm running statistics stay frozen: only the affine shift moves.
    """

    def apply(self, backbone: nn.Module) -> None:
        biases = [p for n, p in backbone.named_parameters() if n.rpartition(".")[2] == "bias"]
        if not biases:
            raise CaulkConfigError(f"peft=bitfit: {arch_name(backbone)} has no bias parameters")
        for p in biases:
            p.requires_grad_(True)
