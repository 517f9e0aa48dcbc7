"""Kernels whose answer is known, for testing and calibrating the classifiers.

- :func:`master_key_filters`: the 8 "master key filters" of ConvNeXt V2 Tiny (Babaiee et al.,
  arXiv 2412.16751; Lindeberg, Babaiee, Kiasari, arXiv 2509.12746), shipped in
  ``neural_echos/data/master_key_filters.txt`` from ``tonylindeberg/masterfiltmodel``
  (``model-fitting/8Filters.txt``, CC BY 4.0, Copyright 2026 Tony Lindeberg). Filters 7 and 8
  are center-surround (on-center), 1-6 are not; their negatives flip the polarity.
- :func:`population`: a population shaped like a trained network's depthwise kernels: mostly
  blobs, deltas, shifts and derivatives of Gaussians, with a known share of on- and off-center
  DoGs, each drawn with random continuous parameters (off any template grid), random scale and
  added noise. Every kernel's true class comes with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from neural_echos.dog import dog_kernels

MASTER_KEY_FILE = Path(__file__).parent / "data" / "master_key_filters.txt"
MASTER_KEY_CENTER_SURROUND = (7, 8)  # 1-based numbers of the on-center master key filters


def master_key_filters() -> Tensor:
    """``[8, 7, 7]`` float32: the 8 master key filters, in the file's order (Filter 1 first)."""
    filters, rows = [], []
    for line in MASTER_KEY_FILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("Filter"):
            if rows:
                filters.append(rows)
            rows = []
            continue
        rows.append([float(v) for v in line.split()])
    filters.append(rows)
    return torch.tensor(filters, dtype=torch.float32)


# the classes a population is drawn from (names of neural_echos.taxonomy.DETAILED_CLASSES)
POPULATION_CLASSES = (
    "on_center",
    "off_center",
    "blob",
    "delta",
    "shifted_delta",
    "first_derivative",
    "second_derivative",
)
# a trained network's mix before the DoGs are added: close to EfficientNet-Lite1's by the template
# classifier (blobs 51 %, edges 23 %, bars 7 %, shifts 4 %, deltas 2 %; docs/classification.md), with
# deltas and shifts raised to 10 % each so that every class is well represented
BACKGROUND_MIX = {
    "blob": 0.5,
    "delta": 0.1,
    "shifted_delta": 0.1,
    "first_derivative": 0.2,
    "second_derivative": 0.1,
}


@dataclass
class Population:
    """Kernels ``[n, k, k]`` with their true classes (``[n]`` indices into POPULATION_CLASSES)."""

    kernels: Tensor
    truth: np.ndarray

    def share(self, name: str) -> float:
        return float((self.truth == POPULATION_CLASSES.index(name)).mean())


def population(
    n: int, size: int, on_share: float, off_share: float, noise: float = 0.3, seed: int = 0
) -> Population:
    """A realistic known-answer population (see the module docstring).

    Args:
        n: kernels.
        size: odd kernel size k (k x k kernels).
        on_share, off_share: exact shares of on- and off-center DoGs; the rest follows
            :data:`BACKGROUND_MIX`.
        noise: i.i.d. Gaussian noise added to each unit-norm pattern, as its RMS per pixel times
            k (so ``noise`` is the noise's expected L2 norm relative to the pattern's: 0.3 is
            9 % of the pattern's energy).
        seed: seed of a private generator.
    """
    rng = np.random.default_rng(seed)
    counts = {"on_center": round(n * on_share), "off_center": round(n * off_share)}
    rest = n - sum(counts.values())
    names = list(BACKGROUND_MIX)
    drawn = rng.choice(len(names), size=rest, p=np.array([BACKGROUND_MIX[c] for c in names]))
    counts.update({c: int((drawn == i).sum()) for i, c in enumerate(names)})
    kernels, truth = [], []
    for name, count in counts.items():
        if count:
            kernels.append(_draw(name, count, size, rng))
            truth.append(np.full(count, POPULATION_CLASSES.index(name)))
    patterns = torch.cat(kernels)
    patterns = patterns / patterns.flatten(1).norm(dim=1)[:, None, None]
    noisy = patterns + torch.from_numpy(rng.normal(0, noise / size, patterns.shape)).float()
    scale = torch.from_numpy(rng.lognormal(0, 0.5, n)).float()[:, None, None]  # any scale: classes ignore it
    order = torch.from_numpy(rng.permutation(n))
    return Population((noisy * scale)[order], np.concatenate(truth)[order.numpy()])


def _draw(name: str, count: int, k: int, rng: np.random.Generator) -> Tensor:
    c = (k - 1) / 2
    y, x = np.mgrid[0:k, 0:k].astype(np.float64) - c
    if name in ("on_center", "off_center"):
        gamma = torch.from_numpy(rng.uniform(0.2, 0.8, count))
        radius = torch.from_numpy(rng.uniform(0.3, 0.9, count) * (k + 1) / 2)
        return dog_kernels(gamma, k, radius=radius, on_center=name == "on_center")
    out = np.zeros((count, k, k))
    sign = rng.choice([-1.0, 1.0], size=count)
    for i in range(count):
        sigma = rng.uniform(0.6, 0.3 * k + 0.5)
        theta = rng.uniform(0, math.pi)
        u = x * math.cos(theta) + y * math.sin(theta)
        g = np.exp(-(x**2 + y**2) / (2 * sigma**2))
        if name == "blob":
            out[i] = g
        elif name == "delta":
            out[i, int(c), int(c)] = 1.0
        elif name == "shifted_delta":
            while True:
                i0, j0 = rng.integers(0, k, 2)
                if (i0, j0) != (int(c), int(c)):
                    break
            out[i, i0, j0] = 1.0
        elif name == "first_derivative":
            out[i] = -u / sigma**2 * g
        elif name == "second_derivative":
            # below 0.8 px a sampled bar is nearly a point; far above k / 4 it fills the window like a blob
            sigma = rng.uniform(0.8, 0.25 * k + 0.2)
            g = np.exp(-(x**2 + y**2) / (2 * sigma**2))
            out[i] = (u**2 / sigma**4 - 1 / sigma**2) * g
        out[i] *= sign[i]
    return torch.from_numpy(out).float()


__all__ = [
    "MASTER_KEY_CENTER_SURROUND",
    "POPULATION_CLASSES",
    "Population",
    "master_key_filters",
    "population",
]
