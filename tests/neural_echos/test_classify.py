"""Classifying kernels as on-center / off-center / other (k-means and templates).

Tolerances (stated once): with 7x7 kernels, noise of norm 0.3 next to a unit-norm signal,
- templates recover every class share (five-way) within 0.02;
- k-means recovers the three-way shares within 0.03 when "other" is edges and noise, and within
  0.06 when 10 % of the kernels are second-derivative bars/crosses (k-means puts about half of
  them with the DoGs: they correlate up to 0.83 with a DoG).
"""

import json
import time

import numpy as np
import pytest
import timm
import torch
from torch import nn

from neural_echos.classify import (
    CLASSES,
    DETAILED_CLASSES,
    AnalysisError,
    center_surround_score,
    check_settings,
    classify_kernels,
    classify_layers,
    normalise_kernels,
)
from neural_echos.collect import LayerKernels, kernels_from_module
from neural_echos.depthwise import find_depthwise_convs
from neural_echos.dog import dog_kernels
from neural_echos.templates import synthetic_kernels

MIXTURE = {
    "on_center": 400,
    "off_center": 300,
    "first_derivative": 150,
    "second_derivative": 100,
    "noise": 50,
}
EDGES_AND_NOISE = {"on_center": 350, "off_center": 250, "first_derivative": 250, "noise": 150}


def true_shares(counts, detailed=False):
    n = sum(counts.values())
    detail = {
        "on_center": counts.get("on_center", 0) / n,
        "off_center": counts.get("off_center", 0) / n,
        "first_derivative": counts.get("first_derivative", 0) / n,
        "second_derivative": counts.get("second_derivative", 0) / n,
        "other": counts.get("noise", 0) / n,
    }
    if detailed:
        return detail
    on, off = detail["on_center"], detail["off_center"]
    return {"on_center": on, "off_center": off, "other": 1 - on - off}


def assert_shares(found, expected, tolerance):
    assert sum(found.values()) == pytest.approx(1.0)
    for name, share in expected.items():
        assert found[name] == pytest.approx(share, abs=tolerance), (name, found, expected)


@pytest.fixture(scope="module")
def atto():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return timm.create_model("convnext_atto", pretrained=False)


# --- normalisation and scores ------------------------------------------------------------------


def test_normalisation_ignores_scale_keeps_sign_and_zero():
    kernels = torch.randn(4, 5, 5)
    kernels[3] = 0
    unit = normalise_kernels(kernels * torch.tensor([1e-4, 1.0, 1e3, 1.0])[:, None, None])
    assert torch.allclose(unit[:3].norm(dim=1), torch.ones(3))
    assert torch.allclose(unit[0], normalise_kernels(kernels[:1])[0], atol=1e-6)
    assert torch.equal(unit[3], torch.zeros(25))
    assert torch.allclose(normalise_kernels(-kernels[:1]), -normalise_kernels(kernels[:1]))


def test_center_surround_score_sign():
    gamma = torch.linspace(0.2, 0.8, 7)
    on = dog_kernels(gamma, 7)
    assert (center_surround_score(on) > 0.95).all()
    assert (center_surround_score(-on) < -0.95).all()
    assert center_surround_score(torch.zeros(2, 7, 7)).abs().max() == 0
    assert center_surround_score(torch.randn(3, 2, 2)).abs().max() == 0  # no DoG fits 2x2


# --- synthetic ground truth --------------------------------------------------------------------


def test_templates_recover_a_synthetic_mixture():
    kernels, kinds = synthetic_kernels(MIXTURE, size=7, noise=0.3, seed=1)
    report = classify_kernels(kernels, method="template")
    assert report.categories == DETAILED_CLASSES
    assert_shares(report.proportions(detailed=True), true_shares(MIXTURE, detailed=True), 0.02)
    assert_shares(report.proportions(), true_shares(MIXTURE), 0.02)
    found = np.array(DETAILED_CLASSES)[report.layers[0].category]
    expected = np.array([{"noise": "other"}.get(kind, kind) for kind in kinds])
    assert (found == expected).mean() > 0.97
    explained = (MIXTURE["first_derivative"] + MIXTURE["second_derivative"]) / (
        MIXTURE["first_derivative"] + MIXTURE["second_derivative"] + MIXTURE["noise"]
    )
    assert report.other_explained() == pytest.approx(explained, abs=0.03)


