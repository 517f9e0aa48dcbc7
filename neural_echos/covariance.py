"""Learning-free Gaussian covariance of depthwise filters (the ``gaussian_covariance`` init), after
Trockman, Willmott & Kolter.

Reference: A. Trockman, D. Willmott, J. Z. Kolter, "Understanding the Covariance Structure of
Convolutional Filters", ICLR 2023 (arXiv 2210.03651), the section that proposes a closed-form,
learning-free construction of filter covariances; code at github.com/locuslab/convcov.

What is certain (stated in the paper's abstract):

- Every k x k depthwise filter is drawn independently from a zero-mean multivariate Gaussian
  N(0, Sigma) over its k^2 taps, instead of drawing each tap independently.
- Sigma (k^2 x k^2) is built in closed form, with no learning, from a few hyperparameters,
  motivated by the highly structured covariance of trained ConvMixer/ConvNeXt filters.

What we believe but have not verified (our recollection of the paper): Sigma has a Gaussian,
"blob"-shaped structure (taps close in space co-vary, each tap's row of Sigma looks like a
Gaussian bump around it), and its hyperparameters change with depth (different values early
and late in the network).

What is NOT known here, because this module was written without access to the paper's method
section (a search of the reference corpus found only its abstract): the exact equations of
their construction (for example whether Sigma is the Gaussian Gram matrix below, a product of
shifted-Gaussian block matrices, or something else), how they normalise its scale, and their
hyperparameter values. We therefore implement the following clearly stated construction,
which has the properties above, and name its hyperparameters ourselves. Do not report results
of it as "the Trockman et al. init" without checking the equations against the paper and the
convcov code; call it "Gaussian covariance init (after Trockman et al. 2023)".

The construction implemented here, for taps p, q of a kh x kw filter with centre c:

    C_pq     = exp(-|p - q|^2 / (2 sigma^2))             (Gaussian correlation of two taps)
    v_p      = exp(-|p - c|^2 / (4 tau^2))               (envelope: a tap's std falls off from the centre)
    Sigma_pq = v_p v_q C_pq + eps delta_pq               (covariance; tau = inf gives v = 1)

- ``sigma`` (pixels): correlation length; small sigma approaches i.i.d. taps, large sigma
  gives smooth, blob-like filters.
- ``tau`` (pixels, or None for no envelope): width of the variance envelope.
- ``eps`` (the "nugget"): added to the diagonal so Sigma is positive definite even when C is
  numerically singular (large sigma).
- Depth dependence: ``sigma`` and ``tau`` may be given as (early, late) pairs; layer l of L
  depthwise layers then uses early + (late - early) * l / (L - 1), a linear interpolation.

Sigma is positive definite by construction: C is a Gaussian (RBF) Gram matrix of distinct
points, D C D with the positive diagonal D = diag(v) is congruent to it, and eps > 0 keeps it
numerically positive definite when C is close to singular. The scale of Sigma is set by the
caller (the ``gaussian_covariance`` init method, :mod:`neural_echos.init.gaussian_covariance`,
scales it so that the mean variance of a tap matches Kaiming or the layer's previous std).

The default hyperparameters (:data:`DEFAULT_SIGMA`, :data:`DEFAULT_TAU`, :data:`DEFAULT_EPS`)
are placeholders of ours so the method runs; they are NOT values from the paper.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from neural_echos.dog import kernel_pair
from neural_echos.errors import ConfigError

_Size = int | tuple[int, int]

# Our placeholder defaults (NOT taken from the paper): wider correlation late in the network.
DEFAULT_SIGMA: tuple[float, float] = (1.0, 2.0)
DEFAULT_TAU: float | tuple[float, float] | None = None
DEFAULT_EPS: float = 1e-3


def gaussian_covariance(
    size: _Size, sigma: float, tau: float | None = None, eps: float = DEFAULT_EPS
) -> Tensor:
    """Return the float64 covariance ``Sigma`` of shape ``[kh * kw, kh * kw]`` (taps in row-major order).

    ``Sigma_pq = v_p v_q exp(-|p - q|^2 / (2 sigma^2)) + eps delta_pq`` with
    ``v_p = exp(-|p - c|^2 / (4 tau^2))`` (``v = 1`` when ``tau`` is None); see the module
    docstring. The diagonal is ``v_p^2 + eps``: 1 + eps at the centre.
    """
    kh, kw = kernel_pair(size)
    _check_positive("sigma", sigma)
    if tau is not None:
        _check_positive("tau", tau)
    if not (math.isfinite(eps) and eps >= 0):
        raise ConfigError(f"the covariance nugget eps must be a finite number >= 0; got {eps!r}")
    centre_d2, pair_d2 = _tap_distances(kh, kw)
    cov = torch.exp(pair_d2 * (-1 / (2 * sigma**2)))  # C_pq = exp(-|p - q|^2 / (2 sigma^2))
    if tau is not None:
        envelope = torch.exp(centre_d2 * (-1 / (4 * tau**2)))  # v_p = exp(-|p - c|^2 / (4 tau^2))
        cov = envelope[:, None] * cov * envelope[None, :]
    return cov + eps * torch.eye(kh * kw, dtype=torch.float64)


def depth_schedule(value: float | tuple[float, float] | None, n_layers: int) -> list[float | None]:
    """Per-layer values: a constant, or (early, late) linearly interpolated over n_layers layers."""
    if value is None or isinstance(value, (int, float)):
        return [value] * n_layers
    early, late = value
    if n_layers == 1:
        return [float(early)]
    return [early + (late - early) * layer / (n_layers - 1) for layer in range(n_layers)]


def sample_filters(
    cov: Tensor, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Draw n filters from N(0, cov): ``w = L z`` with ``cov = L L^T`` (Cholesky), z ~ N(0, I).

    Returns ``[n, cov.shape[0]]``. Random numbers come only from ``generator`` (CPU).
    """
    cov = cov.to(torch.float64)
    chol, info = torch.linalg.cholesky_ex(cov)
    if int(info) != 0:
        raise ConfigError(
            "the filter covariance is not positive definite (Cholesky failed); "
            "increase the nugget eps or decrease sigma"
        )
    z = torch.randn(n, cov.shape[0], generator=generator, dtype=torch.float64)
    return (z @ chol.T).to(dtype)


@functools.lru_cache(maxsize=32)
def _tap_distances(kh: int, kw: int) -> tuple[Tensor, Tensor]:
    """Squared distances of the taps (row-major) to the centre ``[k^2]`` and to each other
    ``[k^2, k^2]``, float64, cached per size (never modify them)."""
    ys = torch.arange(kh, dtype=torch.float64) - (kh - 1) / 2
    xs = torch.arange(kw, dtype=torch.float64) - (kw - 1) / 2
    taps = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)  # centre at 0
    pair_d2 = (taps[:, None, :] - taps[None, :, :]).square().sum(-1)  # |p - q|^2, exact
    return taps.square().sum(1), pair_d2


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ConfigError(
            f"covariance hyperparameter {name} must be a positive number of pixels; got {value!r}"
        )


__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_SIGMA",
    "DEFAULT_TAU",
    "depth_schedule",
    "gaussian_covariance",
    "sample_filters",
]
