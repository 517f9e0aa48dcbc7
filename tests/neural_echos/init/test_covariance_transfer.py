"""covariance_transfer: filters from N(0, Sigma), Sigma the covariance of a checkpoint's depthwise filters."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from neural_echos.errors import ConfigError
from neural_echos.init import initialize_depthwise
from neural_echos.init.covariance_transfer import (
    CovarianceTransferInit,
    depth_bin,
    interpolation_matrix,
    sample_gaussian,
)


def random_covariance(taps: int, seed: int) -> torch.Tensor:
    """A full-rank covariance with strong correlations: A A^T / taps + 0.1 I."""
    a = torch.randn(taps, taps, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / taps + 0.1 * torch.eye(taps, dtype=torch.float64)


def kernels_from(
    cov: torch.Tensor, n: int, size: tuple[int, int], seed: int, scale: float = 1.0
) -> torch.Tensor:
    """n kernels [n, 1, kh, kw] with covariance ``scale^2 cov`` (a stand-in for a trained layer)."""
    return (sample_gaussian(cov, n, torch.Generator().manual_seed(seed)) * scale).reshape(n, 1, *size)


def save(tmp_path, state_dict, name="trained.pt") -> str:
    path = tmp_path / name
    torch.save(state_dict, path)
    return str(path)


def depthwise_model(*layers: tuple[int, tuple[int, int]]) -> nn.Sequential:
    """One depthwise conv per (channels, size), in order (channel changes via 1x1 convs)."""
    modules, previous = [], layers[0][0]
    for channels, size in layers:
        if channels != previous:
            modules.append(nn.Conv2d(previous, channels, 1))
        modules.append(nn.Conv2d(channels, channels, size, groups=channels, bias=False))
        previous = channels
    return nn.Sequential(*modules)


def within_sampling_error(empirical: torch.Tensor, cov: torch.Tensor, n: int, sigmas: float = 6.0) -> bool:
    """Every entry of a zero-mean sample covariance within ``sigmas`` standard errors of the truth:
    se_ij = sqrt((S_ii S_jj + S_ij^2) / n) for Gaussian samples."""
    se = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov.square()) / n).sqrt()
    return bool(((empirical - cov).abs() <= sigmas * se).all())


# --------------------------------------------------------------------------------------------
# Sigma from the checkpoint


def test_same_size_sigma_is_the_checkpoints_empirical_covariance(tmp_path):
    cov = random_covariance(25, seed=0)
    kernels = kernels_from(cov, 300, (5, 5), seed=1)
    path = save(tmp_path, {"blocks.0.dw.weight": kernels, "blocks.0.pw.weight": torch.randn(8, 300, 1, 1)})
    method = CovarianceTransferInit(path, depth_bins=1)
    sigma, source_size, source_bin, n = method.covariance((5, 5), 0.7)
    torch.testing.assert_close(sigma, torch.cov(kernels.reshape(300, 25).double().T), rtol=1e-12, atol=1e-12)
    assert (source_size, source_bin, n) == ((5, 5), 0, 300)


@settings(max_examples=6, deadline=None)
@given(
    k=st.sampled_from([3, 5, 7]), seed=st.integers(0, 2**31), scale=st.sampled_from(["checkpoint", "kaiming"])
)
def test_samples_have_the_covariance_sigma(tmp_path_factory, k, seed, scale):
    """The initialised kernels' sample covariance matches Sigma (rescaled for 'kaiming') within
    sampling error, entry by entry."""
    tmp_path = tmp_path_factory.mktemp("ckpt")
    cov = random_covariance(k * k, seed % 1000)
    path = save(tmp_path, {"dw.weight": kernels_from(cov, 200, (k, k), seed=seed % 997 + 1)})
    method = CovarianceTransferInit(path, depth_bins=1, scale=scale)
    sigma = method.covariance((k, k), 0.0)[0]
    if scale == "kaiming":
        sigma = sigma * (2 / (k * k) / sigma.diagonal().mean())  # mean tap variance 2 / fan_in
    n = 6000
    model = depthwise_model((n, (k, k)))
    summary = method.initialize(model, seed=seed)
    samples = model[0].weight.detach().reshape(n, k * k).double()
    assert within_sampling_error(samples.T @ samples / n, sigma, n)  # zero-mean samples
    assert samples.mean(0).abs().max() <= 6 * sigma.diagonal().max().sqrt() / math.sqrt(n)
    assert summary.method == "covariance_transfer" and summary.settings["scale"] == scale


def test_relative_depth_bins_pool_the_checkpoint_layers(tmp_path):
    """Four source layers, two bins: the early target layer takes layers 0-1, the late one 2-3."""
    cov = random_covariance(9, seed=3)
    source = {
        f"stage.{i}.weight": kernels_from(cov, 50, (3, 3), seed=10 + i, scale=i + 1.0) for i in range(4)
    }
    path = save(tmp_path, source)
    method = CovarianceTransferInit(path, depth_bins=2)
    flat = {i: source[f"stage.{i}.weight"].reshape(50, 9).double() for i in range(4)}
    early, late = torch.cov(torch.cat([flat[0], flat[1]]).T), torch.cov(torch.cat([flat[2], flat[3]]).T)
    torch.testing.assert_close(method.covariance((3, 3), 0.0)[0], early)
    torch.testing.assert_close(method.covariance((3, 3), 0.49)[0], early)
    torch.testing.assert_close(method.covariance((3, 3), 0.5)[0], late)
    torch.testing.assert_close(method.covariance((3, 3), 1.0)[0], late)
    summary = method.initialize(depthwise_model((64, (3, 3)), (64, (3, 3)), (64, (3, 3))), seed=0)
    assert [(layer.source_bin, layer.n_source_kernels) for layer in summary.layers] == [
        (0, 100),
        (1, 100),
        (1, 100),
    ]
    # the later layers were drawn at the larger scale of the later source layers
    assert summary.layers[0].std_after < summary.layers[2].std_after
    assert "source (size, bin, kernels)" in str(summary) and "3x3, 1, 100" in str(summary)


def test_a_size_missing_from_a_bin_takes_the_nearest_bin(tmp_path):
    cov5, cov3 = random_covariance(25, seed=4), random_covariance(9, seed=5)
    path = save(
        tmp_path,
        {
            "a.weight": kernels_from(cov5, 40, (5, 5), seed=1),  # depth 0: bin 0 of 3
            "b.weight": kernels_from(cov3, 40, (3, 3), seed=2),
            "c.weight": kernels_from(cov3, 40, (3, 3), seed=3),
        },
    )  # depth 1: bin 2
    method = CovarianceTransferInit(path, depth_bins=3)
    assert method.covariance((5, 5), 1.0)[1:] == ((5, 5), 0, 40)
    assert method.covariance((3, 3), 0.0)[1:] == ((3, 3), 1, 40)  # b is at depth 0.5: bin 1


def test_name_filter_keeps_the_depth_of_the_layers(tmp_path):
    path = save(
        tmp_path,
        {f"l{i}.weight": kernels_from(random_covariance(9, i), 30, (3, 3), seed=i) for i in range(3)},
    )
    method = CovarianceTransferInit(path, depth_bins=3)
    model = depthwise_model((16, (3, 3)), (16, (3, 3)), (16, (3, 3)))
    summary = method.initialize(model, seed=0, name_filter="^2$")  # the last layer only
    assert [(layer.name, layer.source_bin) for layer in summary.layers] == [("2", 2)]


# --------------------------------------------------------------------------------------------
# other kernel sizes: Sigma resized as a kh x kw x kh x kw tensor


@settings(max_examples=25, deadline=None)
@given(k_in=st.integers(1, 9), k_out=st.integers(1, 9))
def test_interpolation_matrix_is_align_corners_linear(k_in, k_out):
    """R is what F.interpolate(mode='linear', align_corners=True) does to a 1-D signal."""
    signal = torch.randn(k_in, dtype=torch.float64)
    expected = F.interpolate(signal[None, None], size=k_out, mode="linear", align_corners=True)[0, 0]
    if k_out == 1:  # (torch then takes the first tap; ours takes the centre)
        expected = signal[(k_in - 1) // 2 : k_in // 2 + 1].mean(0, keepdim=True)
    torch.testing.assert_close(interpolation_matrix(k_in, k_out) @ signal, expected)
    if k_in == k_out:
        torch.testing.assert_close(interpolation_matrix(k_in, k_out), torch.eye(k_in, dtype=torch.float64))


@settings(max_examples=12, deadline=None)
@given(
    src=st.tuples(st.integers(2, 7), st.integers(2, 7)),
    dst=st.tuples(st.integers(2, 11), st.integers(2, 11)),
    seed=st.integers(0, 1000),
)
def test_resized_sigma_is_the_covariance_of_bilinearly_resized_filters(tmp_path_factory, src, dst, seed):
    """Sigma' = M Sigma M^T equals (up to the kept mean tap variance) the empirical covariance of the
    checkpoint's filters resized with F.interpolate(bilinear, align_corners=True); it is a covariance."""
    tmp_path = tmp_path_factory.mktemp("ckpt")
    taps = src[0] * src[1]
    kernels = kernels_from(random_covariance(taps, seed), 4 * taps, src, seed=seed + 1)
    method = CovarianceTransferInit(save(tmp_path, {"dw.weight": kernels}), depth_bins=1)
    sigma, source_size, _, _ = method.covariance(dst, 0.0)
    assert source_size == src and sigma.shape == (dst[0] * dst[1],) * 2
    resized = F.interpolate(kernels.double(), size=dst, mode="bilinear", align_corners=True).reshape(
        len(kernels), -1
    )
    reference = torch.cov(resized.T)
    source = torch.cov(kernels.reshape(len(kernels), -1).double().T)
    reference = reference * (source.diagonal().mean() / reference.diagonal().mean())
    torch.testing.assert_close(sigma, reference)
    torch.testing.assert_close(sigma, sigma.T)
    assert torch.linalg.eigvalsh(sigma).min() > -1e-9 * sigma.diagonal().max()
    torch.testing.assert_close(sigma.diagonal().mean(), source.diagonal().mean())


