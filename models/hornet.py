"""HorNet: high-order spatial interactions with recursive gated convolutions.

A timm-style implementation of HorNet (Rao et al., "HorNet: Efficient High-Order Spatial
Interactions with Recursive Gated Convolutions", NeurIPS 2022), written from the paper for
this project. timm does not ship HorNet; importing this module (``import models`` does it)
registers four variants with timm's registry so that, for example,
``timm.create_model("hornet_tiny_7x7", num_classes=10, drop_path_rate=0.1)`` works:

=====================  =========  ================  ==============================  =========
name                   base dim   depths            spatial mixing in gnConv        params*
=====================  =========  ================  ==============================  =========
``hornet_tiny_7x7``    64         2, 3, 18, 2       7x7 depthwise conv (all stages)  22.41M
``hornet_small_7x7``   96         2, 3, 18, 2       7x7 depthwise conv (all stages)  49.53M
``hornet_tiny_gf``     64         2, 3, 18, 2       7x7 dw conv, stages 3-4 global   22.99M
``hornet_small_gf``    96         2, 3, 18, 2       7x7 dw conv, stages 3-4 global   50.40M
=====================  =========  ================  ==============================  =========

(*) at ``num_classes=1000``; the paper rounds them to 22M, 50M, 23M and 50M.

Architecture (ConvNeXt macro design): a 4x4 stride-4 conv stem + LayerNorm, four stages
with 2x2 stride-2 conv downsampling (LayerNorm first) between them, and blocks

    x = x + drop_path(gamma1 * gnConv(LN(x)))
    x = x + drop_path(gamma2 * MLP(LN(x)))          # MLP: Linear(C, 4C), GELU, Linear(4C, C)

with layer scale (``gamma``) initialised to 1e-6. The gnConv of stage ``i`` has order
``2, 3, 4, 5`` for ``i = 1..4``.

gnConv of order ``n`` on ``C`` channels uses the channel widths ``C_k = C / 2**(n - k - 1)``
(``k = 0..n-1``, so ``C_{n-1} = C``). A 1x1 projection maps ``C -> 2C`` channels, split into
``p_0`` (``C_0`` channels) and ``q`` (``sum_k C_k`` channels). ``q`` goes through one depthwise
conv, is multiplied by the scale ``s = 1/3`` and split into ``q_0 .. q_{n-1}``. Then

    p_1 = p_0 * q_0,    p_{k+1} = g_k(p_k) * q_k   (g_k: 1x1 conv C_{k-1} -> C_k),

and a final 1x1 projection maps ``p_n`` (``C`` channels) back to ``C``.

In the GF variants the depthwise conv of stages 3 and 4 is a global-local filter: LayerNorm,
then half of the channels go through a 3x3 depthwise conv and the other half through a
learnable filter in the 2-D Fourier domain (``torch.fft.rfft2``; the filter has the rfft
size of the 224x224 feature map, 14x8 in stage 3 and 7x4 in stage 4, and is bilinearly
resized to other feature sizes), the halves are interleaved channel-wise, then LayerNorm.

Every depthwise conv is a plain ``nn.Conv2d`` with ``groups == in_channels``, so
:func:`neural_echos.depthwise.find_depthwise_convs` finds them: in the 7x7 variants one
7x7 conv per block (``<stage>.blocks.<j>.gnconv.dwconv``), in the GF variants 7x7 convs in
stages 1-2 and 3x3 convs (``...gnconv.dwconv.local_conv``) in stages 3-4.

No pretrained weights exist in this project: ``pretrained=True`` raises
:class:`NoPretrainedWeightsError` (load your own checkpoint with timm's ``checkpoint_path``).
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerNorm2d, NormMlpClassifierHead, trunc_normal_
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from torch import Tensor, nn

__all__ = ["HorNet", "GnConv", "GlobalLocalFilter", "HorNetBlock", "HorNetStage", "NoPretrainedWeightsError"]

GF_SIZES_224 = ((14, 8), (7, 4))
"""rfft2 sizes of the stage-3 and stage-4 feature maps (14x14 and 7x7) of a 224x224 input."""


class NoPretrainedWeightsError(ValueError):
    """``pretrained=True`` was asked of a HorNet, for which this project has no weights."""


def _order_dims(dim: int, order: int) -> list[int]:
    """Channel widths ``C_k = C / 2**(order - k - 1)`` of the gnConv orders, smallest first."""
    if order < 1:
        raise ValueError(f"gnConv order must be >= 1, got {order}")
    if dim % 2 ** (order - 1):
        raise ValueError(f"gnConv of order {order} needs a width divisible by {2 ** (order - 1)}, got {dim}")
    return [dim // 2 ** (order - k - 1) for k in range(order)]


class GlobalLocalFilter(nn.Module):
    """HorNet's GF spatial mixer: half the channels 3x3 depthwise conv, half a global filter.

    The global filter is a learnable complex weight per channel on the ``rfft2`` grid
    (``filter_size = (h, w)``, ``w = W // 2 + 1``); for another feature size it is resized
    bilinearly (real and imaginary parts separately) to the input's rfft2 grid.
    """

    def __init__(self, dim: int, filter_size: tuple[int, int] = (14, 8), local_kernel_size: int = 3):
        super().__init__()
        if dim % 2:
            raise ValueError(f"GlobalLocalFilter needs an even number of channels, got {dim}")
        half = dim // 2
        self.pre_norm = LayerNorm2d(dim, eps=1e-6)
        self.local_conv = nn.Conv2d(
            half, half, local_kernel_size, padding=local_kernel_size // 2, groups=half, bias=False
        )
        h, w = filter_size
        self.complex_weight = nn.Parameter(torch.empty(half, h, w, 2))
        trunc_normal_(self.complex_weight, std=0.02)
        self.post_norm = LayerNorm2d(dim, eps=1e-6)

    def _filter(self, size: tuple[int, int]) -> Tensor:
        weight = self.complex_weight
        if tuple(weight.shape[1:3]) != tuple(size):
            # (C, h, w, 2) -> (2, C, h, w): resize real and imaginary planes, then back.
            weight = F.interpolate(weight.permute(3, 0, 1, 2), size=size, mode="bilinear", align_corners=True)
            weight = weight.permute(1, 2, 3, 0)
        return torch.view_as_complex(weight.float().contiguous())

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre_norm(x)
        local, glob = x.chunk(2, dim=1)
        local = self.local_conv(local)
        height, width = glob.shape[-2:]
        spectrum = torch.fft.rfft2(glob.float(), dim=(-2, -1), norm="ortho")
        spectrum = spectrum * self._filter(spectrum.shape[-2:])
        glob = torch.fft.irfft2(spectrum, s=(height, width), dim=(-2, -1), norm="ortho").to(local.dtype)
        # interleave channels (local_0, global_0, local_1, ...) so each gnConv order gets both kinds
        x = torch.stack((local, glob), dim=2).flatten(1, 2)
        return self.post_norm(x)


class GnConv(nn.Module):
    """Recursive gated convolution of order ``order`` (gnConv) on ``dim`` channels.

    ``dwconv`` is the depthwise spatial mixer over all ``sum(dims)`` gating channels: a
    ``kernel_size`` depthwise ``nn.Conv2d`` (with bias) or, when ``gf_size`` is given, a
    :class:`GlobalLocalFilter` with that rfft2 filter size.
    """

    def __init__(
        self,
        dim: int,
        order: int = 5,
        kernel_size: int = 7,
        scale: float = 1.0 / 3.0,
        gf_size: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.order = order
        self.dims = _order_dims(dim, order)
        self.scale = scale
        gate_dim = sum(self.dims)
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1)
        if gf_size is None:
            self.dwconv: nn.Module = nn.Conv2d(
                gate_dim, gate_dim, kernel_size, padding=kernel_size // 2, groups=gate_dim, bias=True
            )
        else:
            self.dwconv = GlobalLocalFilter(gate_dim, filter_size=tuple(gf_size))
        self.pws = nn.ModuleList(
            nn.Conv2d(self.dims[k], self.dims[k + 1], 1) for k in range(order - 1)
        )
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        p, q = torch.split(self.proj_in(x), (self.dims[0], sum(self.dims)), dim=1)
        gates = torch.split(self.dwconv(q) * self.scale, self.dims, dim=1)
        p = p * gates[0]
        for pw, gate in zip(self.pws, gates[1:]):
            p = pw(p) * gate
        return self.proj_out(p)


class HorNetBlock(nn.Module):
    """``x + dp(gamma1 * gnConv(LN(x)))``, then ``x + dp(gamma2 * MLP(LN(x)))`` (channels-first in/out)."""

    def __init__(
        self,
        dim: int,
        order: int,
        kernel_size: int = 7,
        gnconv_scale: float = 1.0 / 3.0,
        gf_size: tuple[int, int] | None = None,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-6,
    ):
        super().__init__()
        self.norm1 = LayerNorm2d(dim, eps=1e-6)
        self.gnconv = GnConv(dim, order, kernel_size=kernel_size, scale=gnconv_scale, gf_size=gf_size)
        self.gamma1 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)  # channels-last, the MLP runs on (B, H, W, C)
        hidden = int(mlp_ratio * dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.gamma2 = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.gamma1.view(1, -1, 1, 1) * self.gnconv(self.norm1(x)))
        y = self.mlp(self.norm2(x.permute(0, 2, 3, 1))) * self.gamma2
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class HorNetStage(nn.Module):
    """Optional downsampling (LN + 2x2 stride-2 conv) followed by ``depth`` HorNet blocks."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        order: int,
        downsample: bool,
        drop_path_rates: Sequence[float],
        **block_kwargs,
    ):
        super().__init__()
        if downsample:
            self.downsample: nn.Module = nn.Sequential(
                LayerNorm2d(in_dim, eps=1e-6), nn.Conv2d(in_dim, dim, kernel_size=2, stride=2)
            )
        else:
            if in_dim != dim:
                raise ValueError(f"a stage without downsampling keeps its width ({in_dim} != {dim})")
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(
            *(HorNetBlock(dim, order, drop_path=drop_path_rates[j], **block_kwargs) for j in range(depth))
        )
        self.grad_checkpointing = False

    def forward(self, x: Tensor) -> Tensor:
        x = self.downsample(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.blocks, x)
        return self.blocks(x)


