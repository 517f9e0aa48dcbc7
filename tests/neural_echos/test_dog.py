"""Tests of the vectorised DoG generator against a slow scalar reference written with ``math``."""

from __future__ import annotations

import math

import mpmath as mp
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_echos.dog import GAMMA_EPS, default_radius, dog_kernels


def reference_kernel(gamma: float, kh: int, kw: int, radius: float | None = None, on: bool = True):
    """One DoG kernel, pixel by pixel, straight from the equations (list of rows of floats).

    The 2x2 system is solved as written (Cramer's rule) with mpmath, with enough digits that
    its cancellations (near gamma = 1, and for tiny radii, where the amplitudes grow like
    1 / I at the first surround ring) cannot hide an error of the fast code.
    Returns the kernel and the centre mask (d < r).
    """
    gamma = min(max(gamma, GAMMA_EPS), 1 - GAMMA_EPS)
    cy, cx = (kh - 1) / 2, (kw - 1) / 2
    dist2 = [[(y - cy) ** 2 + (x - cx) ** 2 for x in range(kw)] for y in range(kh)]  # exact
    rings = sorted({math.sqrt(d2) for row in dist2 for d2 in row})
    r = gamma * (max(kh, kw) + 1) / 2 if radius is None else radius
    if r <= rings[0]:  # the centre must hold a pixel
        r = (rings[0] + rings[1]) / 2
    if r > rings[-1]:  # the surround must hold a pixel
        r = (rings[-2] + rings[-1]) / 2
    sigma2 = r**2 * (1 - gamma**2) / (4 * gamma**2 * -math.log(gamma))
    first_surround = min(d for d in rings if d >= r)
    digits = 40 + math.ceil(first_surround**2 / (2 * sigma2) / math.log(10))  # 1 / I(first surround ring)
    with mp.workdps(digits):
        return _reference_solve(gamma, r, dist2, on)


def _reference_solve(gamma, r, dist2, on):
    kh, kw = len(dist2), len(dist2[0])
    g, rr = mp.mpf(gamma), mp.mpf(r)
    sigma = rr / (2 * g) * mp.sqrt((1 - g**2) / -mp.log(g))
    sum_ce = sum_ci = sum_se = sum_si = mp.mpf(0)
    excite = [[mp.mpf(0)] * kw for _ in range(kh)]
    inhibit = [[mp.mpf(0)] * kw for _ in range(kh)]
    centre = [[dist2[y][x] < r * r for x in range(kw)] for y in range(kh)]  # d < r
    for y in range(kh):
        for x in range(kw):
            d2 = mp.mpf(dist2[y][x])
            excite[y][x] = mp.exp(-d2 / (2 * g**2 * sigma**2)) / g**2  # E(d)
            inhibit[y][x] = mp.exp(-d2 / (2 * sigma**2))  # I(d)
            if centre[y][x]:
                sum_ce, sum_ci = sum_ce + excite[y][x], sum_ci + inhibit[y][x]
            else:
                sum_se, sum_si = sum_se + excite[y][x], sum_si + inhibit[y][x]
    # A_c sum_ce + A_s sum_ci = 1,  A_c sum_se + A_s sum_si = -1  (Cramer's rule)
    det = sum_ce * sum_si - sum_ci * sum_se
    amp_c = (sum_si + sum_ci) / det
    amp_s = -(sum_ce + sum_se) / det
    sign = 1 if on else -1
    kernel = [
        [float(sign * (amp_c * excite[y][x] + amp_s * inhibit[y][x])) for x in range(kw)] for y in range(kh)
    ]
    return kernel, centre


def n_rings(kh: int, kw: int) -> int:
    cy, cx = (kh - 1) / 2, (kw - 1) / 2
    return len({round(math.hypot(y - cy, x - cx), 12) for y in range(kh) for x in range(kw)})


sizes = st.tuples(st.integers(1, 9), st.integers(1, 9)).filter(lambda s: n_rings(*s) >= 2)
gammas = st.floats(1e-3, 1 - 1e-3)
extreme_gammas = st.one_of(st.floats(GAMMA_EPS / 10, 1e-3), st.floats(1 - 1e-3, 1 - GAMMA_EPS / 10))
radii = st.one_of(st.none(), st.floats(0.05, 8.0))