def test_dog_only_templates_give_three_way_direct_classifier():
    kernels, _ = synthetic_kernels(EDGES_AND_NOISE, size=7, noise=0.3, seed=2)
    report = classify_kernels(kernels, method="template", families=("dog",))
    assert_shares(report.proportions(), true_shares(EDGES_AND_NOISE), 0.02)
    assert report.other_explained() is None


def test_kmeans_recovers_on_off_and_other():
    kernels, kinds = synthetic_kernels(EDGES_AND_NOISE, size=7, noise=0.3, seed=3)
    report = classify_kernels(kernels, method="kmeans", n_clusters=3)
    assert report.categories == CLASSES
    assert_shares(report.proportions(), true_shares(EDGES_AND_NOISE), 0.03)
    assert [c.category for c in report.centroids] == ["on_center", "other", "off_center"]
    assert [c.index for c in report.centroids] == [0, 1, 2]
    scores = [c.score for c in report.centroids]
    assert scores == sorted(scores, reverse=True)


def test_kmeans_with_second_derivatives_in_the_mix():
    kernels, _ = synthetic_kernels(MIXTURE, size=7, noise=0.3, seed=4)
    report = classify_kernels(kernels, method="kmeans")
    assert_shares(report.proportions(), true_shares(MIXTURE), 0.06)


def test_kmeans_with_more_clusters_names_several_alike():
    kernels, _ = synthetic_kernels(EDGES_AND_NOISE, size=7, noise=0.3, seed=5)
    report = classify_kernels(kernels, method="kmeans", n_clusters=6)
    assert len(report.centroids) == 6
    assert_shares(report.proportions(), true_shares(EDGES_AND_NOISE), 0.04)


@pytest.mark.parametrize("method", ["kmeans", "template"])
def test_names_stable_under_permutation_and_repeatable(method):
    kernels, _ = synthetic_kernels(EDGES_AND_NOISE, size=7, noise=0.3, seed=6)
    permutation = torch.randperm(len(kernels), generator=torch.Generator().manual_seed(1))
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    base = classify_kernels(kernels, method=method)
    again = classify_kernels(kernels, method=method)
    permuted = classify_kernels(kernels[permutation], method=method)
    assert torch.equal(torch.get_rng_state(), torch_state)  # no draw from the global RNGs
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    assert np.array_equal(base.layers[0].category, again.layers[0].category)
    unpermuted = np.empty_like(permuted.layers[0].category)
    unpermuted[permutation.numpy()] = permuted.layers[0].category
    assert (unpermuted == base.layers[0].category).mean() > 0.99
    assert base.proportions() == pytest.approx(permuted.proportions(), abs=0.01)


# --- initialisations ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kmeans", "template"])
def test_fresh_timm_initialisation_is_mostly_other(atto, method):
    report = classify_layers(kernels_from_module(atto), method=method)
    assert report.n_kernels == 1840
    assert report.proportions()["other"] > 0.97


@pytest.mark.parametrize("method", ["kmeans", "template"])
def test_kaiming_initialisation_is_mostly_other(atto, method):
    model = timm.create_model("convnext_atto", pretrained=False)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, conv in find_depthwise_convs(model):
            fan_in = conv.weight[0].numel()  # kaiming normal, fan_in mode: std = sqrt(2 / fan_in)
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * (2 / fan_in) ** 0.5)
    report = classify_layers(kernels_from_module(model), method=method)
    assert report.proportions()["other"] > 0.97


@pytest.mark.parametrize("method", ["kmeans", "template"])
def test_dog_initialisation_is_on_and_off_in_the_given_ratio(method):
    model = timm.create_model("convnext_atto", pretrained=False)
    generator = torch.Generator().manual_seed(0)
    p_on = 0.7
    with torch.no_grad():
        for _, conv in find_depthwise_convs(model):
            n = conv.weight.shape[0]
            gamma = 0.2 + 0.6 * torch.rand(n, generator=generator)
            on = torch.rand(n, generator=generator) < p_on
            conv.weight.copy_(dog_kernels(gamma, 7, on_center=on)[:, None])
    report = classify_layers(kernels_from_module(model), method=method)
    shares = report.proportions()
    assert shares["on_center"] == pytest.approx(p_on, abs=0.03)
    assert shares["off_center"] == pytest.approx(1 - p_on, abs=0.03)
    assert shares["other"] < 0.01


