"""Bottleneck adapters: Houlsby et al. 2019 (serial) and AdaptFormer (Chen et al. 2022, parallel).

ViTs: ``serial`` puts an adapter h + up(act(down(h))) after the attention and after the MLP of
every block; ``parallel`` adds s * up(relu(down(x))) beside every block's MLP (x = the MLP's
input). ConvNets: the same with 1x1 convolutions around every residual block (``parallel``
strides its down-projection like the block). ``up`` starts at zero: the adapted network starts
as the frozen one.
"""

from __future__ import annotations

import torch
from torch import nn

from caulk.errors import CaulkConfigError
from caulk.peft.base import (
    PeftMethod,
    arch_name,
    check_last_k_blocks,
    check_positive_int,
    is_vit,
    last_blocks,
    register_peft,
    replace_module,
    residual_blocks,
)

STYLES = ("serial", "parallel")


class Bottleneck(nn.Module):
    """up(act(down(x))) with ``up`` zero-initialised; Linear on tokens or 1x1 conv on maps."""

    def __init__(
        self, dim_in: int, width: int, dim_out: int, act: type[nn.Module], conv_stride: int = 0
    ):
        super().__init__()
        if conv_stride:
            self.down = nn.Conv2d(dim_in, width, 1, stride=conv_stride)
            self.up = nn.Conv2d(width, dim_out, 1)
        else:
            self.down, self.up = nn.Linear(dim_in, width), nn.Linear(width, dim_out)
        self.act = act()
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class SerialAdapter(nn.Module):
    """``op`` then a residual bottleneck on its output (Houlsby)."""

    def __init__(self, op: nn.Module, adapter: Bottleneck):
        super().__init__()
        self.op, self.adapter = op, adapter

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        h = self.op(x, *args, **kwargs)
        return h + self.adapter(h)


class ParallelAdapter(nn.Module):
    """``op(x) + scale * bottleneck(x)`` (AdaptFormer)."""

    def __init__(self, op: nn.Module, adapter: Bottleneck, scale: float):
        super().__init__()
        self.op, self.adapter, self.scale = op, adapter, scale

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.op(x, *args, **kwargs) + self.scale * self.adapter(x)


def probe_block_shapes(backbone: nn.Module, blocks: list[tuple[str, nn.Module]]):
    """(in_channels, out_channels, stride) of each conv block, from one dummy forward pass."""
    shapes: dict[str, tuple] = {}
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out, name=name: shapes.__setitem__(name, (inp[0].shape, out.shape))
        )
        for name, m in blocks
    ]
    size = tuple((getattr(backbone, "pretrained_cfg", None) or {}).get("input_size", (3, 224, 224)))
    was_training = backbone.training
    try:
        with torch.no_grad():
            backbone.eval()(torch.zeros(1, *size))
    finally:
        for h in hooks:
            h.remove()
        backbone.train(was_training)
    result = []
    for name, _ in blocks:
        (_, cin, hin, _), (_, cout, hout, _) = shapes[name]
        result.append((cin, cout, max(1, hin // hout)))
    return result


@register_peft("adapter")
class Adapter(PeftMethod):
    """Bottleneck adapters of hidden size ``width`` in every block; ``style`` serial or parallel."""

    knob = "width"

    def validate(self) -> None:
        check_positive_int(self.cfg, "width")
        if self.cfg.style not in STYLES:
            raise CaulkConfigError(
                f"peft.style must be one of {', '.join(STYLES)}, got {self.cfg.style!r}"
            )
        if float(self.cfg.scale) <= 0:
            raise CaulkConfigError(f"peft.scale must be positive, got {self.cfg.scale}")
        check_last_k_blocks(self.cfg)

    def apply(self, backbone: nn.Module) -> None:
        width, style, scale = int(self.cfg.width), self.cfg.style, float(self.cfg.scale)
        blocks = residual_blocks(backbone)
        if not blocks:
            raise CaulkConfigError(
                f"peft=adapter: {arch_name(backbone)} has no residual blocks "
                "(blocks.N, layerN.M or stages.N.blocks.M)"
            )
        blocks = last_blocks(backbone, self.cfg) or blocks  # peft.last_k_blocks
        if is_vit(backbone):
            d = int(backbone.embed_dim)
            for _, blk in blocks:
                if style == "serial":
                    blk.attn = SerialAdapter(blk.attn, Bottleneck(d, width, d, nn.GELU))
                    blk.mlp = SerialAdapter(blk.mlp, Bottleneck(d, width, d, nn.GELU))
                else:
                    blk.mlp = ParallelAdapter(blk.mlp, Bottleneck(d, width, d, nn.ReLU), scale)
            return
        for (name, blk), (cin, cout, stride) in zip(
            blocks, probe_block_shapes(backbone, blocks), strict=True
        ):
            if style == "serial":
                new = SerialAdapter(blk, Bottleneck(cout, width, cout, nn.ReLU, conv_stride=1))
            else:
                adapter = Bottleneck(cin, width, cout, nn.ReLU, conv_stride=stride)
                new = ParallelAdapter(blk, adapter, scale)
            replace_module(backbone, name, new)
