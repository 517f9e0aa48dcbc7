"""Kernels of known kinds, for the classifier tests (a fixture, not library code)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neural_echos.dog import dog_kernels
from neural_echos.templates import MIN_SIGMA

SYNTHETIC_KINDS = ("on_center", "off_center", "first_derivative", "second_derivative", "noise")


def synthetic_kernels(
    counts: dict[str, int], size: int = 7, noise: float = 0.3, seed: int = 0
) -> tuple[Tensor, list[str]]:
    """Kernels of known kinds for tests and sanity checks: ``([n, size, size], kinds)``, shuffled.

    ``counts`` maps kinds of :data:`SYNTHETIC_KINDS` to numbers of kernels:

    - on/off_center: DoGs (:func:`neural_echos.dog.dog_kernels`) with gamma ~ U(0.25, 0.75) and
      default radius, negated for off-center;
    - first_derivative: dG/du at a uniform random angle, sigma ~ U(0.8, 1.8) k / 7 (>= MIN_SIGMA);
    - second_derivative: half bars d^2G/du^2, half crosses d^2G/du dv, random angle and sign;
    - noise: i.i.d. Gaussian.

    Every signal has unit L2 norm; i.i.d. Gaussian noise of total norm ~ ``noise`` is added, and
    each kernel is multiplied by a random scale in [0.01, 1] (classifiers must ignore scale).
    Uses its own ``torch.Generator(seed)``, never the global random state.
    """
    unknown = set(counts) - set(SYNTHETIC_KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; use {SYNTHETIC_KINDS}")
    gen = torch.Generator().manual_seed(seed)
    k = size
    ys = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    y, x = torch.meshgrid(ys, ys, indexing="ij")

    def uniform(n: int, low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(n, 1, 1, generator=gen, dtype=torch.float64)

    parts, kinds = [], []
    for kind in SYNTHETIC_KINDS:
        n = counts.get(kind, 0)
        if n == 0:
            continue
        if kind in ("on_center", "off_center"):
            gamma = uniform(n, 0.25, 0.75).reshape(-1)
            images = dog_kernels(gamma, k, on_center=kind == "on_center", dtype=torch.float64)
        elif kind == "noise":
            images = torch.randn(n, k, k, generator=gen, dtype=torch.float64)
        else:
            theta = uniform(n, 0, 2 * math.pi)
            sigma = (uniform(n, 0.8, 1.8) * k / 7).clamp_min(MIN_SIGMA)
            u = x * torch.cos(theta) + y * torch.sin(theta)
            v = -x * torch.sin(theta) + y * torch.cos(theta)
            gauss = torch.exp(-(x**2 + y**2) / (2 * sigma**2))
            if kind == "first_derivative":
                images = -u / sigma**2 * gauss
            else:
                bars = (u**2 / sigma**4 - 1 / sigma**2) * gauss
                crosses = u * v / sigma**4 * gauss
                is_bar = torch.rand(n, 1, 1, generator=gen) < 0.5
                sign = torch.where(torch.rand(n, 1, 1, generator=gen) < 0.5, 1.0, -1.0).to(torch.float64)
                images = sign * torch.where(is_bar, bars, crosses)
        images = images - images.mean(dim=(1, 2), keepdim=True) * (kind != "noise")
        images = images / images.flatten(1).norm(dim=1)[:, None, None]
        images = images + noise * torch.randn(n, k, k, generator=gen, dtype=torch.float64) / k
        parts.append(images * uniform(n, 0.01, 1.0))
        kinds += [kind] * n
    kernels = torch.cat(parts).to(torch.float32)
    order = torch.randperm(len(kinds), generator=gen)
    return kernels[order], [kinds[i] for i in order.tolist()]
