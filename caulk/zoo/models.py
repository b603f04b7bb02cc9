"""caulk's own small timm architectures (registered in timm's registry), sized for CPU.

They are ordinary timm VisionTransformers at 32x32 input with 8x8 patches (16 tokens); the offline zoo
pre-trains them over a source size m. ``timm.create_model("caulk_vit_pico")`` works once
``caulk`` is imported.
"""

from __future__ import annotations

from timm.models import generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer, _create_vision_transformer


def _cfg(**kwargs):
    return {
        "url": "",
        "num_classes": 0,
        "input_size": (3, 32, 32),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "fixed_input_size": True,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "first_conv": "patch_embed.proj",
        "classifier": "head",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "caulk_vit_femto.untrained": _cfg(),
        "caulk_vit_pico.untrained": _cfg(),
        "caulk_vit_nano.untrained": _cfg(),
        "caulk_vit_micro.untrained": _cfg(),
    }
)


def _create(variant: str, pretrained: bool, **kwargs) -> VisionTransformer:
    base = dict(img_size=32, patch_size=8, mlp_ratio=4.0, num_classes=0)
    return _create_vision_transformer(variant, pretrained=pretrained, **{**base, **kwargs})


@register_model
def caulk_vit_femto(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-Femto/8 @32px: width 32, depth 3, 2 heads (~45K params)."""
    return _create(
        "caulk_vit_femto", pretrained, **{**dict(embed_dim=32, depth=3, num_heads=2), **kwargs}
    )


@register_model
def caulk_vit_pico(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-Pico/8 @32px: width 64, depth 4, 2 heads (~0.2M params)."""
    return _create(
        "caulk_vit_pico", pretrained, **{**dict(embed_dim=64, depth=4, num_heads=2), **kwargs}
    )


@register_model
def caulk_vit_nano(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-Nano/8 @32px: width 128, depth 6, 4 heads (~1.2M params)."""
    return _create(
        "caulk_vit_nano", pretrained, **{**dict(embed_dim=128, depth=6, num_heads=4), **kwargs}
    )


@register_model
def caulk_vit_micro(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """ViT-Micro/8 @32px: width 192, depth 8, 3 heads (~3.6M params)."""
    return _create(
        "caulk_vit_micro", pretrained, **{**dict(embed_dim=192, depth=8, num_heads=3), **kwargs}
    )
