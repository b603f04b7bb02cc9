"""Any method of Hugging Face ``peft`` (LoRA, LoHa, LoKr, IA3, ...) via ``inject_adapter_in_model``.

An optional extra: ``pip install 'caulk[hf]'`` (it pulls in transformers). ``peft.config`` is
passed through to HF peft's config class for ``peft.peft_type``. HF's ``layers_to_transform``
expects the numbered layers under a parent module and misses timm's root-level ``blocks``
(peft#3610), so caulk resolves it to the exact module names itself.
"""

from __future__ import annotations

import re
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from caulk.errors import CaulkConfigError
from caulk.peft.base import PeftMethod, default_train_mode_modules, register_peft

INSTALL_HINT = "pip install 'caulk[hf]' (or: pip install peft)"
#: config keys reported as the complexity knob, first present wins
KNOB_KEYS = ("r", "boft_block_size", "n_frequency")


def _import_peft():
    try:
        import peft  # optional dependency: the extra caulk[hf]
    except ImportError:
        raise CaulkConfigError(
            f"peft=hf needs Hugging Face peft, an optional extra: {INSTALL_HINT}"
        ) from None
    return peft


def _plain(cfg: Any) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg or {})


def layer_index(name: str, patterns: list[str] | None) -> int | None:
    """The layer number in a module name: after one of ``patterns``, else the first number."""
    if patterns:
        for p in patterns:
            m = re.search(rf"(?:^|\.)(?:{p})\.(\d+)(?:\.|$)", name)
            if m:
                return int(m.group(1))
        return None
    m = re.search(r"(?:^|\.)(\d+)(?:\.|$)", name)
    return int(m.group(1)) if m else None


@register_peft("hf")
class HFPeft(PeftMethod):
    """HF peft's ``peft_type`` with ``config`` passed through, injected into the timm backbone."""

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        config = _plain(cfg.get("config"))
        self.knob = next((f"config.{k}" for k in KNOB_KEYS if config.get(k) is not None), None)

    def knob_value(self) -> Any:
        return None if self.knob is None else _plain(self.cfg.get("config")).get(self.knob[7:])

    def _hf_config(self, **overrides: Any):
        peft = _import_peft()
        config = {**_plain(self.cfg.get("config")), **overrides}
        try:
            return peft.get_peft_config({"peft_type": str(self.cfg.peft_type).upper(), **config})
        except KeyError:
            known = ", ".join(sorted(str(k) for k in peft.mapping.PEFT_TYPE_TO_CONFIG_MAPPING))
            raise CaulkConfigError(
                f"unknown peft.peft_type={self.cfg.peft_type!r}; HF peft knows: {known}"
            ) from None
        except (TypeError, ValueError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise CaulkConfigError(f"peft=hf: bad peft.config: {first}") from None

    def validate(self) -> None:
        self._hf_config()

    def apply(self, backbone: nn.Module) -> None:
        peft = _import_peft()
        check_target_module_exists = peft.tuners.tuners_utils.check_target_module_exists
        config = _plain(self.cfg.get("config"))
        cleared = {k: None for k in ("layers_to_transform", "layers_pattern") if k in config}
        layers = config.pop("layers_to_transform", None)
        patterns = config.pop("layers_pattern", None)
        if layers is not None:
            layers = [layers] if isinstance(layers, int) else list(layers)
            patterns = [patterns] if isinstance(patterns, str) else patterns
            probe = self._hf_config(**cleared)
            names = [
                n
                for n, _ in backbone.named_modules()
                if n and check_target_module_exists(probe, n) and layer_index(n, patterns) in layers
            ]
            if not names:
                raise CaulkConfigError(
                    f"peft=hf: target_modules={config.get('target_modules')} in layers {layers} "
                    "matched no module of the backbone"
                )
            config["target_modules"] = "|".join(re.escape(n) for n in names)
        hf_config = self._hf_config(**{**config, **cleared})
        try:
            peft.inject_adapter_in_model(hf_config, backbone)
        except (ValueError, TypeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise CaulkConfigError(f"peft=hf: HF peft could not inject: {first}") from None
        if not any(p.requires_grad for p in backbone.parameters()):
            raise CaulkConfigError("peft=hf: HF peft injected no trainable parameters")

    def train_mode_modules(self, backbone: nn.Module) -> list[nn.Module]:
        base_tuner_layer = _import_peft().tuners.tuners_utils.BaseTunerLayer
        chosen = default_train_mode_modules(backbone)
        for layer in backbone.modules():
            if isinstance(layer, base_tuner_layer):
                chosen += [
                    m for n, m in layer.named_modules() if n and not n.startswith("base_layer")
                ]
        return list({id(m): m for m in chosen}.values())
