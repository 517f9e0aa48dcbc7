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

Everything is computed for n kernels at once with tensor ops (no per-kernel Python loop),
in float64, and cast to the requested dtype at the end.
"""

from __future__ import annotations


import torch
from torch import Tensor

_Size = int | tuple[int, int]
GAMMA_EPS = 1e-6


def default_radius(gamma: Tensor, size: _Size) -> Tensor:
    """Default centre radius r = gamma * (k + 1) / 2: the surround then fills the k x k window.

    For a non-square kernel the larger side is used.
    """
    k = max(_pair(size))
    return gamma * (k + 1) / 2


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
        size: kernel size ``k`` or ``(kh, kw)``.
        radius: centre radius ``r`` in pixels (scalar or n values); ``None`` uses
            :func:`default_radius`. The radius is kept inside the window: where the centre
            would hold no pixel it is widened to the innermost ring, and where the surround
            would hold none it is narrowed to leave the outermost ring (both only happen for
            extreme radii or even sizes with small gamma).
        on_center: ``True``/``False`` for all kernels, or a boolean tensor of n values;
            off-center kernels are the negatives of on-center ones.
        dtype: dtype of the result (the maths runs in float64).

    Raises:
        ValueError: for gamma outside (0, 1) or not finite, a non-positive radius, a kernel
            too small to have a centre and a surround, or mismatched lengths.
    """
    kh, kw = _pair(size)
    gamma = torch.as_tensor(gamma, dtype=torch.float64).reshape(-1)
    n = gamma.numel()
    if n == 0:
        return torch.zeros(0, kh, kw, dtype=dtype)
    if not torch.isfinite(gamma).all() or (gamma <= 0).any() or (gamma >= 1).any():
        bad = gamma[~(torch.isfinite(gamma) & (gamma > 0) & (gamma < 1))][:5].tolist()
        raise ValueError(f"gamma must lie strictly between 0 and 1; got {bad}")
    # Within 1e-6 of 0 or 1 the kernel has converged to its limit (checked in the tests) and
    # nearer values only add round-off to the nearly singular 2x2 system, so they are clamped.
    gamma = gamma.clamp(GAMMA_EPS, 1 - GAMMA_EPS)

    # d^2 from every pixel to the kernel centre ((k - 1) / 2 on each axis)
    ys = torch.arange(kh, dtype=torch.float64) - (kh - 1) / 2
    xs = torch.arange(kw, dtype=torch.float64) - (kw - 1) / 2
    d2 = ys[:, None] ** 2 + xs[None, :] ** 2  # [kh, kw]
    distances = torch.unique(d2.sqrt())  # sorted ascending
    if distances.numel() < 2:
        raise ValueError(
            f"a {kh}x{kw} kernel has every pixel at the same distance from its centre, so no "
            "center-surround pattern fits; DoG kernels need a size of at least 3 (or 1x3)"
        )

    r = default_radius(gamma, (kh, kw)) if radius is None else _per_kernel(radius, n, "radius")
    if not torch.isfinite(r).all() or (r <= 0).any():
        raise ValueError(f"the centre radius must be a positive number of pixels; got {r[:5].tolist()}")
    # keep at least one ring in the centre (d < r) and one in the surround (d >= r)
    innermost = (distances[0] + distances[1]) / 2
    outermost = (distances[-2] + distances[-1]) / 2
    r = torch.where(r <= distances[0], innermost, r)
    r = torch.where(r > distances[-1], outermost, r)

    # sigma = r / (2 gamma) * sqrt((1 - gamma^2) / (-ln gamma))
    sigma = r / (2 * gamma) * torch.sqrt((1 - gamma * gamma) / -torch.log(gamma))
    g2, s2 = (gamma * gamma)[:, None, None], (sigma * sigma)[:, None, None]
    excite = torch.exp(-d2 / (2 * g2 * s2)) / g2  # E(d) = 1/gamma^2 exp(-d^2 / (2 gamma^2 sigma^2))
    inhibit = torch.exp(-d2 / (2 * s2))  # I(d) = exp(-d^2 / (2 sigma^2))

    centre = (d2 < (r * r)[:, None, None]).to(torch.float64)  # E > I  <=>  d < r
    surround = 1 - centre
    # [[sum_c E, sum_c I], [sum_s E, sum_s I]] @ [A_c, A_s] = [1, -1]
    a, b = (excite * centre).sum((1, 2)), (inhibit * centre).sum((1, 2))
    c, e = (excite * surround).sum((1, 2)), (inhibit * surround).sum((1, 2))
    det = a * e - b * c
    amp_centre = (e + b) / det
    amp_surround = -(a + c) / det
    kernels = amp_centre[:, None, None] * excite + amp_surround[:, None, None] * inhibit

    sign = _polarity(on_center, n)
    kernels = kernels * sign[:, None, None]
    if not torch.isfinite(kernels).all():
        bad = gamma[~torch.isfinite(kernels).flatten(1).all(1)][:5].tolist()
        raise ValueError(
            f"the DoG system is singular for gamma {bad} at size {kh}x{kw}; "
            "use a gamma range further from 0 and 1"
        )
    return kernels.to(dtype)


def _pair(size: _Size) -> tuple[int, int]:
    kh, kw = (size, size) if isinstance(size, int) else tuple(size)
    if not all(isinstance(s, int) and s >= 1 for s in (kh, kw)):
        raise ValueError(f"kernel size must be positive integers; got {size!r}")
    return int(kh), int(kw)


def _per_kernel(value: Tensor | float, n: int, what: str) -> Tensor:
    value = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if value.numel() == 1:
        return value.expand(n)
    if value.numel() != n:
        raise ValueError(f"{what} has {value.numel()} values for {n} kernels")
    return value


def _polarity(on_center: Tensor | bool, n: int) -> Tensor:
    if isinstance(on_center, bool):
        return torch.full((n,), 1.0 if on_center else -1.0, dtype=torch.float64)
    on_center = torch.as_tensor(on_center).reshape(-1)
    if on_center.numel() != n:
        raise ValueError(f"on_center has {on_center.numel()} values for {n} kernels")
    return torch.where(on_center.bool(), 1.0, -1.0).to(torch.float64)


__all__ = ["GAMMA_EPS", "default_radius", "dog_kernels"]