def test_other_sizes_take_the_nearest_source_size(tmp_path):
    path = save(
        tmp_path,
        {
            "a.weight": kernels_from(random_covariance(9, 0), 30, (3, 3), seed=1),
            "b.weight": kernels_from(random_covariance(49, 1), 80, (7, 7), seed=2),
        },
    )
    method = CovarianceTransferInit(path, depth_bins=1)
    assert method.covariance((4, 4), 0.0)[1] == (3, 3)
    assert method.covariance((5, 5), 0.0)[1] == (7, 7)  # a tie: the larger
    assert method.covariance((11, 11), 0.0)[1] == (7, 7)
    model = depthwise_model((500, (9, 9)))
    summary = method.initialize(model, seed=0)
    assert summary.layers[0].source_size == (7, 7) and model[0].weight.shape == (500, 1, 9, 9)


# --------------------------------------------------------------------------------------------
# sampling, seeds, scale, errors


def test_sampling_a_singular_covariance(tmp_path):
    """Fewer kernels than taps: Sigma is singular (Cholesky fails); the samples still follow it."""
    kernels = torch.randn(20, 1, 7, 7, generator=torch.Generator().manual_seed(0))
    sigma = CovarianceTransferInit(save(tmp_path, {"dw.weight": kernels}), depth_bins=1).covariance(
        (7, 7), 0.0
    )[0]
    assert int(torch.linalg.matrix_rank(sigma)) == 19  # 20 kernels, mean removed
    assert int(torch.linalg.cholesky_ex(sigma).info) != 0
    n = 20000
    samples = sample_gaussian(sigma, n, torch.Generator().manual_seed(1)).double()
    assert within_sampling_error(samples.T @ samples / n, sigma, n)


