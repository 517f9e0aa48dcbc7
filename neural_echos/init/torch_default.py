"""``torch_default``: PyTorch's own ``nn.Conv2d`` initialisation, drawn from the init's generator.

``nn.Conv2d.reset_parameters`` calls ``kaiming_uniform_(weight, a=sqrt(5))``: gain
sqrt(2 / (1 + a^2)) = sqrt(1/3), so weights ~ U(-b, b) with b = gain * sqrt(3 / fan_in) =
1 / sqrt(fan_in), i.e. std 1 / sqrt(3 fan_in); for a depthwise k x k layer fan_in = k^2:
std 1 / sqrt(3 k^2). This is the "uniform" baseline of Trockman, Willmott & Kolter
("Understanding the Covariance Structure of Convolutional Filters", ICLR 2023), and timm's
ConvMixer default. As with every method here, biases are left alone (PyTorch also redraws them).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from neural_echos.init.base import DepthwiseLayer, InitMethod, LayerInit, layer_stds, plain_records

A = math.sqrt(5.0)  # the negative slope nn.Conv2d.reset_parameters passes to kaiming_uniform_


class TorchDefaultInit(InitMethod, name="torch_default"):
    """PyTorch's conv default, kaiming_uniform with a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    No options."""

    def settings(self) -> dict[str, Any]:
        return {"gain": torch.nn.init.calculate_gain("leaky_relu", A)}  # sqrt(1/3)

    def init_layers(self, layers: list[DepthwiseLayer], generator: torch.Generator) -> list[LayerInit]:
        weights = [layer.conv.weight for layer in layers]
        std_before = layer_stds(weights)
        for weight in weights:
            # torch's own initialiser, on a CPU float32 copy so the generator (CPU) can drive it
            new = torch.empty(weight.shape, dtype=torch.float32)
            torch.nn.init.kaiming_uniform_(new, a=A, generator=generator)
            weight.copy_(new)
        return plain_records(layers, std_before, layer_stds(weights))


__all__ = ["TorchDefaultInit"]
