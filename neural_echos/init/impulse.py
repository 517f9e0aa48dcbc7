"""``impulse``: each depthwise kernel an impulse (a one-hot kernel), optionally plus a small random part.

After Zheng, Li & Lucey, "Convolutional Initialization for Data-Efficient Vision Transformers"
(arXiv 2401.12511; code github.com/osiriszjq/impulse_init, ``SpatialConv2d_init(init='impulse')``),
who report that random impulse filters, kept fixed, come close to learned filters in CNNs.
Their form, this method's default: every kernel is zero except one entry, at a position drawn
uniformly from the k x k window (the convolution then shifts its channel), of value sqrt(1/3), so
that its L2 norm equals the expected norm of PyTorch's default conv init U(-1/k, 1/k) on a k x k
depthwise kernel (k^2 * (1/k)^2 / 3 = 1/3; their ``random`` baseline).

Options beyond the paper: ``position="center"`` puts every impulse at the window's centre (the
identity kernel: the layer starts as a per-channel identity), and
``noise`` adds a Gaussian random part so that the kernels are not exactly sparse.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from neural_echos.errors import ConfigError
from neural_echos.init.base import (
    DepthwiseLayer,
    InitMethod,
    LayerInit,
    check_choice,
    kaiming_std,
    layer_stds,
    match_std,
    plain_records,
    write_kernels,
)

POSITIONS = ("random", "center")
SCALES = ("paper", "unit", "kaiming", "match")
PAPER_AMPLITUDE = math.sqrt(1.0 / 3.0)  # the impulse value of osiriszjq/impulse_init


class ImpulseInit(InitMethod, name="impulse"):
    """Impulse (one-hot) depthwise kernels, after Zheng, Li & Lucey (arXiv 2401.12511).

    Per kernel: ``a * (e_p + noise / sqrt(kh * kw) * z)``, with ``e_p`` one at position p and
    zero elsewhere, ``z ~ N(0, I)`` and ``a`` set by ``scale``. The random part has per-entry std
    ``noise / sqrt(kh * kw)`` of the impulse's value, so its expected L2 norm is ``noise`` times
    the impulse's (``noise=0.1``: 1 % of the kernel's energy).

    Args:
        position: ``random`` (the paper's): the impulse at a position drawn uniformly from the
            kh x kw window, independently per kernel; ``center``: at the window's centre (the
            identity kernel; for an even side, the pixel below/right of the centre,
            ``(kh // 2, kw // 2)``, as PyTorch's ``padding="same"`` aligns it).
        noise: the random part's relative size (>= 0; 0, the default, is the paper's exact impulses).
        scale: the impulse's value. ``paper``: sqrt(1/3) (the L2 norm of PyTorch's default init);
            ``unit``: 1 (the identity with ``position=center``); ``kaiming``: each layer's
            kernels rescaled together (one factor per layer) to the root-mean-square of
            Kaiming-normal weights, ``sqrt(2) / sqrt(fan_in)`` (the second moment a zero-mean
            Kaiming init has; an impulse is not zero-mean, so its std is lower); ``match``: to
            the root-mean-square the layer's weight had before. As the DoG init's ``scale``.
    """

    def __init__(
        self,
        position: Literal["random", "center"] = "random",
        noise: float = 0.0,
        scale: Literal["paper", "unit", "kaiming", "match"] = "paper",
    ):
        check_choice("position", position, POSITIONS)
        check_choice("scale", scale, SCALES)
        number = isinstance(noise, (int, float)) and not isinstance(noise, bool)
        if not number or not math.isfinite(noise) or noise < 0:
            raise ConfigError(
                "noise is the random part's size relative to the impulse and must be a number >= 0; "
                f"got {noise!r} (0: exact impulses, as the paper)"
            )
        self.position, self.noise, self.scale = position, float(noise), scale

    def settings(self) -> dict[str, Any]:
        return {"position": self.position, "noise": self.noise, "scale": self.scale}

    def init_layers(self, layers: list[DepthwiseLayer], generator: torch.Generator) -> list[LayerInit]:
        weights = [layer.conv.weight for layer in layers]
        std_before = layer_stds(weights)
        rms_before = [float(weight.detach().double().square().mean().sqrt()) for weight in weights]
        if self.scale == "match":  # checked for every layer before any is written
            for layer, rms in zip(layers, rms_before, strict=True):
                match_std(layer.name, rms)
        # all random numbers first, layer by layer in module order: positions, then the noise
        drawn = []
        for weight in weights:
            n, (kh, kw) = weight.shape[0], weight.shape[2:]
            if self.position == "random":
                where = torch.randint(0, kh * kw, (n,), generator=generator)
            else:
                where = torch.full((n,), (kh // 2) * kw + kw // 2)
            noise = None
            if self.noise > 0:
                noise = torch.randn(n, kh * kw, generator=generator, dtype=torch.float64)
            drawn.append((where, noise))
        for weight, (where, noise), rms in zip(weights, drawn, rms_before, strict=True):
            n, (kh, kw) = weight.shape[0], weight.shape[2:]
            kernels = torch.zeros(n, kh * kw, dtype=torch.float64)
            kernels[torch.arange(n), where] = 1.0
            if noise is not None:
                kernels += noise * (self.noise / math.sqrt(kh * kw))
            if self.scale == "paper":
                kernels *= PAPER_AMPLITUDE
            elif self.scale in ("kaiming", "match"):
                target = kaiming_std(weight) if self.scale == "kaiming" else rms
                kernels *= target / kernels.square().mean().sqrt()
            write_kernels(weight, kernels.to(weight.dtype))
        return plain_records(layers, std_before, layer_stds(weights))


__all__ = ["PAPER_AMPLITUDE", "ImpulseInit"]
