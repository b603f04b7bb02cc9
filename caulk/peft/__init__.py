"""PEFT methods ("caulks"): each freezes the backbone and adds its own trainable parts.

A method is a class registered under its ``peft.name`` with ``@register_peft``; ``apply_peft``
freezes the backbone, lets the method modify it, and reports what trains.
"""

from caulk.peft.base import PeftMethod, apply_peft, get_peft, list_pefts, register_peft
from caulk.peft.linear import LinearProbe
from caulk.peft.lora import LoRA, LoRALinear

__all__ = [
    "LoRA",
    "LoRALinear",
    "LinearProbe",
    "PeftMethod",
    "apply_peft",
    "get_peft",
    "list_pefts",
    "register_peft",
]
