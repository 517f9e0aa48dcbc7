"""ConvMixer of any size for timm's registry.

timm registers ConvMixer only at three ImageNet sizes with dim/depth/kernel/patch baked
into each entry point, so ``model_kwargs`` cannot change them. ``convmixer`` here takes
them as arguments (defaults: the CIFAR-10 ConvMixer-256/8 with kernel 5 and patch 2 of
Trockman & Kolter, "Patches Are All You Need?") and builds timm's own ``ConvMixer`` class.
"""

from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, register_model
from timm.models._registry import generate_default_cfgs
from timm.models.convmixer import ConvMixer
from torch import nn


def _cfg(**kwargs) -> dict:
    return {
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": None,
        "crop_pct": 0.96,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "classifier": "head",
        "first_conv": "stem.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "convmixer.untrained": _cfg(),
        "convmixer_256_8.untrained": _cfg(num_classes=10, input_size=(3, 32, 32), crop_pct=1.0),
    }
)


def _create(variant: str, pretrained: bool, **kwargs) -> ConvMixer:
    if pretrained:
        raise ValueError(f"{variant} has no pretrained weights in this project; use pretrained=False")
    return build_model_with_cfg(ConvMixer, variant, pretrained=False, feature_cfg=dict(feature_cls="getter"), **kwargs)


@register_model
def convmixer(
    pretrained: bool = False,
    dim: int = 256,
    depth: int = 8,
    kernel_size: int = 5,
    patch_size: int = 2,
    act_layer: type[nn.Module] = nn.GELU,
    **kwargs,
) -> ConvMixer:
    """ConvMixer-dim/depth with the given depthwise kernel size and patch size."""
    return _create(
        "convmixer", pretrained, dim=dim, depth=depth, kernel_size=kernel_size, patch_size=patch_size,
        act_layer=act_layer, **kwargs,
    )


@register_model
def convmixer_256_8(pretrained: bool = False, **kwargs) -> ConvMixer:
    """ConvMixer-256/8, kernel 5, patch 2: the CIFAR-10 recipe."""
    args = dict(dim=256, depth=8, kernel_size=5, patch_size=2, act_layer=nn.GELU)
    return _create("convmixer_256_8", pretrained, **{**args, **kwargs})
