"""Linear probe: only the new head trains."""

from __future__ import annotations

from caulk.peft.base import PeftMethod, register_peft


@register_peft("linear")
class LinearProbe(PeftMethod):
    """Frozen backbone, trainable linear head on its pooled features."""

    @property
    def backbone_is_frozen(self) -> bool:
        return True
