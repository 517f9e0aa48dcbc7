"""The direct template classifier: DoG and derivative-of-Gaussian families.

Tolerance: with 7x7 kernels, noise of norm 0.3 next to a unit-norm signal, templates recover
every class share (five-way) within 0.02.
"""

import numpy as np
import pytest

from neural_echos.classifiers import TemplateClassifier
from neural_echos.taxonomy import DETAILED_CLASSES
from tests.neural_echos.synthetic import synthetic_kernels

MIXTURE = {
    "on_center": 400,
    "off_center": 300,
    "first_derivative": 150,
    "second_derivative": 100,
    "noise": 50,
}
EDGES_AND_NOISE = {"on_center": 350, "off_center": 250, "first_derivative": 250, "noise": 150}


def detailed_shares(counts):
    n = sum(counts.values())
    return {
        "on_center": counts.get("on_center", 0) / n,
        "off_center": counts.get("off_center", 0) / n,
        "first_derivative": counts.get("first_derivative", 0) / n,
        "second_derivative": counts.get("second_derivative", 0) / n,
        "other": counts.get("noise", 0) / n,
    }


def three_way(counts):
    detail = detailed_shares(counts)
    on, off = detail["on_center"], detail["off_center"]
    return {"on_center": on, "off_center": off, "other": 1 - on - off}


def assert_shares(found, expected, tolerance):
    assert sum(found.values()) == pytest.approx(1.0)
    for name, share in expected.items():
        assert found[name] == pytest.approx(share, abs=tolerance), (name, found, expected)


def test_recovers_a_synthetic_mixture_five_ways():
    kernels, kinds = synthetic_kernels(MIXTURE, size=7, noise=0.3, seed=1)
    report = TemplateClassifier().classify_kernels(kernels)
    assert report.detailed_classes == DETAILED_CLASSES
    assert_shares(report.detailed_proportions(), detailed_shares(MIXTURE), 0.02)
    assert_shares(report.proportions(), three_way(MIXTURE), 0.02)
    found = np.array(DETAILED_CLASSES)[report.layers[0].detail]
    expected = np.array([{"noise": "other"}.get(kind, kind) for kind in kinds])
    assert (found == expected).mean() > 0.97
    assert report.layers[0].columns["template"][0].startswith(("dog", "d1", "d2", "dxy", "diff"))
    explained = (MIXTURE["first_derivative"] + MIXTURE["second_derivative"]) / (
        MIXTURE["first_derivative"] + MIXTURE["second_derivative"] + MIXTURE["noise"]
    )
    assert report.other_explained() == pytest.approx(explained, abs=0.03)


def test_dog_only_templates_give_a_three_way_direct_classifier():
    kernels, _ = synthetic_kernels(EDGES_AND_NOISE, size=7, noise=0.3, seed=2)
    report = TemplateClassifier(families=("dog",)).classify_kernels(kernels)
    assert_shares(report.proportions(), three_way(EDGES_AND_NOISE), 0.02)
    assert report.other_explained() == 0.0  # no derivative template to explain "other"