@settings(max_examples=40, deadline=None)
@given(gamma_list=st.lists(gammas, min_size=1, max_size=6), size=sizes, radius=radii, data=st.data())
def test_matches_scalar_reference(gamma_list, size, radius, data):
    kh, kw = size
    on = data.draw(st.lists(st.booleans(), min_size=len(gamma_list), max_size=len(gamma_list)))
    out = dog_kernels(
        torch.tensor(gamma_list, dtype=torch.float64),
        size,
        radius=radius,
        on_center=torch.tensor(on),
        dtype=torch.float64,
    )
    assert out.shape == (len(gamma_list), kh, kw)
    for kernel, gamma, polarity in zip(out, gamma_list, on):
        expected, _ = reference_kernel(gamma, kh, kw, radius, polarity)
        torch.testing.assert_close(kernel, torch.tensor(expected, dtype=torch.float64), rtol=1e-8, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(gamma=st.one_of(gammas, extreme_gammas), size=sizes, radius=radii, on=st.booleans())
def test_centre_and_surround_sums_in_float32(gamma, size, radius, on):
    kh, kw = size
    kernel = dog_kernels(torch.tensor([gamma], dtype=torch.float64), size, radius=radius, on_center=on)[0]
    assert kernel.dtype == torch.float32 and torch.isfinite(kernel).all()
    _, centre = reference_kernel(gamma, kh, kw, radius, on)
    centre = torch.tensor(centre)
    sign = 1.0 if on else -1.0
    k64 = kernel.double()
    assert abs(k64[centre].sum().item() - sign) < 1e-5  # centre entries sum to +1 (on-center)
    assert abs(k64[~centre].sum().item() + sign) < 1e-5  # surround entries sum to -1
    assert abs(k64.sum().item()) < 1e-5  # the kernel sums to 0


@settings(max_examples=40, deadline=None)
@given(gamma=st.one_of(gammas, extreme_gammas), size=sizes, radius=radii)
def test_float32_matches_float64(gamma, size, radius):
    g = torch.tensor([gamma], dtype=torch.float64)
    k32 = dog_kernels(g, size, radius=radius, dtype=torch.float32)
    k64 = dog_kernels(g, size, radius=radius, dtype=torch.float64)
    torch.testing.assert_close(k32.double(), k64, rtol=1e-6, atol=1e-6)


def test_centre_is_where_excitation_wins():
    """E > I exactly for d < r: on-center kernels are largest at the centre pixel."""
    for gamma in (0.1, 0.5, 0.9):
        kernel = dog_kernels(torch.tensor([gamma]), 7, dtype=torch.float64)[0]
        assert kernel[3, 3] == kernel.max()
        assert kernel[3, 3] > 0


def test_off_center_is_negated_on_center():
    g = torch.linspace(0.05, 0.95, 19)
    on = dog_kernels(g, 5, on_center=True)
    off = dog_kernels(g, 5, on_center=False)
    torch.testing.assert_close(off, -on)
    mixed = dog_kernels(g, 5, on_center=torch.arange(19) % 2 == 0)
    torch.testing.assert_close(mixed[0::2], on[0::2])
    torch.testing.assert_close(mixed[1::2], -on[1::2])


@pytest.mark.parametrize("size", [3, 4, 5, 6, 7, 8, (3, 5), (1, 3), (4, 7), (9, 2)])
def test_odd_even_and_non_square_sizes(size):
    g = torch.linspace(0.01, 0.99, 50)
    out = dog_kernels(g, size, dtype=torch.float64)
    kh, kw = (size, size) if isinstance(size, int) else size
    assert out.shape == (50, kh, kw)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.sum((1, 2)), torch.zeros(50, dtype=torch.float64), atol=1e-10, rtol=0)
    # radially symmetric: flipping either axis gives the same kernel
    torch.testing.assert_close(out, out.flip(1))
    torch.testing.assert_close(out, out.flip(2))


def test_scalar_gamma_and_dtypes():
    assert dog_kernels(0.5, 3).shape == (1, 3, 3)
    assert dog_kernels(torch.tensor([0.3, 0.6]), 5, dtype=torch.bfloat16).dtype == torch.bfloat16
    assert dog_kernels(torch.tensor([0.3]), 5, dtype=torch.float64).dtype == torch.float64
    assert dog_kernels(torch.zeros(0), 7).shape == (0, 7, 7)


