"""Difference-of-Gaussians (DoG) center-surround kernels, vectorised over many kernels.

The form is the one Babaiee et al. published for center-surround (OOCS) kernels and use in
"Neural Echos" (arXiv 2401.10178). For a centre/surround ratio ``gamma`` in (0, 1) and a
centre radius ``r``:

    sigma = r / (2 gamma) * sqrt((1 - gamma^2) / (-ln gamma))          (OOCS eq. sigma)
    E(d)  = 1 / gamma^2 * exp(-d^2 / (2 gamma^2 sigma^2))               (excitatory centre)
    I(d)  = exp(-d^2 / (2 sigma^2))                                     (inhibitory surround)
    K     = A_c E + A_s I                                               (on-center kernel)

``d`` is the distance of a pixel to the kernel centre, which sits at ``(k - 1) / 2`` on each
axis, so even sizes work. E > I exactly where d < r (sigma is chosen so that the two
Gaussians cross at r). A_c and A_s solve the 2x2 system that makes the centre entries
(d < r) sum to +1 and the surround entries sum to -1, so every kernel sums to 0. An
off-center kernel is the negative of the on-center one.

How it is computed
------------------
Solving the 2x2 system as written loses all precision in two corners: near gamma = 1
(E ~ I, so A_c ~ -A_s are huge and cancel) and for a small centre radius (the surround
Gaussian is ~1e-20 there, so A_s ~ 1e20 and the centre value 1 is the difference of two
1e20 numbers). We therefore use an equivalent closed form that never forms A_c and A_s.
With the ratio rho = E / I and, per region R (centre C: d < r, surround S: d >= r), the
surround Gaussian normalised over the region, p_R(d) = I(d) / sum_R I:

    rho(d) = exp(alpha - beta d^2),  alpha = -2 ln gamma,  beta = (1 - gamma^2) / (2 gamma^2 sigma^2)
    tau(d) = rho(d) - 1 = expm1(alpha - beta d^2)          (> 0 in the centre, < 0 in the surround)
    <tau>_R = sum_R p_R tau,   Delta = <tau>_C - <tau>_S > 0
    K(d) = p_C(d) [ 1 + (1 + sum_C I / sum_S I) (tau(d) - <tau>_C) / Delta]     for d < r
    K(d) = p_S(d) [-1 + (1 + sum_S I / sum_C I) (tau(d) - <tau>_S) / Delta]     for d >= r

(From K = I (A_c rho + A_s): the region sums give A_c <rho>_R + A_s = +1 / sum_C I and
-1 / sum_S I; subtracting, A_c Delta = 1 / sum_C I + 1 / sum_S I.) Each region sums to
+1 / -1 by construction, no two large numbers cancel (Delta subtracts a negative mean from
a positive one; expm1 keeps tau accurate near rho = 1), and p_R is computed relative to the
innermost ring of its region, so nothing underflows. This runs in float32 for float32
output (accurate to ~1e-7 of the kernel scale) and in float64 for float64 output.

Vectorisation: a kernel depends on a pixel only through its distance d, and a k x k window
has few distinct distances ("rings": 10 for 7x7, 6 for 5x5). Everything is computed per ring
as ``[rings, n]`` tensors (ring sums weighted by the number of pixels in each ring) and put
on the ``[n, kh, kw]`` grid at the end; the rings of a size are computed once and cached.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from neural_echos.errors import ConfigError

_Size = int | tuple[int, int]
GAMMA_EPS = 1e-6
# Cap on ln(sum_C I / sum_S I), so that it stays finite. It only binds when the centre is a
# single ring (tiny radius: the surround Gaussian underflows), where the ratio multiplies an
# exact zero; with two or more centre rings (r >= 1) the ratio stays below (pixels) * e^4,
# since sigma >= r / sqrt(2) and the first surround ring lies within r + 1.
_LOG_RATIO_CAP = 60.0
# exp and expm1 get 4-50x slower for arguments below about -70 (float32) or where the result
# underflows; e^-50 ~ 2e-22 is zero for every purpose here (relative to 1 at the innermost ring
# of a region, and to -1 for expm1), so their arguments are clamped there.
_EXP_FLOOR = -50.0


def default_radius(gamma: Tensor, size: _Size) -> Tensor:
    """Default centre radius r = gamma * (k + 1) / 2: the surround then fills the k x k window.

    For a non-square kernel the larger side is used.
    """
    k = max(kernel_pair(size))
    return gamma * (k + 1) / 2


def dog_fits(size: _Size) -> bool:
    """True when a ``size`` window has pixels at two or more distances from its centre, so a DoG
    (a centre and a surround) fits: every size but 1x1, 2x2, 1x2 and 2x1."""
    return len(_ring_distances(*kernel_pair(size))) >= 2


def effective_radius(radius: Tensor, size: _Size) -> Tensor:
    """The centre radius a DoG kernel of ``size`` actually gets: ``radius`` kept inside the window.

    The centre (d < r) must hold at least the innermost ring and the surround (d >= r) at least
    the outermost one. A radius at or inside the innermost ring is widened to halfway between the
    first two rings; one beyond the outermost ring is narrowed to halfway between the last two.
    E.g. 3x3 (rings at d = 0, 1, 1.41): the default r = 2 gamma is narrowed to 1.21 for
    gamma > 0.71, about 29 % of gamma ~ U(0, 1). Other radii are returned unchanged.

    Raises:
        ConfigError: the window has a single ring (2x2), so no radius fits.
    """
    kh, kw = kernel_pair(size)
    ring_d = _two_ring_distances(kh, kw)
    r = torch.as_tensor(radius, dtype=torch.float64)
    r = torch.where(r <= ring_d[0], (ring_d[0] + ring_d[1]) / 2, r)
    return torch.where(r > ring_d[-1], (ring_d[-2] + ring_d[-1]) / 2, r)


def dog_kernels(
    gamma: Tensor | float,
    size: _Size,
    radius: Tensor | float | None = None,
    on_center: Tensor | bool = True,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Return DoG center-surround kernels of shape ``[n, kh, kw]``, one per entry of ``gamma``.

    Args:
        gamma: centre/surround ratios, a scalar or a 1-D tensor of n values, each in (0, 1).
            Values closer than ``GAMMA_EPS`` (1e-6) to 0 or 1 are clamped to that distance
            (towards 1 the kernel has converged; towards 0 it still changes slowly, but
            gamma < 1e-6 has probability 1e-6 under U(0, 1)).
        size: kernel size ``k`` or ``(kh, kw)``.
        radius: centre radius ``r`` in pixels (scalar or n values); ``None`` uses
            :func:`default_radius`. The radius is kept inside the window by
            :func:`effective_radius` (for 3x3 kernels the default radius is narrowed for
            gamma > 0.71).
        on_center: ``True``/``False`` for all kernels, or a boolean tensor of n values;
            off-center kernels are the negatives of on-center ones.
        dtype: dtype of the result (always on the CPU). The maths runs in float64 for float64
            output and in float32 otherwise.

    Raises:
        ConfigError (a ValueError): for gamma outside (0, 1) or not finite, a non-positive
            radius, a kernel too small to have a centre and a surround, or mismatched lengths.
    """
    kh, kw = kernel_pair(size)
    gamma = torch.as_tensor(gamma, dtype=torch.float64).reshape(-1).cpu()
    n = gamma.numel()
    if n == 0:
        return torch.zeros(0, kh, kw, dtype=dtype)
    g_min, g_max = gamma.aminmax()  # NaN propagates and fails both tests below
    if not (float(g_min) > 0 and float(g_max) < 1):
        bad = gamma[~((gamma > 0) & (gamma < 1))][:5].tolist()
        raise ConfigError(f"gamma must lie strictly between 0 and 1; got {bad}")
    gamma = gamma.clamp(GAMMA_EPS, 1 - GAMMA_EPS)

    work = torch.float64 if dtype == torch.float64 else torch.float32
    ring_d2, ring_count, to_pixels = _rings(kh, kw, work)
    _two_ring_distances(kh, kw)  # a window of one ring has no DoG: ConfigError

    if radius is None:
        r = default_radius(gamma, (kh, kw))
    else:
        r = _per_kernel(radius, n, "radius")
        r_min, r_max = r.aminmax()
        if not (float(r_min) > 0 and math.isfinite(float(r_max))):
            raise ConfigError(f"the centre radius must be a positive number of pixels; got {r[:5].tolist()}")
    r = effective_radius(r, (kh, kw))

    # per-kernel scalars [n], in float64: sigma^2 = r^2 (1 - gamma^2) / (4 gamma^2 (-ln gamma))
    log_gamma = torch.log(gamma)
    one_minus_g2 = (1 - gamma) * (1 + gamma)
    sigma2 = (r * r) * one_minus_g2 / (4 * gamma * gamma * -log_gamma)
    half_inv_s2 = 0.5 / sigma2  # 1 / (2 sigma^2)
    alpha = -2 * log_gamma  # ln rho(0) = ln(1 / gamma^2)
    beta = half_inv_s2 * one_minus_g2 / (gamma * gamma)  # rho(d) = exp(alpha - beta d^2)

    # Per-ring quantities are [rings, n] (ring constants are [rings, 1] columns, kernel
    # constants [n] rows): with n along the contiguous axis, broadcasting and the sums over
    # rings are several times faster than in an [n, rings] layout.
    # Centre C: the rings with d < r, a prefix of the sorted rings; the surround S is the rest.
    # The region masks are 0/1 floats (compared in float64): multiplying by them is much
    # faster than torch.where here.
    centre = (r * r - _rings(kh, kw, torch.float64)[0]).clamp_(min=0).sign_().to(work)  # [rings, n]
    surround = 1 - centre
    n_centre = centre.sum(0)  # [n]
    first_surround_d2 = ring_d2[n_centre.long(), 0]  # [n]

    # p_R(d) = I(d) / sum_R I, with I taken relative to the innermost ring of each region
    shift = torch.addcmul(ring_d2[0], surround, first_surround_d2 - ring_d2[0])
    rel_inhibit = torch.exp(((shift - ring_d2) * half_inv_s2.to(work)).clamp_(min=_EXP_FLOOR))  # <= 1
    weighted = rel_inhibit * ring_count
    sum_c = (weighted * centre).sum(0)
    sum_s = (weighted * surround).sum(0)
    p = rel_inhibit * torch.addcmul(surround / sum_s, centre, 1 / sum_c)  # per pixel

    # tau(d) = rho(d) - 1 and its p-weighted region means
    tau = torch.expm1(torch.addcmul(alpha.to(work), ring_d2, -beta.to(work)).clamp_(min=_EXP_FLOOR))
    p_tau = p * tau * ring_count
    mean_c = (p_tau * centre).sum(0)
    mean_s = (p_tau * surround).sum(0)
    delta = mean_c - mean_s

    # ln(sum_C I / sum_S I): undo the per-region shifts of I
    log_ratio = torch.log(sum_c / sum_s).double() + half_inv_s2 * (
        first_surround_d2.double() - float(ring_d2[0])
    )
    ratio = log_ratio.clamp(-_LOG_RATIO_CAP, _LOG_RATIO_CAP).exp().to(work)
    # (1 + sum_C I / sum_S I) / Delta multiplies tau - <tau>_C, which is exactly 0 for a one-ring centre
    gain_c = (1 + ratio) / delta * (n_centre > 1)
    gain_s = (1 + 1 / ratio) / delta
    sign = _polarity(on_center, n, work)  # +1 on-center, -1 off-center: K -> -K
    centre_values = torch.addcmul(sign, sign * gain_c, tau - mean_c)
    surround_values = torch.addcmul(-sign, sign * gain_s, tau - mean_s)
    ring_values = p * torch.addcmul(surround * surround_values, centre, centre_values)  # [rings, n]

    if not bool(torch.isfinite(delta).all()):  # not expected: delta >= <tau>_C > 0
        bad = gamma[~torch.isfinite(delta)][:5].tolist()
        raise ConfigError(f"the DoG system is singular for gamma {bad} at size {kh}x{kw}")
    # Put every ring value on its pixels: a product with the 0/1 [rings, kh * kw] matrix that
    # marks each pixel's ring (exact: one 1 per column), faster than an index gather.
    return (ring_values.T @ to_pixels).to(dtype).view(n, kh, kw)


