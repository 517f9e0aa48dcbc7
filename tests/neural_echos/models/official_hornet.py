"""The official HorNet checkpoint layout, for testing our loader offline.

Written for this project from reading the module structure of the official implementation
(github.com/raoyongming/HorNet, ``hornet.py``; not copied): a ``HorNet`` with
``downsample_layers`` (0 = stem: conv 4x4 + channels-first LayerNorm; i > 0: LayerNorm + conv
2x2), ``stages.i.j`` blocks (``norm1``, ``gnconv`` with ``proj_in``, ``dwconv`` (a 7x7 depthwise
conv with bias, or a global-local filter with ``pre_norm``, ``dw`` (3x3, no bias),
``complex_weight``, ``post_norm``), ``pws.k``, ``proj_out``; ``norm2``, ``pwconv1``,
``pwconv2``, ``gamma1``, ``gamma2``), a final ``norm`` (LayerNorm after the global average
pool) and ``head`` (Linear). Checkpoints are saved as ``{'model': state_dict, ...}``.

:func:`official_forward` is an independent functional forward pass over such a state dict,
in the official module order, so tests can check that our model loaded through
``checkpoint_filter_fn`` computes the same function, not only that the names line up.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import Tensor

VARIANTS = {
    # name: (base dim, rfft2 filter sizes of stages 3 and 4, or None for 7x7 convs)
    "hornet_tiny_7x7": (64, None),
    "hornet_tiny_gf": (64, ((14, 8), (7, 4))),
    "hornet_small_7x7": (96, None),
    "hornet_small_gf": (96, ((14, 8), (7, 4))),
}
DEPTHS = (2, 3, 18, 2)
ORDERS = (2, 3, 4, 5)


def _order_dims(dim: int, order: int) -> list[int]:
    return [dim // 2**i for i in range(order)][::-1]


def official_shapes(
    variant: str, num_classes: int = 1000, in_chans: int = 3, depths: tuple[int, ...] = DEPTHS
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official ``state_dict()`` of ``variant`` (``depths``: fewer blocks for
    fast tests; the official models all have 2, 3, 18, 2)."""
    base, gf = VARIANTS[variant]
    dims = [base * 2**i for i in range(4)]
    shapes: dict[str, tuple[int, ...]] = {
        "downsample_layers.0.0.weight": (dims[0], in_chans, 4, 4),
        "downsample_layers.0.0.bias": (dims[0],),
        "downsample_layers.0.1.weight": (dims[0],),
        "downsample_layers.0.1.bias": (dims[0],),
    }
    for i in range(1, 4):
        shapes.update(
            {
                f"downsample_layers.{i}.0.weight": (dims[i - 1],),
                f"downsample_layers.{i}.0.bias": (dims[i - 1],),
                f"downsample_layers.{i}.1.weight": (dims[i], dims[i - 1], 2, 2),
                f"downsample_layers.{i}.1.bias": (dims[i],),
            }
        )
    for i, (dim, depth, order) in enumerate(zip(dims, depths, ORDERS)):
        order_dims = _order_dims(dim, order)
        gate = sum(order_dims)
        for j in range(depth):
            p = f"stages.{i}.{j}."
            shapes.update(
                {
                    p + "gamma1": (dim,),
                    p + "gamma2": (dim,),
                    p + "norm1.weight": (dim,),
                    p + "norm1.bias": (dim,),
                    p + "gnconv.proj_in.weight": (2 * dim, dim, 1, 1),
                    p + "gnconv.proj_in.bias": (2 * dim,),
                    p + "gnconv.proj_out.weight": (dim, dim, 1, 1),
                    p + "gnconv.proj_out.bias": (dim,),
                    p + "norm2.weight": (dim,),
                    p + "norm2.bias": (dim,),
                    p + "pwconv1.weight": (4 * dim, dim),
                    p + "pwconv1.bias": (4 * dim,),
                    p + "pwconv2.weight": (dim, 4 * dim),
                    p + "pwconv2.bias": (dim,),
                }
            )
            for k in range(order - 1):
                shapes[p + f"gnconv.pws.{k}.weight"] = (order_dims[k + 1], order_dims[k], 1, 1)
                shapes[p + f"gnconv.pws.{k}.bias"] = (order_dims[k + 1],)
            if gf is not None and i >= 2:
                h, w = gf[i - 2]
                shapes.update(
                    {
                        p + "gnconv.dwconv.dw.weight": (gate // 2, 1, 3, 3),
                        p + "gnconv.dwconv.complex_weight": (gate // 2, h, w, 2),
                        p + "gnconv.dwconv.pre_norm.weight": (gate,),
                        p + "gnconv.dwconv.pre_norm.bias": (gate,),
                        p + "gnconv.dwconv.post_norm.weight": (gate,),
                        p + "gnconv.dwconv.post_norm.bias": (gate,),
                    }
                )
            else:
                shapes[p + "gnconv.dwconv.weight"] = (gate, 1, 7, 7)
                shapes[p + "gnconv.dwconv.bias"] = (gate,)
    shapes.update(
        {
            "norm.weight": (dims[3],),
            "norm.bias": (dims[3],),
            "head.weight": (num_classes, dims[3]),
            "head.bias": (num_classes,),
        }
    )
    return shapes


def random_official_state_dict(
    variant: str, seed: int = 0, device: str = "cpu", **kwargs
) -> dict[str, Tensor]:
    """An official-layout state dict of random values (all distinct: a misplaced tensor shows).

    Norm weights and layer scales are drawn around 1 and 0.5 so that every branch contributes
    to the output (the official init of gamma, 1e-6, would hide a wrong gnConv).
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in official_shapes(variant, **kwargs).items():
        if device == "meta":
            out[key] = torch.empty(shape, device="meta")
            continue
        value = torch.randn(shape, generator=gen)
        if key.endswith(("gamma1", "gamma2")):
            value = 0.5 + 0.1 * value
        elif len(shape) == 1 and "norm" in key and key.endswith("weight"):
            value = 1.0 + 0.1 * value
        elif len(shape) > 1:
            fan_in = shape[1] * (shape[2] * shape[3] if len(shape) == 4 and "complex" not in key else 1)
            value = value / fan_in**0.5 if "complex" not in key else value
        out[key] = value
    return out


def write_official_checkpoint(path, state_dict: dict[str, Tensor], with_training_state: bool = True) -> None:
    """Save as the official training script does: the weights under ``'model'``, plus (optionally)
    the optimizer, epoch, scaler and the ``argparse.Namespace`` of the training arguments."""
    checkpoint = {"model": state_dict}
    if with_training_state:
        checkpoint.update(
            optimizer={"state": {}, "param_groups": [{"lr": 4e-3, "params": [0, 1]}]},
            epoch=299,
            scaler={"scale": 65536.0, "growth_factor": 2.0},
            args=argparse.Namespace(model="hornet", drop_path=0.2, lr=4e-3, output_dir="./logs"),
        )
    torch.save(checkpoint, path)


def _ln_channels_first(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-6) -> Tensor:
    # LayerNorm over the channels of (B, C, H, W): mean and biased variance per pixel
    mean = x.mean(1, keepdim=True)
    var = (x - mean).pow(2).mean(1, keepdim=True)
    return weight[:, None, None] * (x - mean) / torch.sqrt(var + eps) + bias[:, None, None]


def _global_local_filter(sd: dict[str, Tensor], p: str, x: Tensor) -> Tensor:
    x = _ln_channels_first(x, sd[p + "pre_norm.weight"], sd[p + "pre_norm.bias"])
    x1, x2 = torch.chunk(x, 2, dim=1)
    x1 = F.conv2d(x1, sd[p + "dw.weight"], padding=1, groups=x1.shape[1])
    b, c, a, w_ = x2.shape
    spec = torch.fft.rfft2(x2.float(), dim=(2, 3), norm="ortho")
    weight = sd[p + "complex_weight"]
    if tuple(weight.shape[1:3]) != tuple(spec.shape[2:4]):
        weight = F.interpolate(
            weight.permute(3, 0, 1, 2), size=spec.shape[2:4], mode="bilinear", align_corners=True
        ).permute(1, 2, 3, 0)
    spec = spec * torch.view_as_complex(weight.contiguous())
    x2 = torch.fft.irfft2(spec, s=(a, w_), dim=(2, 3), norm="ortho")
    # channel order local_0, global_0, local_1, global_1, ...
    x = torch.cat([x1.unsqueeze(2), x2.unsqueeze(2)], dim=2).reshape(b, 2 * c, a, w_)
    return _ln_channels_first(x, sd[p + "post_norm.weight"], sd[p + "post_norm.bias"])


def _gnconv(sd: dict[str, Tensor], p: str, x: Tensor, dim: int, order: int) -> Tensor:
    dims = _order_dims(dim, order)
    fused = F.conv2d(x, sd[p + "proj_in.weight"], sd[p + "proj_in.bias"])
    pwa, abc = torch.split(fused, (dims[0], sum(dims)), dim=1)
    if p + "dwconv.weight" in sd:
        dw = F.conv2d(abc, sd[p + "dwconv.weight"], sd[p + "dwconv.bias"], padding=3, groups=sum(dims))
    else:
        dw = _global_local_filter(sd, p + "dwconv.", abc)
    dw_list = torch.split(dw / 3.0, dims, dim=1)
    x = pwa * dw_list[0]
    for k in range(order - 1):
        x = F.conv2d(x, sd[p + f"pws.{k}.weight"], sd[p + f"pws.{k}.bias"]) * dw_list[k + 1]
    return F.conv2d(x, sd[p + "proj_out.weight"], sd[p + "proj_out.bias"])


@torch.no_grad()
def official_forward(sd: dict[str, Tensor], x: Tensor, variant: str) -> Tensor:
    """Logits of the official architecture with the official-layout weights ``sd`` (any depths)."""
    base, _ = VARIANTS[variant]
    dims = [base * 2**i for i in range(4)]
    x = F.conv2d(x, sd["downsample_layers.0.0.weight"], sd["downsample_layers.0.0.bias"], stride=4)
    x = _ln_channels_first(x, sd["downsample_layers.0.1.weight"], sd["downsample_layers.0.1.bias"])
    for i in range(4):
        if i > 0:
            p = f"downsample_layers.{i}."
            x = _ln_channels_first(x, sd[p + "0.weight"], sd[p + "0.bias"])
            x = F.conv2d(x, sd[p + "1.weight"], sd[p + "1.bias"], stride=2)
        j = 0
        while f"stages.{i}.{j}.gamma1" in sd:
            p = f"stages.{i}.{j}."
            y = _ln_channels_first(x, sd[p + "norm1.weight"], sd[p + "norm1.bias"])
            x = x + sd[p + "gamma1"].view(-1, 1, 1) * _gnconv(sd, p + "gnconv.", y, dims[i], ORDERS[i])
            y = x.permute(0, 2, 3, 1)
            y = F.layer_norm(y, (dims[i],), sd[p + "norm2.weight"], sd[p + "norm2.bias"], 1e-6)
            y = F.linear(
                F.gelu(F.linear(y, sd[p + "pwconv1.weight"], sd[p + "pwconv1.bias"])),
                sd[p + "pwconv2.weight"],
                sd[p + "pwconv2.bias"],
            )
            x = x + (sd[p + "gamma2"] * y).permute(0, 3, 1, 2)
            j += 1
    x = F.layer_norm(x.mean((-2, -1)), (dims[3],), sd["norm.weight"], sd["norm.bias"], 1e-6)
    return F.linear(x, sd["head.weight"], sd["head.bias"])
