"""Template banks for classifying depthwise kernels by correlation.

Six families, each sampled on the kernel grid (centre at ``(k - 1) / 2`` on each axis, as in
:mod:`neural_echos.dog`), then made unit-L2-norm so that a dot product with an L2-normalised
kernel is a cosine in [-1, 1]. The DoG and derivative families are also made zero-mean (they
are differences: a constant offset must never match them); blobs and deltas are not (a constant
offset is what they are made of):

- ``dog``: on-center Difference-of-Gaussians (:func:`neural_echos.dog.dog_kernels`, the OOCS form
  of "Neural Echos", arXiv 2401.10178) over a grid of centre/surround ratios gamma and centre
  radii r. Off-center kernels are their negatives, so the sign of a correlation gives the polarity.
- ``first_derivative``: oriented first derivatives of a Gaussian (edges), over angles and sigmas.
- ``second_derivative``: oriented second derivatives (bars) and mixed derivatives (crosses /
  saddles, d^2/du dv for rotated axes u, v, which include d^2/dx dy), over angles and sigmas.
- ``blob``: one-signed Gaussians G (blur kernels), over sigmas; a negative blob is a blob too.
- ``delta``: the identity kernel (1 at the centre pixel, 0 elsewhere; odd sizes only).
- ``shifted_delta``: 1 at one pixel other than the centre (a shift by whole pixels).

The derivative families are the "beyond the paper" extension: the authors' follow-up
("Unveiling the Unseen", arXiv 2401.14469) finds most kernels that are not center-surround are
first- and second-order derivatives of Gaussians. For derivative templates only |correlation|
matters (a negated edge is the same edge turned by 180 degrees; a negated bar is a dark bar).
Blobs and deltas are what trained 3x3 depthwise kernels mostly are (blur and identity); the
master-key-filter papers (arXiv 2412.16751, 2509.12746) find such discrete-Gaussian and
difference operators among the 8 universal ConvNeXt V2 filters.

Grids scale with the kernel size ``k = max(kh, kw)``:

- DoG: gamma in ``DOG_GAMMAS``; r = f (k + 1) / 2 for f in ``DOG_RADIUS_FRACTIONS``
  (f = gamma gives dog_kernels' default radius; small f gives compact center-surround shapes).
- derivatives: sigma = max(``MIN_SIGMA``, s k / 7) for s in ``DERIVATIVE_SIGMAS`` (pixels for a
  7x7 kernel), duplicates dropped. Below 0.8 px a sampled second derivative is nearly a point,
  i.e. isotropic, and matches a DoG better than the continuous bound (0.83, from
  G_uu . (G_xx + G_yy) = 4 / sqrt(24)) that keeps the two families apart;
  ``N_ANGLES`` orientations over [0, pi) for first and oriented second derivatives and
  ``N_ANGLES // 2`` over [0, pi / 2) for mixed ones (their pattern repeats, negated, after pi / 2).
- blobs: sigma = max(``MIN_BLOB_SIGMA``, s k / 7) for s in ``BLOB_SIGMAS``, duplicates dropped.

Banks are cached per (size, families): build cost is paid once per kernel size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from neural_echos.dog import dog_fits, dog_kernels, effective_radius

FAMILIES = ("dog", "first_derivative", "second_derivative", "blob", "delta", "shifted_delta")
ZERO_MEAN_FAMILIES = ("dog", "first_derivative", "second_derivative")
DOG_GAMMAS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8)
DOG_RADIUS_FRACTIONS = (0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0)
DERIVATIVE_SIGMAS = (0.8, 1.2, 1.8)
MIN_SIGMA = 0.8
BLOB_SIGMAS = (0.5, 0.8, 1.2, 1.8, 2.7, 4.0)
MIN_BLOB_SIGMA = 0.5
N_ANGLES = 8


@dataclass(frozen=True)
class TemplateBank:
    """Zero-mean, unit-norm templates for one kernel size.

    Attributes:
        size: ``(kh, kw)``.
        templates: ``[T, kh * kw]`` float32, each row zero-mean with L2 norm 1.
        family: ``[T]`` int64, index into :data:`FAMILIES`.
        names: ``[T]`` numpy array of short names, e.g. ``"dog(gamma=0.50,r=2.00)"``,
            ``"d1(theta=45,sigma=1.20)"``, ``"d2(theta=90,sigma=0.80)"``, ``"dxy(theta=0,sigma=1.20)"``,
            ``"blob(sigma=1.20)"``, ``"delta"``, ``"shift(dy=-1,dx=0)"``.
        centre: ``[T, kh * kw]`` float32 0/1: the pixels of a DoG template's centre (d < r, with
            the radius the DoG actually got, :func:`neural_echos.dog.effective_radius`); all zero
            for derivative templates.
    """

    size: tuple[int, int]
    templates: Tensor
    family: Tensor
    names: np.ndarray
    centre: Tensor

    def __len__(self) -> int:
        return self.templates.shape[0]


def bank_size(size: int | tuple[int, int], families: tuple[str, ...] = FAMILIES) -> int:
    """How many templates :func:`template_bank` holds for ``size`` at most, counted without
    building them (a bank grows with the square of the pixels: budgets must not build it)."""
    kh, kw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    k = max(kh, kw)
    derivative_sigmas = len({round(max(MIN_SIGMA, s * k / 7), 3) for s in DERIVATIVE_SIGMAS})
    rows, cols = min(kh, 3 + (kh % 2 == 0)), min(kw, 3 + (kw % 2 == 0))  # difference_templates' window
    neighbour_pairs = rows * (cols - 1) + (rows - 1) * cols + 2 * (rows - 1) * (cols - 1)
    counts = {
        "dog": len(DOG_GAMMAS) * len(DOG_RADIUS_FRACTIONS) if dog_fits((kh, kw)) else 0,
        "first_derivative": N_ANGLES * derivative_sigmas + neighbour_pairs,
        "second_derivative": (N_ANGLES + N_ANGLES // 2) * derivative_sigmas,
        "blob": len({round(max(MIN_BLOB_SIGMA, s * k / 7), 3) for s in BLOB_SIGMAS}),
        "delta": int(kh % 2 == 1 and kw % 2 == 1),
        "shifted_delta": kh * kw - int(kh % 2 == 1 and kw % 2 == 1),
    }
    return sum(counts[family] for family in families)


def template_bank(size: int | tuple[int, int], families: tuple[str, ...] = FAMILIES) -> TemplateBank:
    """The cached template bank for kernels of ``size`` (``k`` or ``(kh, kw)``).

    A grid with every pixel at the same distance from the centre (2x2, 1x2) gets no DoG template;
    a bank asked for DoGs only is then empty.

    Raises:
        ValueError: for an unknown family, or a size with fewer than 2 pixels.
    """
    kh, kw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    families = tuple(families)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"template families must be a non-empty subset of {FAMILIES}; got {families}")
    if kh * kw < 2:
        raise ValueError(f"a {kh}x{kw} kernel is too small to compare with templates")
    return _cached_bank(kh, kw, families)


@lru_cache(maxsize=64)
def _cached_bank(kh: int, kw: int, families: tuple[str, ...]) -> TemplateBank:
    parts: list[tuple[Tensor, list[str], int, Tensor]] = []  # images, names, family, centre masks
    no_centre = lambda images: torch.zeros(images.shape[0], kh * kw, dtype=torch.float64)
    if "dog" in families and dog_fits((kh, kw)):
        images, names, radius = dog_templates((kh, kw))
        parts.append((images, names, FAMILIES.index("dog"), _centre_masks(radius, (kh, kw))))
    if "first_derivative" in families:
        images, names = first_derivative_templates((kh, kw))
        parts.append((images, names, FAMILIES.index("first_derivative"), no_centre(images)))
        images, names = difference_templates((kh, kw))
        parts.append((images, names, FAMILIES.index("first_derivative"), no_centre(images)))
    if "second_derivative" in families:
        images, names = second_derivative_templates((kh, kw))
        parts.append((images, names, FAMILIES.index("second_derivative"), no_centre(images)))
    if "blob" in families:
        images, names = blob_templates((kh, kw))
        parts.append((images, names, FAMILIES.index("blob"), no_centre(images)))
    for family in ("delta", "shifted_delta"):
        if family in families:
            images, names = delta_templates((kh, kw), shifted=family == "shifted_delta")
            parts.append((images, names, FAMILIES.index(family), no_centre(images)))

    if not parts:  # only DoGs asked for, on a grid where no DoG fits (e.g. 2x2)
        empty = torch.zeros(0, kh * kw)
        return TemplateBank(
            (kh, kw), empty, torch.zeros(0, dtype=torch.int64), np.array([], dtype=str), empty
        )
    flat = torch.cat([images.reshape(images.shape[0], kh * kw) for images, _, _, _ in parts]).to(
        torch.float64
    )
    family = torch.cat([torch.full((images.shape[0],), fam) for images, _, fam, _ in parts])
    zero_mean = torch.isin(family, torch.tensor([FAMILIES.index(f) for f in ZERO_MEAN_FAMILIES]))
    # differences are zero-mean (a constant offset never matches them); blobs and deltas are not
    flat = torch.where(zero_mean[:, None], flat - flat.mean(dim=1, keepdim=True), flat)
    norm = flat.norm(dim=1)
    keep = norm > 1e-9 * norm.max()  # a derivative may vanish on a tiny grid (e.g. d2 on 1x3)
    flat = flat[keep] / norm[keep, None]
    family = family[keep]
    names = np.array([name for _, part_names, _, _ in parts for name in part_names])[keep.numpy()]
    centre = torch.cat([masks for _, _, _, masks in parts])[keep]
    return TemplateBank(
        (kh, kw), flat.to(torch.float32).contiguous(), family, names, centre.to(torch.float32)
    )


def _centre_masks(radius: Tensor, size: tuple[int, int]) -> Tensor:
    """``[T, kh * kw]`` 0/1: pixels with d < r for each radius (kept inside the window as for DoGs)."""
    kh, kw = size
    ys = torch.arange(kh, dtype=torch.float64) - (kh - 1) / 2
    xs = torch.arange(kw, dtype=torch.float64) - (kw - 1) / 2
    d2 = (ys[:, None] ** 2 + xs[None, :] ** 2).reshape(1, -1)
    r = effective_radius(radius, size)
    return (d2 < r[:, None] ** 2).to(torch.float64)


def dog_templates(size: tuple[int, int]) -> tuple[Tensor, list[str], Tensor]:
    """On-center DoGs over ``DOG_GAMMAS`` x ``DOG_RADIUS_FRACTIONS``: ``([T, kh, kw], names, radii [T])``."""
    k = max(size)
    gamma, fraction = torch.meshgrid(
        torch.tensor(DOG_GAMMAS, dtype=torch.float64),
        torch.tensor(DOG_RADIUS_FRACTIONS, dtype=torch.float64),
        indexing="ij",
    )
    gamma, radius = gamma.reshape(-1), fraction.reshape(-1) * (k + 1) / 2  # r = f (k + 1) / 2
    images = dog_kernels(gamma, size, radius=radius, on_center=True, dtype=torch.float64)
    names = [f"dog(gamma={g:.2f},r={r:.2f})" for g, r in zip(gamma.tolist(), radius.tolist())]
    return images, names, radius


def first_derivative_templates(size: tuple[int, int]) -> tuple[Tensor, list[str]]:
    """Oriented first derivatives of Gaussians, dG/du with u = x cos(theta) + y sin(theta)."""
    x, y, sigma, theta = _grid(size, N_ANGLES, math.pi)
    u = x * torch.cos(theta) + y * torch.sin(theta)
    images = -u / sigma**2 * _gaussian(x, y, sigma)  # dG/du = -u / sigma^2 G
    return _flatten_grid(images), _names("d1", sigma, theta)


def difference_templates(size: tuple[int, int]) -> tuple[Tensor, list[str]]:
    """Discrete first differences of two neighbouring pixels (+1, -1; 8-neighbours) of the central
    3x3 window: first derivatives at half-pixel offsets, like several of the master key filters
    (arXiv 2412.16751, 2509.12746). Without them a centre pixel with one opposite-sign neighbour
    is best matched by a DoG, and is antagonistic."""
    kh, kw = size
    ci, cj = (kh - 1) // 2, (kw - 1) // 2
    window = [
        (i, j)
        for i in range(max(0, ci - 1), min(kh, ci + 2 + (kh % 2 == 0)))
        for j in range(max(0, cj - 1), min(kw, cj + 2 + (kw % 2 == 0)))
    ]
    images, names = [], []
    for a, (i, j) in enumerate(window):
        for i2, j2 in window[a + 1 :]:
            if max(abs(i - i2), abs(j - j2)) == 1:  # neighbours (8-connected)
                image = torch.zeros(kh, kw, dtype=torch.float64)
                image[i, j], image[i2, j2] = 1.0, -1.0
                images.append(image)
                names.append(f"diff({i},{j}:{i2},{j2})")
    return (torch.stack(images) if images else torch.zeros(0, kh, kw, dtype=torch.float64)), names


def second_derivative_templates(size: tuple[int, int]) -> tuple[Tensor, list[str]]:
    """Oriented second derivatives d^2G/du^2 (bars) and mixed ones d^2G/du dv (crosses)."""
    x, y, sigma, theta = _grid(size, N_ANGLES, math.pi)
    u = x * torch.cos(theta) + y * torch.sin(theta)
    bars = (u**2 / sigma**4 - 1 / sigma**2) * _gaussian(x, y, sigma)  # d^2G/du^2 = (u^2/s^4 - 1/s^2) G

    x, y, sigma_c, theta_c = _grid(size, N_ANGLES // 2, math.pi / 2)
    u = x * torch.cos(theta_c) + y * torch.sin(theta_c)
    v = -x * torch.sin(theta_c) + y * torch.cos(theta_c)
    crosses = u * v / sigma_c**4 * _gaussian(x, y, sigma_c)  # d^2G/du dv = u v / sigma^4 G

    images = torch.cat([_flatten_grid(bars), _flatten_grid(crosses)])
    return images, _names("d2", sigma, theta) + _names("dxy", sigma_c, theta_c)


def blob_templates(size: tuple[int, int]) -> tuple[Tensor, list[str]]:
    """One-signed Gaussians G over ``BLOB_SIGMAS`` (scaled with the kernel size)."""
    kh, kw = size
    ys = torch.arange(kh, dtype=torch.float64) - (kh - 1) / 2
    xs = torch.arange(kw, dtype=torch.float64) - (kw - 1) / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    sigmas = sorted({round(max(MIN_BLOB_SIGMA, s * max(kh, kw) / 7), 3) for s in BLOB_SIGMAS})
    sigma = torch.tensor(sigmas, dtype=torch.float64)[:, None, None]
    return _gaussian(x[None], y[None], sigma), [f"blob(sigma={s:.2f})" for s in sigmas]


def delta_templates(size: tuple[int, int], shifted: bool) -> tuple[Tensor, list[str]]:
    """The identity kernel (``shifted=False``; none on even grids, which have no centre pixel) or
    the one-pixel shifts (``shifted=True``: 1 at every pixel but the centre)."""
    kh, kw = size
    images, names = [], []
    for i in range(kh):
        for j in range(kw):
            dy, dx = i - (kh - 1) / 2, j - (kw - 1) / 2
            if (dy == 0 and dx == 0) == shifted:
                continue
            image = torch.zeros(kh, kw, dtype=torch.float64)
            image[i, j] = 1.0
            images.append(image)
            names.append(f"shift(dy={dy:g},dx={dx:g})" if shifted else "delta")
    return (torch.stack(images) if images else torch.zeros(0, kh, kw, dtype=torch.float64)), names


def _grid(size: tuple[int, int], n_angles: int, period: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Broadcastable ``x, y [1, 1, kh, kw]``, ``sigma [S, 1, 1, 1]`` and ``theta [1, A, 1, 1]``."""
    kh, kw = size
    ys = torch.arange(kh, dtype=torch.float64) - (kh - 1) / 2
    xs = torch.arange(kw, dtype=torch.float64) - (kw - 1) / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    # sigma = max(MIN_SIGMA, s k / 7), duplicates dropped
    sigmas = sorted({round(max(MIN_SIGMA, s * max(kh, kw) / 7), 3) for s in DERIVATIVE_SIGMAS})
    sigma = torch.tensor(sigmas, dtype=torch.float64)
    theta = torch.arange(n_angles, dtype=torch.float64) * period / n_angles
    return x[None, None], y[None, None], sigma[:, None, None, None], theta[None, :, None, None]


def _gaussian(x: Tensor, y: Tensor, sigma: Tensor) -> Tensor:
    return torch.exp(-(x**2 + y**2) / (2 * sigma**2))  # G = exp(-(x^2 + y^2) / (2 sigma^2))


def _flatten_grid(images: Tensor) -> Tensor:
    return images.reshape(-1, *images.shape[-2:])


def _names(prefix: str, sigma: Tensor, theta: Tensor) -> list[str]:
    return [
        f"{prefix}(theta={round(math.degrees(t))},sigma={s:.2f})"
        for s in sigma.reshape(-1).tolist()
        for t in theta.reshape(-1).tolist()
    ]


__all__ = [
    "BLOB_SIGMAS",
    "DERIVATIVE_SIGMAS",
    "DOG_GAMMAS",
    "DOG_RADIUS_FRACTIONS",
    "FAMILIES",
    "MIN_SIGMA",
    "N_ANGLES",
    "ZERO_MEAN_FAMILIES",
    "TemplateBank",
    "bank_size",
    "blob_templates",
    "delta_templates",
    "dog_templates",
    "first_derivative_templates",
    "second_derivative_templates",
    "template_bank",
]
