"""The PEFT registry and the base class of a method."""

from __future__ import annotations

from typing import Any

from torch import nn

from caulk.errors import CaulkConfigError

_REGISTRY: dict[str, type[PeftMethod]] = {}


def register_peft(name: str):
    """Class decorator: make a PeftMethod available as ``peft=<name>``."""

    def deco(cls: type[PeftMethod]) -> type[PeftMethod]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def list_pefts() -> list[str]:
    return sorted(_REGISTRY)


def get_peft(name: str) -> type[PeftMethod]:
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


def apply_peft(backbone: nn.Module, peft_cfg: Any) -> PeftMethod:
    """Freeze ``backbone``, apply the configured method to it, return the method."""
    method = get_peft(peft_cfg.name)(peft_cfg)
    method.validate()
    for p in backbone.parameters():
        p.requires_grad_(False)
    method.apply(backbone)
    return method
