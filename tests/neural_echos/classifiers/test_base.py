"""What both classifiers guarantee: evidence and antagonism, the calibrated threshold, the null
model (chance shares), known-answer kernels, fresh initialisations, the report.

Tolerances: a share measured on n kernels is compared with a rate p within 3 binomial standard
errors, 3 sqrt(p (1 - p) / n) (``binomial_bound``).
"""

import json
import math

import numpy as np
import pytest
import timm
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neural_echos.classifiers import (
    CLASSES,
    CLASSIFIERS,
    AnalysisError,
    KMeansClassifier,
    TemplateClassifier,
    center_surround,
    get_classifier,
    normalise_kernels,
)
from neural_echos.classifiers.base import ANTAGONISM_MIN, MIN_THRESHOLD
from neural_echos.collect import LayerKernels, kernels_from_module
from neural_echos.dog import default_radius, dog_kernels, effective_radius
from tests.neural_echos.synthetic import synthetic_kernels

METHODS = sorted(CLASSIFIERS)
SIZES = [3, 5, 7, 9, 11]


def binomial_bound(p, n):
    return p + 3 * math.sqrt(max(p, 1e-3) * (1 - p) / n)


def on_off(shares):
    return shares["on_center"] + shares["off_center"]


def unit(kernels):
    return kernels / kernels.flatten(1).norm(dim=1)[:, None, None]


def dogs_plus_noise(k, n, energy, seed):
    """n unit-norm DoGs (gamma ~ U(0.01, 0.99), on/off at random) plus noise of ``energy`` x theirs."""
    g = torch.Generator().manual_seed(seed)
    gamma = 0.01 + 0.98 * torch.rand(n, generator=g)
    on = torch.rand(n, generator=g) < 0.5
    dogs = unit(dog_kernels(gamma, k, on_center=on))
    return dogs + unit(torch.randn(n, k, k, generator=g)) * energy**0.5


def blob(k, sigma):
    ys = torch.arange(k, dtype=torch.float32) - (k - 1) / 2
    return torch.exp(-(ys[:, None] ** 2 + ys[None, :] ** 2) / (2 * sigma**2))


# --- normalisation and evidence ---------------------------------------------------------------


def test_normalisation_ignores_scale_keeps_sign_and_zero():
    kernels = torch.randn(4, 5, 5)
    kernels[3] = 0
    unit_rows = normalise_kernels(kernels * torch.tensor([1e-4, 1.0, 1e3, 1.0])[:, None, None])
    assert torch.allclose(unit_rows[:3].norm(dim=1), torch.ones(3))
    assert torch.allclose(unit_rows[0], normalise_kernels(kernels[:1])[0], atol=1e-6)
    assert torch.equal(unit_rows[3], torch.zeros(25))
    assert torch.allclose(normalise_kernels(-kernels[:1]), -normalise_kernels(kernels[:1]))


def test_center_surround_score_sign_and_antagonism_of_dogs():
    gamma = torch.linspace(0.2, 0.8, 7)
    on = center_surround(dog_kernels(gamma, 7))
    off = center_surround(-dog_kernels(gamma, 7))
    assert (on.score > 0.95).all() and (off.score < -0.95).all()
    assert (on.antagonism > 0.8).all() and (off.antagonism > 0.8).all()
    zero = center_surround(torch.zeros(2, 7, 7))
    assert zero.score.abs().max() == 0 and (zero.antagonism == 0).all()
    assert center_surround(torch.randn(3, 2, 2)).score.abs().max() == 0  # no DoG fits 2x2


