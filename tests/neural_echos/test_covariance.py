"""Tests of the Gaussian covariance construction and the filter sampler (neural_echos.covariance)."""

from __future__ import annotations

import math

import pytest
import torch

from neural_echos.covariance import depth_schedule, gaussian_covariance, sample_filters


@pytest.mark.parametrize(("size", "taps"), [(3, 9), (7, 49), ((3, 5), 15), (4, 16)])
def test_shape_symmetry_and_positive_definite(size, taps):
    cov = gaussian_covariance(size, sigma=1.5, tau=2.0, eps=1e-3)
    assert cov.shape == (taps, taps) and cov.dtype == torch.float64
    torch.testing.assert_close(cov, cov.T)
    assert torch.linalg.eigvalsh(cov).min() > 0


def test_entries_follow_the_formula():
    sigma, tau, eps = 1.3, 2.1, 1e-3
    cov = gaussian_covariance(5, sigma, tau, eps)
    taps = [(y - 2, x - 2) for y in range(5) for x in range(5)]  # row-major, centre at 0
    for i, p in enumerate(taps):
        for j, q in enumerate(taps):
            corr = math.exp(-((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2) / (2 * sigma**2))
            v_p = math.exp(-(p[0] ** 2 + p[1] ** 2) / (4 * tau**2))
            v_q = math.exp(-(q[0] ** 2 + q[1] ** 2) / (4 * tau**2))
            expected = v_p * v_q * corr + (eps if i == j else 0.0)
            assert cov[i, j].item() == pytest.approx(expected, rel=1e-12)


def test_without_envelope_is_stationary():
    cov = gaussian_covariance(5, sigma=1.0, tau=None, eps=0.0)
    torch.testing.assert_close(cov.diagonal(), torch.ones(25, dtype=torch.float64))
    # correlation depends only on the offset: taps (0,0)-(0,1) and (2,2)-(2,3) agree
    assert cov[0, 1].item() == pytest.approx(cov[12, 13].item())


def test_empirical_covariance_matches():
    cov = gaussian_covariance(5, sigma=1.2, tau=2.5, eps=1e-3)
    n = 100_000
    filters = sample_filters(cov, n, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert filters.shape == (n, 25)
    empirical = filters.T @ filters / n  # zero-mean
    # sampling error of a covariance entry: sqrt((S_ii S_jj + S_ij^2) / n) <= sqrt(2 / n) max diag
    tolerance = 6 * math.sqrt(2 / n) * cov.diagonal().max().item()
    assert (empirical - cov).abs().max().item() < tolerance
    assert filters.mean(0).abs().max().item() < 6 / math.sqrt(n)


def test_sampling_is_deterministic_by_seed():
    cov = gaussian_covariance(7, sigma=2.0)
    a = sample_filters(cov, 10, torch.Generator().manual_seed(4))
    b = sample_filters(cov, 10, torch.Generator().manual_seed(4))
    c = sample_filters(cov, 10, torch.Generator().manual_seed(5))
    assert a.dtype == torch.float32 and a.shape == (10, 49)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_depth_schedule():
    assert depth_schedule(1.5, 3) == [1.5, 1.5, 1.5]
    assert depth_schedule(None, 2) == [None, None]
    assert depth_schedule((1.0, 3.0), 5) == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert depth_schedule((1.0, 3.0), 1) == [1.0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, "sigma must be a positive number"),
        ({"sigma": 1.0, "tau": -1.0}, "tau must be a positive number"),
        ({"sigma": 1.0, "eps": -0.1}, "eps must be a finite number >= 0"),
        ({"sigma": 1.0, "size": 0}, "positive integers"),
    ],
)
def test_rejects_bad_hyperparameters(kwargs, match):
    kwargs = {"size": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        gaussian_covariance(**kwargs)


def test_singular_covariance_is_reported():
    cov = gaussian_covariance(7, sigma=50.0, eps=0.0)  # numerically rank-deficient
    with pytest.raises(ValueError, match="not positive definite"):
        sample_filters(cov, 3, torch.Generator().manual_seed(0))