# --- report structure --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["kmeans", "template"])
def test_report_per_layer_per_size_and_json(method):
    big, _ = synthetic_kernels(EDGES_AND_NOISE, size=7, noise=0.3, seed=7)
    small, _ = synthetic_kernels({"on_center": 30, "noise": 30}, size=3, noise=0.1, seed=8)
    layers = [
        LayerKernels("a", "a.weight", big[:500]),
        LayerKernels("b", "b.weight", small),
        LayerKernels("c", "c.weight", big[500:]),
    ]
    report = classify_layers(layers, method=method)
    assert [layer.name for layer in report.layers] == ["a", "b", "c"]
    assert [len(layer) for layer in report.layers] == [500, 60, 500]
    assert set(report.proportions_by_layer()) == {"a", "b", "c"}
    assert set(report.proportions_by_size()) == {"7x7", "3x3"}
    by_layer, by_size = report.proportions_by_layer(), report.proportions_by_size()
    for shares in [report.proportions(), *by_layer.values(), *by_size.values()]:
        assert sum(shares.values()) == pytest.approx(1.0)
    assert {c.kernel_size for c in report.centroids} == {(7, 7), (3, 3)}
    assert sum(c.count for c in report.centroids) == 1060
    summary = json.loads(json.dumps(report.to_dict()))
    assert summary["kernels"] == 1060 and summary["method"] == method
    assert set(summary["by_kernel_size"]) == {"7x7", "3x3"}
    assert len(summary["layers"]) == 3
    if method == "template":
        assert report.layers[0].template[0].startswith(("dog", "d1", "d2", "dxy"))
        assert sum(summary["detailed_proportions"].values()) == pytest.approx(1.0)
    else:
        assert report.layers[0].cluster.max() < 3


@pytest.mark.parametrize("method", ["kmeans", "template"])
def test_edge_cases_fewer_kernels_than_clusters_and_tiny_kernels(method):
    two = classify_kernels(dog_kernels(torch.tensor([0.3, 0.5]), 7), method=method, n_clusters=3)
    assert len(two.layers[0]) == 2 and two.proportions()["on_center"] == 1.0
    tiny = classify_kernels(torch.randn(20, 2, 2), method=method)  # no DoG fits 2x2
    assert tiny.proportions()["on_center"] == tiny.proportions()["off_center"] == 0.0
    zeros = classify_kernels(torch.zeros(10, 5, 5), method=method)
    assert zeros.proportions()["other"] == 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "spectral"}, "unknown method"),
        ({"n_clusters": 1}, "clusters"),
        ({"n_clusters": 2.5}, "clusters"),
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
    ],
)
def test_bad_settings(kwargs, match):
    settings = {"method": "kmeans", "n_clusters": 3, "threshold": 0.5, **kwargs}
    with pytest.raises(AnalysisError, match=match):
        check_settings(**settings)
    with pytest.raises(AnalysisError, match=match):
        classify_kernels(torch.randn(5, 3, 3), **settings)


def test_classification_is_fast_enough_for_a_callback(atto):
    """convnext_atto (1,840 kernels): templates in milliseconds, k-means in tens of milliseconds."""
    layers = kernels_from_module(atto)
    for method, budget in (("template", 0.05), ("kmeans", 0.25)):  # ~5x margin on a busy 2-core CPU
        classify_layers(layers, method=method)  # warm caches
        best = min(_seconds(lambda: classify_layers(layers, method=method)) for _ in range(3))
        assert best < budget, (method, best)


def _seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_works_with_a_non_timm_module():
    model = nn.Sequential(nn.Conv2d(4, 4, 5, groups=4), nn.Conv2d(4, 8, 3, groups=4))
    report = classify_layers(kernels_from_module(model), method="template")
    assert [len(layer) for layer in report.layers] == [4, 8]