@pytest.mark.parametrize("k", SIZES)
@pytest.mark.parametrize("method", METHODS)
def test_blobs_points_and_constants_are_other(method, k):
    """One-signed kernels have no antagonistic surround: blur kernels are not center-surround,
    though a 7x7 blob of sigma 1 correlates 0.86 with a DoG."""
    sigmas = torch.linspace(0.3, 3.0, 10) * k / 7
    point = torch.zeros(k, k)
    point[k // 2, k // 2] = 1
    kernels = torch.stack([*(blob(k, float(s)) for s in sigmas), point, torch.ones(k, k)])
    kernels = torch.cat([kernels, -kernels])  # dark blobs too
    assert center_surround(blob(7, 1.0)[None]).score.item() > 0.8  # the trap
    report = get_classifier(method).classify_kernels(kernels)
    assert report.proportions()["other"] == 1.0


@pytest.mark.parametrize("k", [3, 5, 7, 9])
@pytest.mark.parametrize("gamma", [0.3, 0.5, 0.7])
def test_dc_offset_bound(k, gamma):
    """Documented bound: a DoG shifted by half the mean |value| of its surround (against the
    surround's sign) stays center-surround; shifted by the whole of it (a surround averaging
    zero) it is not. Antagonism falls about linearly, ~1 - offset / surround magnitude."""
    dog = dog_kernels(torch.tensor([gamma]), k)[0]
    ys = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    distance = (ys[:, None] ** 2 + ys[None, :] ** 2).sqrt()
    radius = effective_radius(default_radius(torch.tensor([gamma], dtype=torch.float64), k), k)
    surround = dog[distance >= float(radius)].abs().mean()
    for sign in (1, -1):  # on-center shifted up, off-center shifted down
        half = center_surround((sign * (dog + 0.5 * surround))[None])
        whole = center_surround((sign * (dog + 1.0 * surround))[None])
        assert half.antagonism.item() >= ANTAGONISM_MIN and abs(half.score.item()) > 0.9
        assert whole.antagonism.item() < ANTAGONISM_MIN
        assert sign * half.score.item() > 0


# --- calibration ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_auto_threshold_is_per_size_deterministic_and_reported(method):
    classifier = get_classifier(method)
    thresholds = {k: classifier.threshold_for((k, k)) for k in SIZES}
    assert all(MIN_THRESHOLD <= t < 1 for t in thresholds.values())
    assert thresholds[3] >= thresholds[7]  # 9 dimensions: chance matches are the most common
    assert get_classifier(method).threshold_for((3, 3)) == thresholds[3]
    layers = [LayerKernels("a", "a", torch.randn(50, 3, 3)), LayerKernels("b", "b", torch.randn(50, 7, 7))]
    report = classifier.classify(layers)
    assert report.thresholds == {"3x3": thresholds[3], "7x7": thresholds[7]}
    fixed = get_classifier(method, threshold=0.7).classify(layers)
    assert fixed.thresholds == {"3x3": 0.7, "7x7": 0.7}


@settings(max_examples=6, deadline=None)
@given(alpha=st.floats(0.01, 0.3), method=st.sampled_from(METHODS), k=st.sampled_from([3, 5]))
def test_lower_alpha_never_lowers_the_threshold(alpha, method, k):
    loose = get_classifier(method, alpha=alpha, min_threshold=0.05).threshold_for((k, k))
    strict = get_classifier(method, alpha=alpha / 2, min_threshold=0.05).threshold_for((k, k))
    assert strict >= loose


@pytest.mark.parametrize("k", SIZES)
@pytest.mark.parametrize("method", METHODS)
def test_gaussian_kernels_are_on_off_at_most_alpha(method, k):
    """i.i.d. Gaussian kernels (a fresh draw, not the calibration sample) at the default threshold."""
    n = 2000
    kernels = torch.randn(n, k, k, generator=torch.Generator().manual_seed(100 + k))
    report = get_classifier(method).classify_kernels(kernels)
    assert on_off(report.proportions()) <= binomial_bound(0.05, n)
    assert on_off(report.chance()) <= binomial_bound(0.05, n)


# --- known answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [5, 7, 9, 11])
def test_dogs_with_noise_of_equal_energy_are_found_by_a_dog_only_bank(k):
    direct = get_classifier("template", families=("dog",)).classify_kernels(
        dogs_plus_noise(k, 1500, 1.0, seed=k)
    )
    assert on_off(direct.proportions()) >= 0.9


def test_dogs_with_noise_at_3x3_where_the_threshold_is_higher():
    kernels = dogs_plus_noise(3, 1500, 0.5, seed=3)
    direct = get_classifier("template", families=("dog",)).classify_kernels(kernels)
    assert on_off(direct.proportions()) >= 0.9


# With the whole taxonomy competing, a DoG drowned in noise of its own energy (SNR 1) often fits a
# bar, a difference or a delta better (a bar correlates up to 0.83 with a DoG; a gamma -> 0 DoG is
# nearly a delta). Measured (scripts/classifier_calibration.py, 2-core CI machine, 2026-12-04):
# 70 % (5x5), 88 % (7x7), 95 % (9x9), 96 % (11x11) with equal-energy noise, 42 % at 3x3 with half
# the energy. That is the price of
# telling bars apart; at the noise of the known-answer populations (tests/neural_echos/
# test_known_kernels.py) recovery is within 2 points. The bounds sit ~5 points under the measures.
@pytest.mark.parametrize("k, bound", [(5, 0.6), (7, 0.8), (9, 0.8), (11, 0.8)])
@pytest.mark.parametrize("method", METHODS)
def test_noisy_dogs_against_the_whole_taxonomy(method, k, bound):
    report = get_classifier(method).classify_kernels(dogs_plus_noise(k, 1500, 1.0, seed=k))
    assert on_off(report.proportions()) >= bound
    assert on_off(report.chance()) <= 0.1


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("method", METHODS)
def test_pixel_permuted_dogs_are_at_chance(method, k):
    n = 1500
    g = torch.Generator().manual_seed(k)
    dogs = dog_kernels(0.05 + 0.9 * torch.rand(n, generator=g), k, on_center=torch.rand(n, generator=g) < 0.5)
    order = torch.rand(n, k * k, generator=g).argsort(dim=1)
    permuted = dogs.flatten(1).gather(1, order).reshape(n, k, k)
    report = get_classifier(method).classify_kernels(permuted)
    observed, chance = on_off(report.proportions()), on_off(report.chance())
    assert abs(observed - chance) <= 3 * math.sqrt(2 * max(chance, 0.01) * (1 - chance) / n)
    clean = get_classifier(method).classify_kernels(dogs)
    assert on_off(clean.proportions()) > 0.99 and on_off(clean.chance()) < 0.5


@pytest.mark.parametrize("method", METHODS)
def test_dog_initialisation_is_on_and_off_in_the_given_ratio(method):
    model = timm.create_model("convnext_atto", pretrained=False)
    generator = torch.Generator().manual_seed(0)
    p_on = 0.7
    with torch.no_grad():
        for _, conv in find_depthwise(model):
            n = conv.weight.shape[0]
            gamma = torch.rand(n, generator=generator).clamp(0.01, 0.99)  # the paper's U(0, 1)
            on = torch.rand(n, generator=generator) < p_on
            conv.weight.copy_(dog_kernels(gamma, 7, on_center=on)[:, None])
    report = get_classifier(method).classify(kernels_from_module(model))
    shares = report.proportions()
    assert shares["on_center"] == pytest.approx(p_on, abs=0.03)
    assert shares["off_center"] == pytest.approx(1 - p_on, abs=0.03)
    assert shares["other"] < 0.01
    assert on_off(report.excess()) > 0.9


def find_depthwise(model):
    from neural_echos.depthwise import find_depthwise_convs

    return find_depthwise_convs(model)


@pytest.mark.parametrize("model_name", ["mobilenetv2_100", "efficientnet_b0", "convnext_tiny"])
@pytest.mark.parametrize("method", METHODS)
def test_fresh_timm_initialisations_are_at_chance(method, model_name):
    """Random kernels are not center-surround: on+off <= 0.10 for 3x3, <= 0.05 for 5x5 and larger,
    at every kernel size of the model (the k-means defect this replaces read 33 % / 33 %)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model(model_name, pretrained=False)
    report = get_classifier(method).classify(kernels_from_module(model))
    for size, layers in report.layers_by_size().items():
        bound = 0.10 if size == "3x3" else 0.05
        assert on_off(report.proportions(layers)) <= bound, (size, report.proportions(layers))


# --- the report -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_report_per_layer_per_size_with_chance_and_json(method):
    big, _ = synthetic_kernels(
        {"on_center": 350, "off_center": 250, "first_derivative": 250, "noise": 150},
        size=7,
        noise=0.3,
        seed=7,
    )
    small, _ = synthetic_kernels({"on_center": 30, "noise": 30}, size=3, noise=0.1, seed=8)
    layers = [
        LayerKernels("a", "a.weight", big[:500]),
        LayerKernels("b", "b.weight", small),
        LayerKernels("c", "c.weight", big[500:]),
    ]
    report = get_classifier(method).classify(layers)
    assert [layer.name for layer in report.layers] == ["a", "b", "c"]
    assert [len(layer) for layer in report.layers] == [500, 60, 500]
    assert all(len(layer.null_label) == len(layer) for layer in report.layers)
    for shares in [report.proportions(), report.chance(), *(report.proportions([x]) for x in report.layers)]:
        assert sum(shares.values()) == pytest.approx(1.0)
    excess = report.excess()
    assert excess["on_center"] == pytest.approx(
        report.proportions()["on_center"] - report.chance()["on_center"]
    )
    assert {c.kernel_size for c in report.centroids} == {(7, 7), (3, 3)}
    assert sum(c.count for c in report.centroids) == 1060
    summary = json.loads(json.dumps(report.to_dict()))
    assert summary["kernels"] == 1060 and summary["method"] == method
    assert set(summary["by_kernel_size"]) == {"7x7", "3x3"}
    for entry in [summary, *summary["by_kernel_size"].values(), *summary["layers"]]:
        assert set(entry["chance"]) == set(CLASSES) and set(entry["excess"]) == set(CLASSES)
    assert summary["by_kernel_size"]["3x3"]["threshold"] == summary["thresholds"]["3x3"]
    assert len(summary["layers"]) == 3


@pytest.mark.parametrize("null_model", ["permute", "gaussian"])
@pytest.mark.parametrize("method", METHODS)
def test_null_models_are_seeded_and_leave_global_rng_alone(method, null_model):
    kernels = dog_kernels(torch.rand(300, generator=torch.Generator().manual_seed(1)).clamp(0.05, 0.95), 3)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    a = get_classifier(method, null_model=null_model, null_seed=4).classify_kernels(kernels)
    b = get_classifier(method, null_model=null_model, null_seed=4).classify_kernels(kernels)
    c = get_classifier(method, null_model=null_model, null_seed=5).classify_kernels(kernels)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    assert np.array_equal(a.layers[0].null_label, b.layers[0].null_label)
    assert np.array_equal(a.layers[0].label, c.layers[0].label)  # the kernels' own labels do not change
    classifier = get_classifier(method, null_model=null_model)
    first = classifier.null_kernels(kernels, torch.Generator().manual_seed(4))
    assert torch.equal(first, classifier.null_kernels(kernels, torch.Generator().manual_seed(4)))
    assert not torch.equal(first, classifier.null_kernels(kernels, torch.Generator().manual_seed(5)))
    if null_model == "permute":  # the same values in another order
        assert torch.equal(first.flatten(1).sort(1).values, kernels.flatten(1).sort(1).values)


@pytest.mark.parametrize("method", METHODS)
def test_edge_cases_fewer_kernels_than_clusters_and_tiny_kernels(method):
    classifier = get_classifier(method)
    two = classifier.classify_kernels(dog_kernels(torch.tensor([0.3, 0.5]), 7))
    assert len(two.layers[0]) == 2 and two.proportions()["on_center"] == 1.0
    tiny = classifier.classify_kernels(torch.randn(20, 2, 2))  # no DoG fits 2x2
    assert tiny.proportions()["on_center"] == tiny.proportions()["off_center"] == 0.0
    zeros = classifier.classify_kernels(torch.zeros(10, 5, 5))
    assert zeros.proportions()["other"] == 1.0
    empty = classifier.classify([])
    assert empty.n_kernels == 0 and empty.proportions() == {name: 0.0 for name in CLASSES}


@pytest.mark.parametrize(
    "method, kwargs, match",
    [
        ("spectral", {}, "unknown method"),
        ("kmeans", {"n_clusters": 1}, "clusters"),
        ("kmeans", {"n_clusters": 2.5}, "clusters"),
        ("kmeans", {"threshold": 0.0}, "threshold"),
        ("template", {"threshold": 1.0}, "threshold"),
        ("kmeans", {"threshold": float("nan")}, "threshold"),
        ("kmeans", {"threshold": "calibrated"}, "threshold"),
        ("kmeans", {"alpha": 0}, "alpha"),
        ("template", {"min_threshold": 1.5}, "min_threshold"),
        ("kmeans", {"null_model": "shuffle"}, "null model"),
        ("template", {"n_clusters": 3}, "does not take"),
        ("template", {"families": ("gabor",)}, "families"),
    ],
)
def test_bad_settings(method, kwargs, match):
    with pytest.raises(AnalysisError, match=match):
        get_classifier(method, **kwargs)


def test_classes_are_registered_and_usable_directly():
    assert CLASSIFIERS == {"kmeans": KMeansClassifier, "template": TemplateClassifier}
    assert "threshold='auto'" in repr(KMeansClassifier())


def test_works_with_a_non_timm_module():
    model = nn.Sequential(nn.Conv2d(4, 4, 5, groups=4), nn.Conv2d(4, 8, 3, groups=4))
    report = get_classifier("template").classify(kernels_from_module(model))
    assert [len(layer) for layer in report.layers] == [4, 8]
