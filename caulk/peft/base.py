"""The PEFT registry, the base class of a method, and helpers shared by methods."""

from __future__ import annotations

import re
from typing import Any

from timm.models.vision_transformer import VisionTransformer
from torch import nn

from caulk.config import is_int
from caulk.errors import CaulkConfigError

_REGISTRY: dict[str, type[PeftMethod]] = {}


def register_peft(name: str):
    """Class decorator: make a PeftMethod available as ``peft=<name>`` (ValueError when the
    name is taken, as ``caulk.data.register_dataset``)."""

    def deco(cls: type[PeftMethod]) -> type[PeftMethod]:
        if name in _REGISTRY:  # as the dataset registry: a second method never hides the first
            raise ValueError(f"peft {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def list_pefts() -> list[str]:
    """Names of all registered PEFT methods."""
    return sorted(_REGISTRY)


def get_peft(name: str) -> type[PeftMethod]:
    """The PeftMethod class registered as ``name`` (CaulkConfigError naming the known ones)."""
    if name not in _REGISTRY:
        raise CaulkConfigError(f"unknown peft.name={name!r}; known: {', '.join(list_pefts())}")
    return _REGISTRY[name]


class PeftMethod:
    """Modifies a frozen backbone in place; the classification head is added by the module."""

    name: str = ""
    #: config key of the method's complexity knob (e.g. "rank"); None if it has none.
    knob: str | None = None

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self.trainable_params = (
            0  # parameters this method trains inside the backbone (set by apply_peft)
        )

    def validate(self) -> None:
        """Check the config before anything is built (raise CaulkConfigError)."""

    def apply(self, backbone: nn.Module) -> None:
        """Insert or unfreeze the trainable parts of ``backbone`` (already frozen)."""

    @property
    def backbone_is_frozen(self) -> bool:
        """True when nothing inside the backbone trains (its forward can run without grad)."""
        return False

    def knob_value(self) -> Any:
        return None if self.knob is None else self.cfg.get(self.knob)

    def train_mode_modules(self, backbone: nn.Module) -> list[nn.Module]:
        """The backbone modules that follow the module's train/eval mode (all others stay eval)."""
        return default_train_mode_modules(backbone)


def default_train_mode_modules(backbone: nn.Module) -> list[nn.Module]:
    """Modules whose parameters all train, plus the parameter- and buffer-free ones inside them.

    A module trains when every parameter of its subtree trains (a tuned block, BatchNorm
    included), or when its own parameters all train (a LoRA or SSF wrapper around a frozen
    layer), or when it holds no state and its parent trains (dropout inside a trained block).
    A BatchNorm with any frozen parameter keeps its running statistics frozen (eval mode).
    """
    chosen: list[nn.Module] = []
    trains: dict[str, bool] = {}
    for name, m in backbone.named_modules():
        own = list(m.parameters(recurse=False))
        sub = list(m.parameters())
        stateless = not own and not list(m.buffers(recurse=False))
        parent = name.rpartition(".")[0] if name else None
        decision = (
            (bool(sub) and all(p.requires_grad for p in sub))
            or (bool(own) and all(p.requires_grad for p in own))
            or (stateless and parent is not None and trains.get(parent, False))
        )
        trains[name] = decision
        if decision:
            chosen.append(m)
    return chosen


def apply_peft(backbone: nn.Module, peft_cfg: Any) -> PeftMethod:
    """Freeze ``backbone``, apply the configured method to it, return the method."""
    method = get_peft(peft_cfg.name)(peft_cfg)
    method.validate()
    for p in backbone.parameters():
        p.requires_grad_(False)
    method.apply(backbone)
    method.trainable_params = sum(p.numel() for p in backbone.parameters() if p.requires_grad)
    return method


def replace_module(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the submodule ``name`` of ``root`` was."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def arch_name(backbone: nn.Module) -> str:
    """The backbone's timm architecture name (else its class name)."""
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(backbone).__name__)


#: residual blocks of timm's ViTs, ResNets and ConvNeXts (module names)
RESIDUAL_BLOCK = re.compile(r"blocks\.\d+|layer\d+\.\d+|stages\.\d+\.blocks\.\d+")


def residual_blocks(backbone: nn.Module) -> list[tuple[str, nn.Module]]:
    """The (name, module) of every residual block, in forward order."""
    return [(n, m) for n, m in backbone.named_modules() if RESIDUAL_BLOCK.fullmatch(n)]


def is_vit(backbone: nn.Module) -> bool:
    """A timm VisionTransformer (token sequence, ``blocks`` of attention + MLP)."""
    return isinstance(backbone, VisionTransformer)


def last_blocks(backbone: nn.Module, cfg: Any) -> list[tuple[str, nn.Module]] | None:
    """The residual blocks that ``peft.last_k_blocks`` selects (None: no restriction)."""
    k = cfg.get("last_k_blocks")
    if k is None:
        return None
    blocks = residual_blocks(backbone)
    if k > len(blocks):
        raise CaulkConfigError(
            f"peft.last_k_blocks={k} but {arch_name(backbone)} has only {len(blocks)} blocks"
        )
    return blocks[len(blocks) - k :]


def check_last_k_blocks(cfg: Any) -> None:
    if cfg.get("last_k_blocks") is not None:
        check_positive_int(cfg, "last_k_blocks")


def check_positive_int(cfg: Any, key: str, minimum: int = 1) -> int:
    value = cfg.get(key)
    if not is_int(value) or value < minimum:
        raise CaulkConfigError(f"peft.{key} must be an integer >= {minimum}, got {value!r}")
    return value