def test_per_kernel_radius():
    g = torch.tensor([0.5, 0.5])
    out = dog_kernels(g, 7, radius=torch.tensor([1.5, 3.0]), dtype=torch.float64)
    for kernel, r in zip(out, (1.5, 3.0)):
        expected, _ = reference_kernel(0.5, 7, 7, r)
        torch.testing.assert_close(kernel, torch.tensor(expected, dtype=torch.float64))


def test_default_radius():
    assert default_radius(torch.tensor(0.5), 7).item() == 2.0
    assert default_radius(torch.tensor(0.5), (3, 5)).item() == 1.5


def test_limits_are_finite_and_continuous():
    """Within GAMMA_EPS of 0 and 1 gamma is clamped; at and near the clamp kernels stay finite."""
    near = torch.tensor([1e-12, GAMMA_EPS, 1 - GAMMA_EPS, 1 - 1e-12], dtype=torch.float64)
    out = dog_kernels(near, 7, dtype=torch.float64)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[2], out[3])
    # towards gamma -> 1 the kernel converges (the 1 - 1e-4 and 1 - 1e-6 kernels nearly agree)
    toward_one = dog_kernels(torch.tensor([1 - 1e-4, 1 - 1e-6], dtype=torch.float64), 7, dtype=torch.float64)
    torch.testing.assert_close(toward_one[0], toward_one[1], atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": 0.0, "size": 7}, "strictly between 0 and 1"),
        ({"gamma": 1.0, "size": 7}, "strictly between 0 and 1"),
        ({"gamma": -0.2, "size": 7}, "strictly between 0 and 1"),
        ({"gamma": float("nan"), "size": 7}, "strictly between 0 and 1"),
        ({"gamma": 0.5, "size": 7, "radius": -1.0}, "positive number of pixels"),
        ({"gamma": 0.5, "size": 7, "radius": 0.0}, "positive number of pixels"),
        ({"gamma": 0.5, "size": 2}, "same distance"),
        ({"gamma": 0.5, "size": 1}, "same distance"),
        ({"gamma": 0.5, "size": 0}, "positive integers"),
        (
            {"gamma": torch.tensor([0.5, 0.4]), "size": 5, "radius": torch.tensor([1.0, 2.0, 3.0])},
            "3 values for 2",
        ),
        (
            {"gamma": torch.tensor([0.5, 0.4]), "size": 5, "on_center": torch.tensor([True, False, True])},
            "3 values",
        ),
    ],
)
def test_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dog_kernels(**kwargs)


def test_vectorised_equals_one_at_a_time():
    g = torch.rand(64, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.98 + 0.01
    batch = dog_kernels(g, 7, dtype=torch.float64)
    single = torch.cat([dog_kernels(g[i : i + 1], 7, dtype=torch.float64) for i in range(64)])
    torch.testing.assert_close(batch, single, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gamma", [1e-6, 0.1, 0.5, 0.9, 1 - 1e-6])
@pytest.mark.parametrize("radius", [0.05, 0.1, 0.2])
def test_tiny_radius_is_exact(gamma, radius, dtype):
    """A radius below the first ring leaves one centre pixel: +1 there, the surround sums to -1.

    (Solving the 2x2 system directly returns garbage here, e.g. 8.5e21 at the centre for
    radius 0.1 and gamma 0.9: the surround Gaussian is ~1e-20 and the amplitudes cancel.)
    """
    kernel = dog_kernels(torch.tensor([gamma], dtype=torch.float64), 7, radius=radius, dtype=dtype)[
        0
    ].double()
    expected, _ = reference_kernel(gamma, 7, 7, radius)
    torch.testing.assert_close(kernel, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-6)
    assert kernel[3, 3].item() == pytest.approx(1.0, abs=1e-6)
    assert kernel.sum().item() == pytest.approx(0.0, abs=1e-6)


def test_dog_fits_where_the_window_has_two_rings():
    from neural_echos.dog import dog_fits

    assert [dog_fits(size) for size in (1, 2, (1, 2), (2, 1))] == [False] * 4
    assert [dog_fits(size) for size in (3, 4, (1, 3), (3, 5), 11)] == [True] * 5