class HorNet(nn.Module):
    """HorNet backbone + classifier with the timm model interface.

    Args:
        in_chans: input image channels.
        num_classes: classifier outputs (0: no classifier, ``forward`` returns pooled features).
        global_pool: ``'avg'`` (default), ``'max'``, ... or ``''`` for no pooling.
        depths: blocks per stage.
        base_dim: width of stage 1; stage ``i`` has ``base_dim * 2**i`` channels.
        orders: gnConv order per stage.
        kernel_size: depthwise kernel size of gnConv (paper: 7).
        gf_sizes: per stage, ``None`` for a depthwise conv or the ``(h, w)`` rfft2 size of a
            :class:`GlobalLocalFilter` (GF variants: ``(None, None, (14, 8), (7, 4))``).
        gnconv_scale: the scale ``s`` applied to the depthwise output (paper: 1/3).
        mlp_ratio: MLP hidden width / block width.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth rate of the last block, linearly increasing from 0.
        layer_scale_init_value: initial value of the layer-scale ``gamma`` parameters.
        head_init_scale: factor on the initial classifier weights and bias.
    """

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        depths: Sequence[int] = (2, 3, 18, 2),
        base_dim: int = 64,
        orders: Sequence[int] = (2, 3, 4, 5),
        kernel_size: int = 7,
        gf_sizes: Sequence[tuple[int, int] | None] = (None, None, None, None),
        gnconv_scale: float = 1.0 / 3.0,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        head_init_scale: float = 1.0,
    ):
        super().__init__()
        num_stages = len(depths)
        if not len(orders) == len(gf_sizes) == num_stages:
            raise ValueError(
                f"depths, orders and gf_sizes need one entry per stage, got {len(depths)}, "
                f"{len(orders)} and {len(gf_sizes)}"
            )
        dims = [base_dim * 2**i for i in range(num_stages)]
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.drop_path_rate = drop_path_rate
        self.dims = dims

        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), LayerNorm2d(dims[0], eps=1e-6)
        )

        # stochastic depth 0 -> drop_path_rate, linear over all blocks (plain Python: meta-device safe)
        total = sum(depths)
        rates = [drop_path_rate * j / max(total - 1, 1) for j in range(total)]
        stages, self.feature_info, start, in_dim = [], [], 0, dims[0]
        for i in range(num_stages):
            stages.append(
                HorNetStage(
                    in_dim,
                    dims[i],
                    depth=depths[i],
                    order=orders[i],
                    downsample=i > 0,
                    drop_path_rates=rates[start : start + depths[i]],
                    kernel_size=kernel_size,
                    gnconv_scale=gnconv_scale,
                    gf_size=gf_sizes[i],
                    mlp_ratio=mlp_ratio,
                    layer_scale_init_value=layer_scale_init_value,
                )
            )
            self.feature_info.append(dict(num_chs=dims[i], reduction=4 * 2**i, module=f"stages.{i}"))
            start += depths[i]
            in_dim = dims[i]
        self.stages = nn.Sequential(*stages)

        self.num_features = self.head_hidden_size = dims[-1]
        self.head = NormMlpClassifierHead(
            self.num_features,
            num_classes,
            pool_type=global_pool,
            drop_rate=drop_rate,
            norm_layer=partial(LayerNorm2d, eps=1e-6),
        )

        self.apply(self._init_weights)
        if isinstance(self.head.fc, nn.Linear) and head_init_scale != 1.0:
            with torch.no_grad():
                self.head.fc.weight.mul_(head_init_scale)
                self.head.fc.bias.mul_(head_init_scale)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return dict(
            stem=r"^stem",
            blocks=r"^stages\.(\d+)"
            if coarse
            else [(r"^stages\.(\d+)\.downsample", (0,)), (r"^stages\.(\d+)\.blocks\.(\d+)", None)],
        )

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)
        if isinstance(self.head.fc, (nn.Linear, nn.Conv2d)):
            self._init_weights(self.head.fc)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, in_chans, H, W)`` -> ``(B, num_features, H / 32, W / 32)`` (unpooled, un-normalised)."""
        return self.stages(self.stem(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


def _create_hornet(variant: str, pretrained: bool = False, **kwargs) -> HorNet:
    if pretrained:
        raise NoPretrainedWeightsError(
            f"no pretrained weights are available for {variant!r}: HorNet is implemented in this project "
            "(models/hornet.py) and ships without weights. Create it with pretrained=False and train it, "
            "or load a checkpoint of your own with timm.create_model(..., checkpoint_path=PATH)."
        )
    return build_model_with_cfg(
        HorNet,
        variant,
        pretrained=False,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


def _cfg(**kwargs) -> dict:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "stem.0",
        "classifier": "head.fc",
        "license": "mit",
        "paper_ids": "arXiv:2207.14284",
        "paper_name": "HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions",
        **kwargs,
    }


# must exist before the @register_model functions below: timm's registry reads it from this module
default_cfgs = generate_default_cfgs(
    {
        "hornet_tiny_7x7": _cfg(),
        "hornet_tiny_gf": _cfg(),
        "hornet_small_7x7": _cfg(),
        "hornet_small_gf": _cfg(),
    }
)

_GF_STAGES = (None, None, *GF_SIZES_224)


@register_model
def hornet_tiny_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-T 7x7 (22M params): base dim 64, depths 2-3-18-2, 7x7 depthwise gnConv."""
    args = dict(depths=(2, 3, 18, 2), base_dim=64)
    return _create_hornet("hornet_tiny_7x7", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def hornet_tiny_gf(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-T GF (23M params): as HorNet-T 7x7 with global-local filters in stages 3-4."""
    args = dict(depths=(2, 3, 18, 2), base_dim=64, gf_sizes=_GF_STAGES)
    return _create_hornet("hornet_tiny_gf", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def hornet_small_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-S 7x7 (50M params): base dim 96, depths 2-3-18-2, 7x7 depthwise gnConv."""
    args = dict(depths=(2, 3, 18, 2), base_dim=96)
    return _create_hornet("hornet_small_7x7", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def hornet_small_gf(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-S GF (50M params): as HorNet-S 7x7 with global-local filters in stages 3-4."""
    args = dict(depths=(2, 3, 18, 2), base_dim=96, gf_sizes=_GF_STAGES)
    return _create_hornet("hornet_small_gf", pretrained=pretrained, **dict(args, **kwargs))
