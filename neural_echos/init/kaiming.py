"""``kaiming_normal`` / ``kaiming_uniform``: the baseline of "Neural Echos".

N(0, std^2) with ``std = sqrt(2) / sqrt(fan_in)``, or U(-b, b) with ``b = sqrt(2) * sqrt(3 / fan_in)``,
as ``torch.nn.init.kaiming_normal_`` / ``kaiming_uniform_`` with their defaults (a = 0,
mode="fan_in"); for a depthwise layer fan_in = k^2 (times the input channels per group, 1).
Stated explicitly because model defaults differ: timm's ConvNeXt initialises depthwise convs
with trunc-normal(std 0.02), timm's ConvMixer keeps PyTorch's ``nn.Conv2d`` default (the
``torch_default`` method), so "default init" is no baseline.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neural_echos.init.base import (
    KAIMING_GAIN,
    DepthwiseLayer,
    InitMethod,
    LayerInit,
    kaiming_std,
    layer_stds,
    plain_records,
)


class _Kaiming(InitMethod):
    """What both Kaiming methods share: every kernel drawn anew at the Kaiming std for its fan-in."""

    def settings(self) -> dict[str, Any]:
        return {"gain": KAIMING_GAIN}

    def draw(self, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def init_layers(self, layers: list[DepthwiseLayer], generator: torch.Generator) -> list[LayerInit]:
        weights = [layer.conv.weight for layer in layers]
        std_before = layer_stds(weights)
        for weight in weights:
            weight.copy_(self.draw(weight, generator))
        return plain_records(layers, std_before, layer_stds(weights))


class KaimingNormalInit(_Kaiming, name="kaiming_normal"):
    """Kaiming-normal depthwise kernels, N(0, 2 / fan_in): the paper's baseline. No options."""

    def draw(self, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(weight.shape, generator=generator) * kaiming_std(weight)  # N(0, std^2)


class KaimingUniformInit(_Kaiming, name="kaiming_uniform"):
    """Kaiming-uniform depthwise kernels, U(-b, b) with b = sqrt(6 / fan_in). No options."""

    def draw(self, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        bound = math.sqrt(3.0) * kaiming_std(weight)  # b = gain * sqrt(3 / fan_in) = sqrt(3) * std
        return (2 * torch.rand(weight.shape, generator=generator) - 1) * bound  # U(-b, b)


__all__ = ["KaimingNormalInit", "KaimingUniformInit"]
