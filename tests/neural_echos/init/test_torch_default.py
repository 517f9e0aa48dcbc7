"""torch_default: PyTorch's nn.Conv2d default (kaiming_uniform, a = sqrt(5)) from the init's generator."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neural_echos.depthwise import find_depthwise_convs
from neural_echos.init import initialize_depthwise
from neural_echos.init.torch_default import TorchDefaultInit


def depthwise(channels: int, size, multiplier: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels * multiplier, size, groups=channels, bias=False))


def test_is_what_nn_conv2d_draws_for_the_same_seed():
    """The weights nn.Conv2d's own reset_parameters draws from the global RNG seeded the same."""
    model = depthwise(16, 7)
    TorchDefaultInit().initialize(model, seed=123)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        reference = nn.Conv2d(
            16, 16, 7, groups=16, bias=False
        )  # reset_parameters: kaiming_uniform_(a=sqrt(5))
    torch.testing.assert_close(model[0].weight, reference.weight, rtol=0, atol=0)


@settings(max_examples=20, deadline=None)
@given(kh=st.integers(1, 11), kw=st.integers(2, 11), multiplier=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_uniform_with_bound_one_over_sqrt_fan_in(kh, kw, multiplier, seed):
    model = depthwise(600, (kh, kw), multiplier)
    summary = TorchDefaultInit().initialize(model, seed=seed)
    weight = model[0].weight
    fan_in = kh * kw  # in_channels / groups = 1
    bound = 1 / math.sqrt(fan_in)
    assert weight.abs().max().item() <= bound * (1 + 1e-6)  # float32 rounding of the bound itself
    # U(-b, b): std b / sqrt(3) = 1 / sqrt(3 k^2); the sample std within 6 standard errors
    # (relative se of a uniform sample's std: sqrt(Var(x^2)) / (2 E[x^2] sqrt(n)) = sqrt(4/5) / (2 sqrt(n)))
    n = weight.numel()
    std = bound / math.sqrt(3)
    assert weight.std(correction=0).item() == pytest.approx(std, rel=6 * math.sqrt(0.8) / (2 * math.sqrt(n)))
    assert summary.layers[0].std_after == pytest.approx(weight.std(correction=0).item(), rel=1e-5)
    assert summary.settings == {"seed": seed, "gain": pytest.approx(1 / math.sqrt(3))}


def test_seeds_reproduce_and_the_global_rng_is_untouched():
    a, b, c = depthwise(32, 5), depthwise(32, 5), depthwise(32, 5)
    state = torch.get_rng_state()
    initialize_depthwise(a, "torch_default", seed=1)
    initialize_depthwise(b, "torch_default", seed=1)
    initialize_depthwise(c, "torch_default", seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[0].weight, c[0].weight)


def test_only_depthwise_layers_change_and_dtype_and_layout_stay():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 8, 5, groups=8).double()
    )
    model = model.to(memory_format=torch.channels_last)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    summary = initialize_depthwise(model, "torch_default", seed=0)
    assert (
        [layer.name for layer in summary.layers]
        == [name for name, _ in find_depthwise_convs(model)]
        == ["1", "2"]
    )
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) == (name not in ("1.weight", "2.weight")), name  # biases kept
    assert model[2].weight.dtype == torch.float64 and model[1].weight.is_contiguous(
        memory_format=torch.channels_last
    )