def test_seeds_reproduce_and_the_global_rng_is_untouched(tmp_path):
    path = save(tmp_path, {"dw.weight": kernels_from(random_covariance(25, 0), 60, (5, 5), seed=1)})
    models = [depthwise_model((32, (5, 5))) for _ in range(3)]  # (nn.Conv2d draws from the global RNG)
    state = torch.get_rng_state()
    for model, seed in zip(models, (3, 3, 4)):
        initialize_depthwise(model, "covariance_transfer", checkpoint=path, seed=seed)
    assert torch.equal(torch.get_rng_state(), state)
    weights = [model[0].weight for model in models]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_scale_match_keeps_each_layers_std(tmp_path):
    path = save(tmp_path, {"dw.weight": kernels_from(random_covariance(9, 0), 60, (3, 3), seed=1, scale=5.0)})
    model = depthwise_model((4000, (3, 3)))
    before = model[0].weight.std(correction=0).item()
    summary = initialize_depthwise(model, "covariance_transfer", checkpoint=path, scale="match")
    # the mean tap variance is the previous std^2, so the std is within sampling error of it
    assert summary.layers[0].std_after == pytest.approx(before, rel=6 * math.sqrt(2 / 4000) + 0.02)
    zero = depthwise_model((8, (3, 3)))
    nn.init.zeros_(zero[0].weight)
    with pytest.raises(ConfigError, match="scale='match' keeps the layer's previous std"):
        initialize_depthwise(zero, "covariance_transfer", checkpoint=path, scale="match")


