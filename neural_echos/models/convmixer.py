"""ConvMixer of any size for timm's registry.

timm registers ConvMixer only at three ImageNet sizes with dim/depth/kernel/patch baked
into each entry point, so ``model_kwargs`` cannot change them. ``convmixer`` here takes
them as arguments (defaults: the CIFAR-10 ConvMixer-256/8 with kernel 5 and patch 2 of
Trockman & Kolter, "Patches Are All You Need?") and builds timm's own ``ConvMixer`` class,
so everything of timm's model interface (``device``/``dtype``, ``forward_intermediates``,
``features_only``, TorchScript, FX) is timm's.

Two things depend on the size and are set per model: the pretrained config's ``pool_size``
(the feature map of the config's 224x224 input, ``224 // patch_size``), and the default
``features_only`` outputs: four blocks evenly spaced over the depth, ending at the last one
(blocks 1, 3, 5, 7 of 8; all blocks when there are fewer than four), so the features cover the
whole network. Pass ``out_indices`` for others (ints index blocks).
"""

from __future__ import annotations

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, register_model
from timm.models._registry import generate_default_cfgs
from timm.models.convmixer import ConvMixer
from torch import nn

_INPUT_SIZE = (3, 224, 224)


def _cfg(**kwargs) -> dict:
    return {
        "num_classes": 1000,
        "input_size": _INPUT_SIZE,
        "pool_size": (112, 112),  # patch 2, the default; set per model in _create
        "crop_pct": 0.96,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "classifier": "head",
        "first_conv": "stem.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({"convmixer.untrained": _cfg()})


def feature_blocks(depth: int, count: int = 4) -> tuple[int, ...]:
    """``count`` block indices evenly spaced over ``depth`` blocks, the last block last."""
    if depth <= count:
        return tuple(range(depth))
    return tuple((k + 1) * depth // count - 1 for k in range(count))


def _create(variant: str, pretrained: bool, **kwargs) -> ConvMixer:
    if pretrained:
        raise ValueError(f"{variant} has no pretrained weights in this project; use pretrained=False")
    # pool_size of this model's own patch size (the registered cfg cannot know it)
    stride = kwargs["patch_size"]
    overlay = {"pool_size": (_INPUT_SIZE[1] // stride, _INPUT_SIZE[2] // stride)}
    overlay.update(kwargs.pop("pretrained_cfg_overlay", None) or {})
    return build_model_with_cfg(
        ConvMixer,
        variant,
        pretrained=False,
        pretrained_cfg_overlay=overlay,
        feature_cfg={"feature_cls": "getter", "out_indices": feature_blocks(kwargs["depth"])},
        **kwargs,
    )


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
        "convmixer",
        pretrained,
        dim=dim,
        depth=depth,
        kernel_size=kernel_size,
        patch_size=patch_size,
        act_layer=act_layer,
        **kwargs,
    )
