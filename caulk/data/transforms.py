"""Per-image transforms from the backbone's timm data config, and the train augmentation policies.

Evaluation (val, test, and training when ``data.augment=none``) uses timm's own eval transform
for the backbone (``timm.data.create_transform(**resolve_model_data_config(model))``: resize,
center crop by ``crop_pct``, normalise). Training may add an augmentation policy; it is off by
default, and paths that cache or probe frozen features must keep it off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timm.data import create_transform

from caulk.errors import CaulkConfigError

# Keyword arguments of timm.data.create_transform(is_training=True) per policy.
AUGMENT_POLICIES: dict[str, dict[str, Any] | None] = {
    "none": None,
    "flip_crop": {"scale": (0.08, 1.0), "hflip": 0.5, "color_jitter": 0.0, "re_prob": 0.0},
    "randaugment": {
        "scale": (0.08, 1.0),
        "hflip": 0.5,
        "auto_augment": "rand-m9-mstd0.5-inc1",
        "re_prob": 0.25,
    },
}


def check_augment_policy(policy: str) -> str:
    """Return ``policy`` if known, else raise CaulkConfigError naming the known ones."""
    if policy not in AUGMENT_POLICIES:
        raise CaulkConfigError(
            f"unknown data.augment={policy!r}; known: {', '.join(AUGMENT_POLICIES)}"
        )
    return policy


def _timm_kwargs(data_config: dict[str, Any]) -> dict[str, Any]:
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    return {k: data_config[k] for k in keys if k in data_config}


def eval_transform(data_config: dict[str, Any]) -> Callable:
    """The backbone's eval transform (PIL image -> normalised tensor)."""
    return create_transform(**_timm_kwargs(data_config), is_training=False)


def train_transform(data_config: dict[str, Any], policy: str) -> Callable:
    """The training transform for ``policy``: the eval transform when the policy is ``none``."""
    kwargs = AUGMENT_POLICIES[check_augment_policy(policy)]
    if kwargs is None:
        return eval_transform(data_config)
    return create_transform(**_timm_kwargs(data_config), is_training=True, **kwargs)


def image_mode(data_config: dict[str, Any]) -> str:
    """PIL mode matching the backbone's input channels."""
    return "L" if data_config["input_size"][0] == 1 else "RGB"