def test_summary_and_settings(tmp_path):
    path = save(tmp_path, {"dw.weight": kernels_from(random_covariance(9, 0), 60, (3, 3), seed=1)})
    summary = initialize_depthwise(
        depthwise_model((16, (3, 3))), "covariance_transfer", checkpoint=path, seed=5
    )
    data = summary.to_dict()
    assert (
        data["checkpoint"] == path
        and data["depth_bins"] == 3
        and data["scale"] == "checkpoint"
        and data["seed"] == 5
    )
    assert data["layers"][0]["source_size"] == (3, 3) and data["n_initialized"] == 16
    assert not {"n_on", "gamma_mean"} & set(data)


def test_missing_file_and_checkpoint_without_depthwise_kernels_are_clear_errors(tmp_path):
    with pytest.raises(
        ConfigError, match=r"covariance_transfer init: checkpoint '.*nope.ckpt' does not exist"
    ):
        CovarianceTransferInit(str(tmp_path / "nope.ckpt"))
    plain = save(tmp_path, nn.Linear(4, 3).state_dict(), "linear.pt")
    with pytest.raises(ConfigError, match="covariance_transfer init: .* holds no depthwise kernel"):
        CovarianceTransferInit(plain)
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="covariance_transfer init: "):
        CovarianceTransferInit(str(broken))
    # a (k*k)^2 covariance of 33x33 kernels would be refused by size, before it is built
    huge = save(tmp_path, {"blocks.0.conv_dw.weight": torch.randn(4, 1, 33, 33)}, "huge.pt")
    with pytest.raises(ConfigError, match=r"larger than 31x31 \(e.g. 'blocks.0.conv_dw'\)"):
        CovarianceTransferInit(huge)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"depth_bins": 0}, "depth_bins must be an integer >= 1"),
        ({"depth_bins": 1.5}, "depth_bins must be an integer >= 1"),
        ({"scale": "unit"}, "choose one of checkpoint, kaiming, match"),
    ],
)
def test_bad_options(tmp_path, options, match):
    path = save(tmp_path, {"dw.weight": torch.randn(4, 1, 3, 3)})
    with pytest.raises(ConfigError, match=match):
        CovarianceTransferInit(path, **options)


def test_depth_bin():
    assert [depth_bin(r, 3) for r in (0.0, 0.33, 0.34, 0.66, 0.67, 1.0)] == [0, 0, 1, 1, 2, 2]
    assert depth_bin(1.0, 1) == 0


def test_a_torchscript_checkpoint_is_refused_and_runs_nothing(tmp_path):
    from tests.hostile_files import check_archive_runs_code, torchscript_archive

    archive = torchscript_archive(tmp_path / "model.ckpt", tmp_path / "marker")
    check_archive_runs_code(archive, tmp_path / "marker")
    with pytest.raises(ConfigError, match="covariance_transfer init: checkpoint .* is a TorchScript archive"):
        CovarianceTransferInit(str(archive))
    assert not (tmp_path / "marker").exists()