@functools.lru_cache(maxsize=64)
def _rings(kh: int, kw: int, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """Distinct pixel distances of a kh x kw window (shared by all kernels of that size).

    Returns ``d^2`` and the number of pixels of each ring as ``[rings, 1]`` columns, and the
    0/1 ring-to-pixel matrix ``[rings, kh * kw]``, all in ``dtype``, rings sorted by
    distance. Cached: never modify them.
    """
    ys = torch.arange(kh, dtype=torch.float64) - (kh - 1) / 2
    xs = torch.arange(kw, dtype=torch.float64) - (kw - 1) / 2
    d2 = (ys[:, None] ** 2 + xs[None, :] ** 2).reshape(-1)  # squared distance to the centre (exact)
    ring_d2, ring_of_pixel, count = torch.unique(d2, sorted=True, return_inverse=True, return_counts=True)
    to_pixels = torch.arange(ring_d2.numel())[:, None] == ring_of_pixel[None, :]
    return ring_d2[:, None].to(dtype), count[:, None].to(dtype), to_pixels.to(dtype)


@functools.lru_cache(maxsize=64)
def _ring_distances(kh: int, kw: int) -> tuple[float, ...]:
    """The ring distances d of a kh x kw window, ascending, as Python floats."""
    return tuple(_rings(kh, kw, torch.float64)[0].sqrt().flatten().tolist())


def _two_ring_distances(kh: int, kw: int) -> tuple[float, ...]:
    """:func:`_ring_distances`, or ConfigError when the window has a single ring (no DoG fits)."""
    ring_d = _ring_distances(kh, kw)
    if len(ring_d) < 2:
        raise ConfigError(
            f"a {kh}x{kw} kernel has every pixel at the same distance from its centre, so no "
            "center-surround pattern fits; DoG kernels need a size of at least 3 (or 1x3)"
        )
    return ring_d


def kernel_pair(size: _Size) -> tuple[int, int]:
    """``k`` or ``(kh, kw)`` -> ``(kh, kw)``; ConfigError for anything but positive integers."""
    kh, kw = (size, size) if isinstance(size, int) else tuple(size)
    if not all(isinstance(s, int) and s >= 1 for s in (kh, kw)):
        raise ConfigError(f"kernel size must be positive integers; got {size!r}")
    return int(kh), int(kw)


def _per_kernel(value: Tensor | float, n: int, what: str) -> Tensor:
    value = torch.as_tensor(value, dtype=torch.float64).reshape(-1).cpu()
    if value.numel() == 1:
        return value.expand(n)
    if value.numel() != n:
        raise ConfigError(f"{what} has {value.numel()} values for {n} kernels")
    return value


def _polarity(on_center: Tensor | bool, n: int, dtype: torch.dtype) -> Tensor:
    if isinstance(on_center, bool):
        return torch.full((n,), 1.0 if on_center else -1.0, dtype=dtype)
    on_center = torch.as_tensor(on_center).reshape(-1).cpu()
    if on_center.numel() == 1:
        on_center = on_center.expand(n)
    if on_center.numel() != n:
        raise ConfigError(f"on_center has {on_center.numel()} values for {n} kernels")
    return on_center.bool().to(dtype) * 2 - 1


__all__ = ["GAMMA_EPS", "default_radius", "dog_fits", "dog_kernels", "effective_radius", "kernel_pair"]
