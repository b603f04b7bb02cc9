"""PEFT methods ("caulks"): each freezes the backbone and adds its own trainable parts.

A method is a class registered under its ``peft.name`` with ``@register_peft``; ``apply_peft``
freezes the backbone, lets the method modify it, and reports what trains.
"""

from caulk.peft.adapter import Adapter
from caulk.peft.base import PeftMethod, apply_peft, get_peft, list_pefts, register_peft
from caulk.peft.bitfit import BitFit
from caulk.peft.export import ADAPTER_NAME, export_adapter, load_adapter, read_adapter
from caulk.peft.full import FullFineTune
from caulk.peft.hf import HFPeft
from caulk.peft.linear import LinearProbe
from caulk.peft.lora import LoRA, LoRAConv2d, LoRALayer, LoRALinear, LoRAQKV, merge_lora
from caulk.peft.partial import PartialFineTune
from caulk.peft.ssf import SSF
from caulk.peft.vpt import VPT

__all__ = [
    "ADAPTER_NAME",
    "SSF",
    "VPT",
    "Adapter",
    "BitFit",
    "FullFineTune",
    "HFPeft",
    "LinearProbe",
    "LoRA",
    "LoRAConv2d",
    "LoRALayer",
    "LoRALinear",
    "LoRAQKV",
    "PartialFineTune",
    "PeftMethod",
    "apply_peft",
    "export_adapter",
    "get_peft",
    "list_pefts",
    "load_adapter",
    "merge_lora",
    "read_adapter",
    "register_peft",
]
