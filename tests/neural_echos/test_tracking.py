"""Property tests of the tracking maths: transitions, drift, the population signal and its null."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_echos.classifiers import TemplateClassifier
from neural_echos.dog import dog_kernels
from neural_echos.taxonomy import DETAILED_CLASSES
from neural_echos.tracking import (
    cosine_distance,
    drift,
    population_signal,
    row_shares,
    transition_matrix,
    transition_summary,
)

N_CLASSES = len(DETAILED_CLASSES)
classes = st.lists(st.integers(0, N_CLASSES - 1), min_size=0, max_size=200)


@given(st.data())
def test_rows_sum_to_the_counts_before_and_columns_to_the_counts_after(data):
    before = np.array(data.draw(classes), dtype=np.int64)
    after = np.array(
        data.draw(st.lists(st.integers(0, N_CLASSES - 1), min_size=len(before), max_size=len(before)))
    )
    matrix = transition_matrix(before, after)
    assert matrix.shape == (N_CLASSES, N_CLASSES)
    assert (matrix.sum(axis=1) == np.bincount(before, minlength=N_CLASSES)).all()
    assert (matrix.sum(axis=0) == np.bincount(after.astype(np.int64), minlength=N_CLASSES)).all()
    summary = transition_summary(matrix)
    assert summary.kernels == len(before)
    for name, share in summary.as_dict().items():
        assert 0.0 <= share <= 1.0 + 1e-12, name
    shares = row_shares(matrix)
    nonempty = matrix.sum(axis=1) > 0
    assert np.allclose(shares[nonempty].sum(axis=1), 1.0) and (shares[~nonempty] == 0).all()


@given(classes.filter(len))
def test_identical_snapshots_give_a_diagonal_matrix_and_retain_everything(labels):
    labels = np.array(labels)
    matrix = transition_matrix(labels, labels)
    assert (matrix == np.diag(np.diag(matrix))).all()
    summary = transition_summary(matrix)
    assert summary.retained == 1.0 and summary.gained == 0.0 and summary.lost == 0.0


def test_gained_and_lost_count_center_surround_crossings_with_their_independence_chance():
    on, off, blob, other = (DETAILED_CLASSES.index(n) for n in ("on_center", "off_center", "blob", "other"))
    before = np.array([other, other, blob, on, off, on])
    after = np.array([on, other, off, blob, off, off])
    summary = transition_summary(transition_matrix(before, after))
    assert summary.retained == pytest.approx(2 / 6)  # other->other, off->off
    assert summary.gained == pytest.approx(2 / 6)  # other->on, blob->off
    assert summary.lost == pytest.approx(1 / 6)  # on->blob (on->off stays center-surround)
    assert summary.gained_chance == pytest.approx((4 / 6) * (1 - 3 / 6))
    assert summary.lost_chance == pytest.approx((3 / 6) * (1 - 4 / 6))


def test_mismatched_kernel_counts_are_refused():
    with pytest.raises(ValueError, match="same kernels"):
        transition_matrix(np.zeros(3, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="same kernels"):
        drift(torch.zeros(3, 7, 7), torch.zeros(4, 7, 7))


kernel_stacks = st.integers(0, 2**31 - 1).map(
    lambda seed: torch.randn(16, 5, 5, generator=torch.Generator().manual_seed(seed))
)


@given(kernel_stacks)
def test_unchanged_kernels_have_no_drift(kernels):
    moved = drift(kernels, kernels.clone())
    assert moved.cosine_distance == pytest.approx(0.0, abs=1e-6)
    assert moved.norm_change == pytest.approx(0.0, abs=1e-12) and moved.relative_distance == 0.0


@given(kernel_stacks, st.floats(1e-3, 1e3))
def test_cosine_distance_ignores_scale_and_sees_a_sign_flip(kernels, scale):
    assert torch.allclose(cosine_distance(kernels * scale, kernels), torch.zeros(16), atol=1e-5)
    assert torch.allclose(cosine_distance(-kernels, kernels), torch.full((16,), 2.0), atol=1e-5)
    moved = drift(kernels * scale, kernels)
    # float32 kernels: the scaled copy is exact to ~1e-7 of its size
    assert moved.norm_change == pytest.approx(scale - 1, abs=1e-6 * max(1.0, scale))
    assert moved.relative_distance == pytest.approx(abs(scale - 1), abs=1e-6 * max(1.0, scale))


def test_zero_kernels_have_a_defined_distance():
    zero, ones = torch.zeros(2, 3, 3), torch.ones(2, 3, 3)
    assert cosine_distance(zero, zero).tolist() == [0.0, 0.0]
    assert cosine_distance(ones, zero).tolist() == [1.0, 1.0]
    assert drift(zero, zero).norm_change == 0.0 and drift(ones, zero).norm_change == float("inf")


def _noise(n: int, seed: int, size: int = 7) -> torch.Tensor:
    return torch.randn(n, size, size, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_the_population_signal_of_pure_noise_sits_at_its_null(seed):
    signal = population_signal(_noise(600, seed), draws=8, seed=seed + 1)
    for name, statistic in signal.items():
        assert abs(statistic.z) < 5, (name, statistic)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([True, False]))
def test_a_planted_shared_dog_component_stands_out_before_single_kernels_pass(seed, on_center):
    """600 noise kernels plus a weak shared DoG (0.3 of the noise in norm):
    few kernels pass the classifier on their own, the population statistics are far above their null."""
    noise = _noise(600, seed)
    dog = dog_kernels(0.5, (7, 7), on_center=on_center)[0]
    dog = dog / dog.norm() * 7 * 0.3  # ||dog|| = 0.3 ||noise|| of a kernel on average (noise: ~7)
    kernels = noise + dog
    report = TemplateClassifier().classify_kernels(kernels)
    shares = report.proportions()
    assert (
        shares["on_center" if on_center else "off_center"] < 0.15
    )  # few kernels pass alone (4.5 % at seed 1)
    signal = population_signal(kernels, draws=8, seed=seed + 1)
    assert signal["dog_energy"].z > 5
    assert signal["mean_score"].z * (1 if on_center else -1) > 5


def test_population_signal_leaves_the_global_generator_alone_and_needs_two_draws():
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    population_signal(_noise(50, 0), draws=3)
    assert torch.rand(1) == expected
    with pytest.raises(ValueError, match="2 null draws"):
        population_signal(_noise(50, 0), draws=1)
