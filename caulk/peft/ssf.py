"""SSF (Lian et al. 2022): a learned per-channel scale and shift after every linear, conv and
norm layer of the frozen backbone (scale 1, shift 0 at the start: the identity)."""

from __future__ import annotations

import torch
from timm.layers import LayerNorm2d
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from caulk.errors import CaulkConfigError
from caulk.peft.base import PeftMethod, arch_name, register_peft, replace_module


class ScaleShift(nn.Module):
    """``op(x) * scale + shift`` over the channel dimension (last for tokens, 1 for NCHW maps)."""

    def __init__(self, op: nn.Module, channels: int, channel_dim: int):
        super().__init__()
        self.op = op
        self.channel_dim = channel_dim
        self.ssf_scale = nn.Parameter(torch.ones(channels))
        self.ssf_shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        out = self.op(x, *args, **kwargs)
        shape = [1] * out.dim()
        shape[self.channel_dim] = -1
        return out * self.ssf_scale.view(shape) + self.ssf_shift.view(shape)


def _channels(m: nn.Module) -> tuple[int, int] | None:
    """(channels, channel dim) of a layer SSF follows, or None."""
    if isinstance(m, nn.Linear):
        return m.out_features, -1
    if isinstance(m, nn.Conv2d):
        return m.out_channels, 1
    if isinstance(m, LayerNorm2d):
        return m.normalized_shape[0], 1
    if isinstance(m, nn.LayerNorm) and m.elementwise_affine:
        return m.normalized_shape[0], -1
    if isinstance(m, _BatchNorm):
        return m.num_features, 1
    return None


@register_peft("ssf")
class SSF(PeftMethod):
    """Scale and shift after every Linear, Conv2d, LayerNorm and BatchNorm of the backbone."""

    def apply(self, backbone: nn.Module) -> None:
        targets = [(n, m, _channels(m)) for n, m in backbone.named_modules() if n]
        targets = [(n, m, c) for n, m, c in targets if c is not None]
        if not targets:
            raise CaulkConfigError(
                f"peft=ssf: {arch_name(backbone)} has no linear/conv/norm layers"
            )
        for name, m, (channels, dim) in targets:
            replace_module(backbone, name, ScaleShift(m, channels, dim))
