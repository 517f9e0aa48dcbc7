"""impulse: one-hot depthwise kernels after Zheng, Li & Lucey (arXiv 2401.12511), optionally with noise."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neural_echos.errors import ConfigError
from neural_echos.init import create_init, initialize_depthwise
from neural_echos.init.impulse import PAPER_AMPLITUDE, ImpulseInit


def depthwise(channels: int, size, multiplier: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels * multiplier, size, groups=channels, bias=False))


sizes = st.tuples(st.integers(1, 11), st.integers(2, 11))


@settings(max_examples=25, deadline=None)
@given(size=sizes, multiplier=st.integers(1, 3), seed=st.integers(0, 2**31))
def test_paper_form_one_entry_of_sqrt_one_third_per_kernel(size, multiplier, seed):
    model = depthwise(40, size, multiplier)
    summary = ImpulseInit().initialize(model, seed=seed)
    kernels = model[0].weight.detach().flatten(1)
    assert kernels.shape == (40 * multiplier, size[0] * size[1])
    assert ((kernels != 0).sum(1) == 1).all()
    amplitude = torch.full((len(kernels),), PAPER_AMPLITUDE)
    torch.testing.assert_close(kernels.sum(1), amplitude, rtol=0, atol=1e-7)
    # L2 norm sqrt(1/3): the expected norm of PyTorch's default U(-1/sqrt(k^2), 1/sqrt(k^2)) kernel
    assert kernels.norm(dim=1).pow(2).mean().item() == pytest.approx(1 / 3, rel=1e-6)
    assert summary.n_initialized == 40 * multiplier


def test_random_positions_cover_the_window_uniformly():
    model = depthwise(9000, 3)
    ImpulseInit().initialize(model, seed=0)
    counts = torch.bincount(model[0].weight.detach().flatten(1).argmax(1), minlength=9).double()
    # 9,000 draws over 9 cells: 1000 each, binomial sd sqrt(9000 * 1/9 * 8/9) = 29.8; 5 sd
    assert (counts - 1000).abs().max() < 5 * 29.8


@settings(max_examples=25, deadline=None)
@given(k=st.integers(1, 6).map(lambda i: 2 * i + 1), noise=st.floats(0.0, 0.2), seed=st.integers(0, 2**31))
def test_center_with_noise_keeps_the_centre_dominant(k, noise, seed):
    model = depthwise(64, k)
    ImpulseInit(position="center", noise=noise, scale="unit").initialize(model, seed=seed)
    weight = model[0].weight.detach()[:, 0]
    centre = weight[:, k // 2, k // 2]
    others = weight.clone()
    others[:, k // 2, k // 2] = 0
    assert (centre > others.abs().flatten(1).max(1).values).all()
    if noise == 0:
        assert torch.equal(
            weight,
            torch.zeros_like(weight).index_put_(
                (torch.arange(64), torch.tensor(k // 2), torch.tensor(k // 2)), torch.tensor(1.0)
            ),
        )


def test_noise_has_the_documented_size():
    k, noise = 7, 0.1
    model = depthwise(4000, k)
    ImpulseInit(position="center", noise=noise, scale="unit").initialize(model, seed=1)
    weight = model[0].weight.detach()[:, 0].double()
    weight[:, k // 2, k // 2] -= 1.0
    # per-entry std noise / k; 196,000 Gaussian entries: the sample std within 1 %
    assert weight.std().item() == pytest.approx(noise / k, rel=0.01)
    assert weight.flatten(1).norm(dim=1).pow(2).mean().sqrt().item() == pytest.approx(noise, rel=0.01)


@pytest.mark.parametrize("size", [(3, 3), (7, 7), (4, 6)])
def test_kaiming_and_match_scales_set_the_root_mean_square(size):
    model = depthwise(32, size)
    ImpulseInit(scale="kaiming", noise=0.05).initialize(model, seed=0)
    rms = model[0].weight.detach().double().square().mean().sqrt().item()
    assert rms == pytest.approx(math.sqrt(2 / (size[0] * size[1])), rel=1e-6)
    before = model[0].weight.detach().double().square().mean().sqrt().item()
    ImpulseInit(scale="match").initialize(model, seed=3)
    assert model[0].weight.detach().double().square().mean().sqrt().item() == pytest.approx(before, rel=1e-6)


def test_even_centre_is_below_right_of_the_middle():
    model = depthwise(2, (4, 6))
    ImpulseInit(position="center", scale="unit").initialize(model, seed=0)
    assert (model[0].weight.detach()[:, 0, 2, 3] == 1).all()


def test_seeds_reproduce_and_the_global_rng_is_untouched():
    a, b, c = depthwise(32, 5), depthwise(32, 5), depthwise(32, 5)
    state = torch.get_rng_state()
    for model, seed in ((a, 1), (b, 1), (c, 2)):
        initialize_depthwise(model, "impulse", seed=seed, noise=0.1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[0].weight, c[0].weight)


def test_float64_and_channels_last_layers_keep_their_dtype_and_layout():
    model = nn.Sequential(nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 8, 5, groups=8).double())
    model = model.to(memory_format=torch.channels_last)
    initialize_depthwise(model, "impulse", seed=0)
    assert model[1].weight.dtype == torch.float64
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"position": "corner"}, "unknown position 'corner'"),
        ({"scale": "xavier"}, "unknown scale 'xavier'"),
        ({"noise": -0.1}, "noise is the random part's size"),
        ({"noise": float("nan")}, "noise is the random part's size"),
        ({"noise": True}, "noise is the random part's size"),
    ],
)
def test_bad_options_say_what_to_use(options, message):
    with pytest.raises(ConfigError, match=message):
        create_init("impulse", **options)


def test_match_refuses_a_zero_layer_before_writing_any():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4, bias=False), nn.Conv2d(4, 4, 3, groups=4, bias=False))
    nn.init.zeros_(model[1].weight)
    before = model[0].weight.detach().clone()
    with pytest.raises(ConfigError, match="has std 0"):
        ImpulseInit(scale="match").initialize(model, seed=0)
    assert torch.equal(model[0].weight, before)
