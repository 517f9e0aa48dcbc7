"""master_key: each depthwise kernel one of the 8 master key filters (arXiv 2412.16751), resampled off 7x7."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neural_echos.classifiers import get_classifier
from neural_echos.errors import ConfigError
from neural_echos.init import create_init, initialize_depthwise
from neural_echos.init.master_key import MasterKeyInit, resampled_master_keys
from neural_echos.known_kernels import MASTER_KEY_CENTER_SURROUND, master_key_filters
from neural_echos.taxonomy import DETAILED_CLASSES


def depthwise(channels: int, size, multiplier: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels * multiplier, size, groups=channels, bias=False))


def which_filter(kernels: torch.Tensor, bank: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index into bank, sign) of each kernel, by the largest |correlation| with the unit-norm bank."""
    units = kernels.flatten(1) / kernels.flatten(1).norm(dim=1, keepdim=True)
    correlation = units.double() @ bank.flatten(1).double().T
    index = correlation.abs().argmax(1)
    return index, correlation.gather(1, index[:, None])[:, 0].sign()


def test_7x7_kernels_are_the_files_filters_bit_for_bit():
    model = depthwise(400, 7)
    MasterKeyInit(flip_prob=0.3).initialize(model, seed=0)
    kernels = model[0].weight.detach()[:, 0]
    filters = master_key_filters()
    index, sign = which_filter(kernels, filters)
    # unit scale: exactly the file's filters
    assert torch.equal(kernels, filters[index] * sign[:, None, None].float())
    assert set(index.tolist()) == set(range(8))
    assert (sign < 0).float().mean().item() == pytest.approx(0.3, abs=5 * math.sqrt(0.3 * 0.7 / 400))


@settings(max_examples=15, deadline=None)
@given(flip_prob=st.floats(0, 1), seed=st.integers(0, 2**31), scale=st.sampled_from(["kaiming", "match"]))
def test_7x7_is_exact_up_to_one_factor_per_layer(flip_prob, seed, scale):
    model = depthwise(24, 7)
    before = model[0].weight.detach().std(correction=0).item()
    MasterKeyInit(flip_prob=flip_prob, scale=scale).initialize(model, seed=seed)
    kernels = model[0].weight.detach()[:, 0]
    factor = kernels.flatten(1).norm(dim=1)  # the filters have unit norm: the common factor
    torch.testing.assert_close(factor, factor[:1].expand_as(factor), rtol=1e-6, atol=0)
    index, sign = which_filter(kernels, master_key_filters())
    torch.testing.assert_close(
        kernels, master_key_filters()[index] * (sign * factor)[:, None, None].float(), rtol=1e-6, atol=1e-7
    )
    target = math.sqrt(2 / 49) if scale == "kaiming" else before
    assert kernels.double().std(correction=0).item() == pytest.approx(target, rel=1e-4)  # zero-sum: std = rms


@pytest.mark.parametrize("k", [3, 5, 9, 11])
@pytest.mark.parametrize("method", ["template", "kmeans"])
def test_resampled_center_surround_filters_keep_their_class(k, method):
    """Master keys 7 and 8 (on-center) stay on-center resampled to k x k; negated, off-center."""
    filters = resampled_master_keys((k, k)).float()
    center_surround = filters[[i - 1 for i in MASTER_KEY_CENTER_SURROUND]]
    report = get_classifier(method).classify_kernels(torch.cat([center_surround, -center_surround]))
    names = [DETAILED_CLASSES[d] for d in report.layers[0].detail]
    assert names == ["on_center", "on_center", "off_center", "off_center"]


@settings(max_examples=20, deadline=None)
@given(kh=st.integers(2, 13), kw=st.integers(2, 13))
def test_resampled_filters_are_zero_sum_and_unit_norm(kh, kw):
    filters = resampled_master_keys((kh, kw))
    assert filters.shape == (8, kh, kw) and torch.isfinite(filters).all()
    exact = (kh, kw) == (7, 7)  # the file's filters: zero sum and unit norm to their 6 printed digits
    zeros, ones = torch.zeros(8, dtype=torch.float64), torch.ones(8, dtype=torch.float64)
    torch.testing.assert_close(filters.sum((1, 2)), zeros, atol=1e-5 if exact else 1e-12, rtol=0)
    torch.testing.assert_close(filters.flatten(1).norm(dim=1), ones, atol=1e-5 if exact else 1e-12, rtol=0)


def test_resampling_keeps_the_centre_of_odd_windows():
    for k in (5, 9, 11):
        filters = resampled_master_keys((k, k))
        # filter 7 (on-center): its largest entry stays the middle pixel
        assert divmod(int(filters[6].argmax()), k) == (k // 2, k // 2), k


def test_the_filters_option_restricts_the_draw():
    model = depthwise(200, 9)
    MasterKeyInit(filters=[7, 8], flip_prob=0.0).initialize(model, seed=4)
    bank = resampled_master_keys((9, 9))
    index, sign = which_filter(model[0].weight.detach()[:, 0], bank)
    assert set(index.tolist()) == {6, 7} and (sign > 0).all()


def test_seeds_reproduce_and_the_global_rng_is_untouched():
    a, b, c = depthwise(32, 5), depthwise(32, 5), depthwise(32, 5)
    state = torch.get_rng_state()
    for model, seed in ((a, 1), (b, 1), (c, 2)):
        initialize_depthwise(model, "master_key", seed=seed)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[0].weight, c[0].weight)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"filters": []}, "non-empty list of master key filter numbers 1-8"),
        ({"filters": [0, 7]}, "non-empty list of master key filter numbers 1-8"),
        ({"filters": [9]}, "non-empty list of master key filter numbers 1-8"),
        ({"filters": ["a"]}, "non-empty list of master key filter numbers 1-8"),
        ({"filters": [7, 7]}, "lists a master key filter twice"),
        ({"flip_prob": 1.5}, "flip_prob is the probability"),
        ({"scale": "paper"}, "unknown scale 'paper'"),
    ],
)
def test_bad_options_say_what_to_use(options, message):
    with pytest.raises(ConfigError, match=message):
        create_init("master_key", **options)


def test_a_1x1_depthwise_layer_is_refused_before_writing_any():
    # a 1x1 window cannot hold a filter (is_depthwise skips 1x1 convs, so the layer list is built here)
    from neural_echos.init.base import DepthwiseLayer

    good, tiny = nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 4, 1, groups=4)
    before = good.weight.detach().clone()
    layers = [DepthwiseLayer("good", good, 0, 2), DepthwiseLayer("tiny", tiny, 1, 2)]
    with pytest.raises(ConfigError, match="'tiny' has 1x1 kernels"), torch.no_grad():
        MasterKeyInit().init_layers(layers, torch.Generator().manual_seed(0))
    assert torch.equal(good.weight, before)
