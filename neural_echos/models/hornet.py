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
``2, 3, 4, 5`` for ``i = 1..4``. The head pools, then LayerNorm, then the classifier.

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

The model follows timm's model interface (as timm's ConvNeXt): ``device``/``dtype`` factory
arguments (``device="meta"`` builds without allocating), ``forward_intermediates`` /
``prune_intermediate_layers``, ``features_only`` (``feature_cls="getter"`` too), TorchScript and
FX tracing (the global filter's FFT is one FX leaf function: it resizes the filter to the
input's spectrum, a shape test FX cannot trace).

Pretrained weights: the official ImageNet-1k checkpoints of the authors (github.com/raoyongming/
HorNet, Tsinghua Cloud links of its README) are the default pretrained tag ``in1k`` of all four
variants. ``timm.create_model("hornet_tiny_7x7", pretrained=True)`` downloads the file into
timm's cache (as ``hornet_tiny_7x7_in1k.pth``) and :func:`checkpoint_filter_fn` maps the official
key layout onto this module's; offline, point timm at a downloaded file with
``pretrained_cfg_overlay=dict(file="path/to/file.pth")``. A checkpoint of this module's own
layout (``model.state_dict()``) loads the same way.
"""

# no `from __future__ import annotations`: FX-generated code that TorchScript compiles needs real
# annotation types, not strings
import re
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import (
    DropPath,
    LayerNorm2d,
    Mlp,
    NormMlpClassifierHead,
    calculate_drop_path_rates,
    get_device_dtype,
    register_notrace_function,
    trunc_normal_,
)
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models import load_pretrained as timm_load_pretrained
from timm.models import load_state_dict as timm_load_state_dict
from timm.models._features import feature_take_indices
from torch import Tensor, nn

__all__ = [
    "GlobalLocalFilter",
    "GnConv",
    "HorNet",
    "HorNetBlock",
    "HorNetCheckpointError",
    "HorNetStage",
    "checkpoint_filter_fn",
    "read_checkpoint",
]

GF_SIZES_224 = ((14, 8), (7, 4))
"""rfft2 sizes of the stage-3 and stage-4 feature maps (14x14 and 7x7) of a 224x224 input."""

_OFFICIAL_REPO = "https://github.com/raoyongming/HorNet"
# The ImageNet-1k checkpoints of the official README (Model Zoo table). Their URL path ends in '/',
# so the name timm caches the download under is given with it (timm's (url, filename) form).
_OFFICIAL_IN1K_URLS = {
    "hornet_tiny_7x7": "https://cloud.tsinghua.edu.cn/f/bac9690c72944d19aca1/?dl=1",
    "hornet_tiny_gf": "https://cloud.tsinghua.edu.cn/f/460e759c82324ea6bfa3/?dl=1",
    "hornet_small_7x7": "https://cloud.tsinghua.edu.cn/f/8ef64277da0e469ea857/?dl=1",
    "hornet_small_gf": "https://cloud.tsinghua.edu.cn/f/959603ca287d4c09ad49/?dl=1",
}


class HorNetCheckpointError(RuntimeError):
    """A HorNet checkpoint file is missing or cannot be read."""


def _order_dims(dim: int, order: int) -> list[int]:
    """Channel widths ``C_k = C / 2**(order - k - 1)`` of the gnConv orders, smallest first."""
    if order < 1:
        raise ValueError(f"gnConv order must be >= 1, got {order}")
    if dim % 2 ** (order - 1):
        raise ValueError(f"gnConv of order {order} needs a width divisible by {2 ** (order - 1)}, got {dim}")
    return [dim // 2 ** (order - k - 1) for k in range(order)]


@register_notrace_function  # FX: one leaf, the filter resize depends on the input's shape
def global_filter(x: Tensor, weight: Tensor) -> Tensor:
    """Filter ``x`` (B, C, H, W) by the complex ``weight`` (C, h, w, 2) in the rfft2 domain.

    The product with the spectrum is a circular convolution over the whole feature map. The
    weight is bilinearly resized (real and imaginary planes alike) when the spectrum of ``x``
    is not ``h x w``. Computed in float32: FFTs need it (bfloat16 has no FFT).
    """
    height, width = x.shape[-2], x.shape[-1]
    spectrum = torch.fft.rfft2(x.float(), dim=[-2, -1], norm="ortho")
    freq_h, freq_w = spectrum.shape[-2], spectrum.shape[-1]
    if weight.shape[1] != freq_h or weight.shape[2] != freq_w:
        # (C, h, w, 2) -> (2, C, h, w): resize the two planes, then back
        weight = F.interpolate(
            weight.permute(3, 0, 1, 2), size=[freq_h, freq_w], mode="bilinear", align_corners=True
        ).permute(1, 2, 3, 0)
    spectrum = spectrum * torch.view_as_complex(weight.float().contiguous())
    return torch.fft.irfft2(spectrum, s=[height, width], dim=[-2, -1], norm="ortho")


class GlobalLocalFilter(nn.Module):
    """HorNet's GF spatial mixer: half the channels 3x3 depthwise conv, half a global filter.

    The global filter is a learnable complex weight per channel on the ``rfft2`` grid
    (``filter_size = (h, w)``, ``w = W // 2 + 1``); for another feature size it is resized
    bilinearly to the input's rfft2 grid (:func:`global_filter`).
    """

    def __init__(
        self,
        dim: int,
        filter_size: tuple[int, int] = (14, 8),
        local_kernel_size: int = 3,
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if dim % 2:
            raise ValueError(f"GlobalLocalFilter needs an even number of channels, got {dim}")
        half = dim // 2
        self.pre_norm = LayerNorm2d(dim, eps=1e-6, **dd)
        self.local_conv = nn.Conv2d(
            half, half, local_kernel_size, padding=local_kernel_size // 2, groups=half, bias=False, **dd
        )
        h, w = filter_size
        self.complex_weight = nn.Parameter(torch.empty(half, h, w, 2, **dd))
        self.post_norm = LayerNorm2d(dim, eps=1e-6, **dd)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise the global filter (its conv and norms are initialised as modules of their own)."""
        trunc_normal_(self.complex_weight, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pre_norm(x)
        local, glob = x.chunk(2, dim=1)
        local = self.local_conv(local)
        glob = global_filter(glob, self.complex_weight).to(local.dtype)
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
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.order = order
        self.dims = _order_dims(dim, order)
        self.gate_dim = sum(self.dims)
        self.scale = scale
        self.proj_in = nn.Conv2d(dim, 2 * dim, 1, **dd)
        if gf_size is None:
            self.dwconv: nn.Module = nn.Conv2d(
                self.gate_dim,
                self.gate_dim,
                kernel_size,
                padding=kernel_size // 2,
                groups=self.gate_dim,
                bias=True,
                **dd,
            )
        else:
            self.dwconv = GlobalLocalFilter(self.gate_dim, filter_size=tuple(gf_size), **dd)
        self.pws = nn.ModuleList(nn.Conv2d(self.dims[k], self.dims[k + 1], 1, **dd) for k in range(order - 1))
        self.proj_out = nn.Conv2d(dim, dim, 1, **dd)

    def forward(self, x: Tensor) -> Tensor:
        fused = torch.split(self.proj_in(x), [self.dims[0], self.gate_dim], dim=1)
        gates = torch.split(self.dwconv(fused[1]) * self.scale, self.dims, dim=1)
        p = fused[0] * gates[0]  # p_1 = p_0 * q_0
        for k, pw in enumerate(self.pws):
            p = pw(p) * gates[k + 1]  # p_{k+1} = g_k(p_k) * q_k
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
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.layer_scale_init_value = float(layer_scale_init_value)
        self.norm1 = LayerNorm2d(dim, eps=1e-6, **dd)
        self.gnconv = GnConv(dim, order, kernel_size=kernel_size, scale=gnconv_scale, gf_size=gf_size, **dd)
        self.gamma1 = nn.Parameter(torch.empty(dim, **dd))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6, **dd)  # channels-last, the MLP runs on (B, H, W, C)
        self.mlp = Mlp(dim, int(mlp_ratio * dim), act_layer=nn.GELU, **dd)
        self.gamma2 = nn.Parameter(torch.empty(dim, **dd))
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Set the layer scales (its sub-layers are initialised as modules of their own)."""
        nn.init.constant_(self.gamma1, self.layer_scale_init_value)
        nn.init.constant_(self.gamma2, self.layer_scale_init_value)

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
        device=None,
        dtype=None,
        **block_kwargs,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if downsample:
            self.downsample: nn.Module = nn.Sequential(
                LayerNorm2d(in_dim, eps=1e-6, **dd), nn.Conv2d(in_dim, dim, kernel_size=2, stride=2, **dd)
            )
        else:
            if in_dim != dim:
                raise ValueError(f"a stage without downsampling keeps its width ({in_dim} != {dim})")
            self.downsample = nn.Identity()
        self.blocks = nn.Sequential(
            *(
                HorNetBlock(dim, order, drop_path=drop_path_rates[j], **block_kwargs, **dd)
                for j in range(depth)
            )
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
        device, dtype: factory arguments for every parameter (``device="meta"``: no allocation).
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
        device=None,
        dtype=None,
    ):
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        num_stages = len(depths)
        if not len(orders) == len(gf_sizes) == num_stages:
            raise ValueError(
                f"depths, orders and gf_sizes need one entry per stage, got {len(depths)}, "
                f"{len(orders)} and {len(gf_sizes)}"
            )
        dims = [base_dim * 2**i for i in range(num_stages)]
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.drop_path_rate = drop_path_rate
        self.head_init_scale = head_init_scale
        self.dims = dims

        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4, **dd), LayerNorm2d(dims[0], eps=1e-6, **dd)
        )

        # stochastic depth 0 -> drop_path_rate, linear over all blocks, one list per stage
        rates = calculate_drop_path_rates(drop_path_rate, list(depths), stagewise=True)
        stages, self.feature_info, in_dim = [], [], dims[0]
        for i in range(num_stages):
            stages.append(
                HorNetStage(
                    in_dim,
                    dims[i],
                    depth=depths[i],
                    order=orders[i],
                    downsample=i > 0,
                    drop_path_rates=rates[i],
                    kernel_size=kernel_size,
                    gnconv_scale=gnconv_scale,
                    gf_size=gf_sizes[i],
                    mlp_ratio=mlp_ratio,
                    layer_scale_init_value=layer_scale_init_value,
                    **dd,
                )
            )
            self.feature_info.append({"num_chs": dims[i], "reduction": 4 * 2**i, "module": f"stages.{i}"})
            in_dim = dims[i]
        self.stages = nn.Sequential(*stages)

        self.num_features = dims[-1]
        # pool -> LayerNorm -> classifier, the order of the official HorNet head
        self.head = NormMlpClassifierHead(
            self.num_features,
            num_classes,
            pool_type=global_pool,
            drop_rate=drop_rate,
            norm_layer=partial(LayerNorm2d, eps=1e-6),
            **dd,
        )
        self.head_hidden_size = self.head.num_features
        self.init_weights()

    @torch.jit.ignore
    def init_weights(self) -> None:
        """(Re)initialise every parameter, e.g. after ``to_empty()`` of a model built on ``meta``.

        Convs and linears: trunc-normal(std 0.02) weights and zero biases (as the official
        HorNet); norms: ones and zeros; layer scales: ``layer_scale_init_value``; global filters:
        trunc-normal(0.02); the classifier then scaled by ``head_init_scale``.
        """
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                self._init_weights(module)
            elif isinstance(module, (nn.LayerNorm, GlobalLocalFilter, HorNetBlock)):
                module.reset_parameters()
        if isinstance(self.head.fc, nn.Linear) and self.head_init_scale != 1.0:
            with torch.no_grad():
                self.head.fc.weight.mul_(self.head_init_scale)
                self.head.fc.bias.mul_(self.head_init_scale)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:
        return {
            "stem": r"^stem",
            "blocks": r"^stages\.(\d+)"
            if coarse
            else [(r"^stages\.(\d+)\.downsample", (0,)), (r"^stages\.(\d+)\.blocks\.(\d+)", None)],
        }

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for stage in self.stages:
            stage.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(
        self, num_classes: int, global_pool: str | None = None, reset_other: bool = False
    ) -> None:
        """New classifier (``num_classes=0``: none), optionally new pooling; ``reset_other``: no head norm."""
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        self.head.reset(
            num_classes, global_pool, reset_other=reset_other, in_features=self.num_features, **dd
        )
        self.head_hidden_size = self.head.num_features
        if isinstance(self.head.fc, (nn.Linear, nn.Conv2d)):
            self._init_weights(self.head.fc)

    def forward_intermediates(
        self,
        x: Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[Tensor] | tuple[Tensor, list[Tensor]]:
        """The outputs of the stages ``indices`` (int n: the last n; None: all), and the final features.

        Args:
            x: input images.
            indices: which stage outputs to return.
            norm: unused; HorNet's only final norm follows the global pool (in the head), so it
                does not apply to spatial features.
            stop_early: skip the stages after the last requested one (not when scripting).
            output_fmt: ``'NCHW'`` only.
            intermediates_only: return only the list of stage outputs.
        """
        assert output_fmt in ("NCHW",), "Output shape must be NCHW."
        intermediates = []
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        x = self.stem(x)
        if torch.jit.is_scripting() or not stop_early:  # TorchScript cannot slice a Sequential here
            stages = self.stages
        else:
            stages = self.stages[: max_index + 1]
        for i, stage in enumerate(stages):
            x = stage(x)
            if i in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self,
        indices: int | list[int] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
    ) -> list[int]:
        """Drop the stages after the last of ``indices`` and (``prune_head``) the classifier head.

        When stages are dropped the head (its norm is sized for the last stage) goes too and
        ``num_features`` becomes the width of the last kept stage. ``prune_norm`` is accepted
        for timm's interface: there is no norm outside the head.
        """
        take_indices, max_index = feature_take_indices(len(self.stages), indices)
        prune_end = max_index < len(self.stages) - 1
        self.stages = self.stages[: max_index + 1]
        if prune_end:
            self.num_features = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "", reset_other=True)
        return take_indices

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, in_chans, H, W)`` -> ``(B, num_features, H / 32, W / 32)`` (unpooled, un-normalised)."""
        return self.stages(self.stem(x))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return self.head(x, pre_logits=True) if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def load_pretrained(self, checkpoint_path: str) -> None:
        """timm's ``custom_load`` hook: load an official (or our own) HorNet checkpoint file.

        timm calls it with the downloaded file (``pretrained=True``) or with
        ``pretrained_cfg_overlay=dict(file=...)``. The file is read by :func:`read_checkpoint`,
        then timm's own loader maps the keys (:func:`checkpoint_filter_fn`), adapts the stem to
        ``in_chans`` and drops the classifier for ``num_classes != 1000``; the load is strict
        otherwise.
        """
        cfg = dict(getattr(self, "pretrained_cfg", None) or {}, state_dict=read_checkpoint(checkpoint_path))
        cfg.update(custom_load=False, num_classes=cfg.get("num_classes", 1000))
        cfg.setdefault("classifier", "head.fc")
        timm_load_pretrained(
            self,
            pretrained_cfg=cfg,
            num_classes=self.num_classes,
            in_chans=self.in_chans,
            filter_fn=checkpoint_filter_fn,
        )


def read_checkpoint(path: str) -> dict:
    """The model state dict of a HorNet checkpoint file (``.pth``/``.pt``/``.safetensors``).

    The official training script saves ``{'model', 'optimizer', 'epoch', 'scaler', 'args',
    ['model_ema']}``; its evaluation reads ``'model'``, and so does this (then ``'state_dict'``,
    then the file as a plain state dict), where timm's generic loader would take ``'model_ema'``.
    timm's reader does the rest: ``weights_only=True`` (it allows the ``argparse.Namespace`` of
    the training arguments), ``.safetensors``, a ``module.`` prefix stripped.
    """
    try:
        return timm_load_state_dict(str(path), use_ema=False)
    except FileNotFoundError:
        raise HorNetCheckpointError(f"HorNet checkpoint not found: {path}") from None
    except Exception as err:  # a truncated download, an HTML error page, a foreign pickle...
        reason = (str(err).strip().splitlines() or [""])[0]
        raise HorNetCheckpointError(
            f"cannot read HorNet checkpoint {path} ({type(err).__name__}: {reason}); "
            "if it is a download in timm's cache, delete it and retry, or download the file by hand "
            "and pass pretrained_cfg_overlay=dict(file=PATH)"
        ) from err


_OFFICIAL_RENAMES = (
    # (pattern, replacement) applied in order to each key of the official layout
    (r"^downsample_layers\.0\.", "stem."),
    (r"^downsample_layers\.(\d+)\.", r"stages.\1.downsample."),
    (r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2."),
    (r"\.pwconv1\.", ".mlp.fc1."),
    (r"\.pwconv2\.", ".mlp.fc2."),
    (r"\.gnconv\.dwconv\.dw\.", ".gnconv.dwconv.local_conv."),
    (r"^head\.", "head.fc."),  # before the next: the new head.norm must not become head.fc.norm
    (r"^norm\.", "head.norm."),
)


def checkpoint_filter_fn(state_dict: dict, model: nn.Module) -> dict:
    """Map a state dict of the official HorNet layout onto this module's names.

    Official -> ours: ``downsample_layers.0`` -> ``stem``, ``downsample_layers.i`` ->
    ``stages.i.downsample``, ``stages.i.j`` -> ``stages.i.blocks.j``, ``pwconv1/2`` ->
    ``mlp.fc1/2``, the GF filter's ``dw`` -> ``local_conv``, the final ``norm`` -> ``head.norm``
    and ``head`` -> ``head.fc``; everything else (norms, gnConv projections, layer scales,
    complex filter weights) keeps its name and shape. A state dict already in our layout, or a
    whole official checkpoint (under ``'model'``), is accepted too.
    """
    if "model" in state_dict and isinstance(state_dict["model"], dict):
        state_dict = state_dict["model"]
    if "stem.0.weight" in state_dict:
        return state_dict  # already ours
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in _OFFICIAL_RENAMES:
            key = re.sub(pattern, replacement, key)
        out[key] = value
    return out


def _create_hornet(variant: str, pretrained: bool = False, **kwargs) -> HorNet:
    overlay = kwargs.get("pretrained_cfg_overlay")
    if overlay and overlay.get("file") and "custom_load" not in overlay:
        # timm resets custom_load for a file overlay; a local copy of the official file must be
        # read as the download is (HorNet.load_pretrained), so both give the same weights
        kwargs["pretrained_cfg_overlay"] = dict(overlay, custom_load=True)
    return build_model_with_cfg(
        HorNet,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,  # used for pretrained_cfg_overlay=dict(state_dict=...)
        feature_cfg={"out_indices": (0, 1, 2, 3), "flatten_sequential": True},
        **kwargs,
    )


def _cfg(variant: str, **kwargs) -> dict:
    return {
        "url": (_OFFICIAL_IN1K_URLS[variant], f"{variant}_in1k.pth"),
        "custom_load": True,  # HorNet.load_pretrained: the official files need their own reading
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
        "origin_url": _OFFICIAL_REPO,
        "paper_ids": "arXiv:2207.14284",
        "paper_name": "HorNet: Efficient High-Order Spatial Interactions with Recursive Gated Convolutions",
        **kwargs,
    }


# must exist before the @register_model functions below: timm's registry reads it from this module
default_cfgs = generate_default_cfgs(
    {
        "hornet_tiny_7x7.in1k": _cfg("hornet_tiny_7x7"),
        "hornet_tiny_gf.in1k": _cfg("hornet_tiny_gf"),
        "hornet_small_7x7.in1k": _cfg("hornet_small_7x7"),
        "hornet_small_gf.in1k": _cfg("hornet_small_gf"),
    }
)

_GF_STAGES = (None, None, *GF_SIZES_224)


@register_model
def hornet_tiny_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-T 7x7 (22M params): base dim 64, depths 2-3-18-2, 7x7 depthwise gnConv."""
    args = {"depths": (2, 3, 18, 2), "base_dim": 64}
    return _create_hornet("hornet_tiny_7x7", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def hornet_tiny_gf(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-T GF (23M params): as HorNet-T 7x7 with global-local filters in stages 3-4."""
    args = {"depths": (2, 3, 18, 2), "base_dim": 64, "gf_sizes": _GF_STAGES}
    return _create_hornet("hornet_tiny_gf", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def hornet_small_7x7(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-S 7x7 (50M params): base dim 96, depths 2-3-18-2, 7x7 depthwise gnConv."""
    args = {"depths": (2, 3, 18, 2), "base_dim": 96}
    return _create_hornet("hornet_small_7x7", pretrained=pretrained, **dict(args, **kwargs))


@register_model
def hornet_small_gf(pretrained: bool = False, **kwargs) -> HorNet:
    """HorNet-S GF (50M params): as HorNet-S 7x7 with global-local filters in stages 3-4."""
    args = {"depths": (2, 3, 18, 2), "base_dim": 96, "gf_sizes": _GF_STAGES}
    return _create_hornet("hornet_small_gf", pretrained=pretrained, **dict(args, **kwargs))
