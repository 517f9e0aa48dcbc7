"""The kernel taxonomy: properties of the rule (hypothesis) and kernels whose class is known."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_echos.classifiers import get_classifier
from neural_echos.dog import dog_kernels
from neural_echos.taxonomy import DETAILED_CLASSES, THREE_WAY

ON, OFF = DETAILED_CLASSES.index("on_center"), DETAILED_CLASSES.index("off_center")
SWAP = np.arange(len(DETAILED_CLASSES))
SWAP[[ON, OFF]] = [OFF, ON]  # negating a kernel swaps on and off; every other class stays


def details(kernels, threshold=0.5):
    return get_classifier("template", threshold=threshold).classify_kernels(kernels).layers[0].detail


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), k=st.sampled_from([3, 5, 7]), scale=st.floats(1e-30, 1e30))
def test_scale_never_changes_a_class_and_negation_only_swaps_on_and_off(seed, k, scale):
    g = torch.Generator().manual_seed(seed)
    mix = torch.cat(
        [
            torch.randn(20, k, k, generator=g),
            dog_kernels(
                0.2 + 0.6 * torch.rand(10, generator=g), k, on_center=torch.rand(10, generator=g) < 0.5
            ),
        ]
    )
    base = details(mix)
    assert np.array_equal(details(mix * scale), base)
    assert np.array_equal(details(-mix), SWAP[base])


@settings(max_examples=20, deadline=None)
@given(gamma=st.floats(0.2, 0.8), k=st.sampled_from([3, 5, 7, 9]), on=st.booleans())
def test_a_clean_dog_is_center_surround_of_its_polarity(gamma, k, on):
    assert details(dog_kernels(torch.tensor([gamma]), k, on_center=on))[0] == (ON if on else OFF)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_blobs_deltas_shifts_are_named_and_never_center_surround(k):
    c = k // 2
    ys = torch.arange(k, dtype=torch.float32) - c
    blob = torch.exp(-(ys[:, None] ** 2 + ys[None, :] ** 2) / (2 * (0.35 * k) ** 2))
    delta = torch.zeros(k, k)
    delta[c, c] = 1
    shift = torch.zeros(k, k)
    shift[0, c] = 1
    found = details(torch.stack([blob, -blob, delta, -delta, shift, -shift]))
    names = [DETAILED_CLASSES[d] for d in found]
    assert names == ["blob", "blob", "delta", "delta", "shifted_delta", "shifted_delta"]
    assert (THREE_WAY[found] == 2).all()  # all "other" in the paper's three classes


def test_a_kernel_below_the_threshold_is_other():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(500, 7, 7, generator=g)
    strict = details(noise, threshold=0.95)
    assert (strict == DETAILED_CLASSES.index("other")).all()


def test_nan_or_infinite_kernels_are_refused_naming_the_layer():
    from neural_echos.classifiers import AnalysisError
    from neural_echos.collect import LayerKernels

    bad = torch.randn(4, 5, 5)
    bad[1, 2, 2] = float("nan")
    for method in ("template", "kmeans"):
        with pytest.raises(AnalysisError, match=r"stages\.1 \(1 of 4 kernels\)"):
            get_classifier(method).classify([LayerKernels("stages.1", "stages.1.weight", bad)])


@pytest.mark.parametrize("k, lost_at", [(3, 0.2), (5, 0.3), (7, 0.3)])
def test_a_dc_offset_of_the_centres_sign_removes_the_surround_first(k, lost_at):
    """The documented asymmetry (docs/classification.md, Caveat): a positive DC soon makes an
    on-center DoG one-signed (a delta or a blob), while the off-center DoG keeps its positive
    surround and stays off-center up to a DC of norm 0.8."""
    dog = dog_kernels(torch.tensor([0.5]), k)[0]
    dog = dog / dog.norm()
    for dc in (0.1, 0.2, 0.3, 0.5, 0.8):
        on, off = details(torch.stack([dog + dc / k, -dog + dc / k]))  # a DC of L2 norm dc
        assert off == OFF
        assert (on == ON) == (dc < lost_at) and (on == ON or DETAILED_CLASSES[on] in ("delta", "blob"))
