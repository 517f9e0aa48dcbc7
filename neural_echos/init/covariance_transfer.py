"""``covariance_transfer``: filters drawn from N(0, Sigma), Sigma the covariance of a trained model's.

After Trockman, Willmott & Kolter, "Understanding the Covariance Structure of Convolutional
Filters" (ICLR 2023), as their abstract and introduction describe it: each depthwise filter is
sampled from a multivariate Gaussian whose covariance is that of a trained model's filters,
transferred to models of other widths, depths and kernel sizes. Their exact construction (method
section, appendix) could not be read from here, so the choices below are ours:

- Sigma is the empirical covariance (mean removed, n - 1) of the taps of the checkpoint's
  depthwise kernels (any ``[C, 1, kh, kw]`` tensor, :func:`neural_echos.collect.kernels_from_checkpoint`),
  pooled per kernel size and relative-depth bin: a layer at position i of L depthwise layers has
  relative depth i / (L - 1), and ``depth_bins`` equal bins split [0, 1]. A layer of the model
  being initialised takes Sigma of its own bin; when the checkpoint has no kernel of that size in
  that bin, of the nearest bin that has one (the earlier on a tie). Samples are zero-mean: the
  filters' mean is not transferred.
- Other kernel sizes: Sigma, read as a kh x kw x kh x kw tensor, is resized along each of its
  four axes by linear interpolation with the outermost and centre taps aligned
  (``align_corners=True``; the 1-D interpolation matrix R maps k_in taps to k_out taps). That is
  Sigma' = M Sigma M^T with M = R_h (x) R_w, the covariance of the source filters resized
  bilinearly, so Sigma' is a covariance (symmetric, positive semi-definite) by construction.
  Interpolation lowers the variance of taps between source taps, so Sigma' is rescaled to the
  source's mean tap variance. The source size is the checkpoint's nearest one
  (|kh - kh'| + |kw - kw'|, the larger on a tie).
- ``scale``: ``checkpoint`` keeps Sigma's scale (the trained filters' magnitude); ``kaiming``
  and ``match`` rescale it to a mean tap variance of 2 / fan_in or the layer's previous std^2.
- Sampling: w = z (V sqrt(Lambda))^T with Sigma = V Lambda V^T (``eigh``), z ~ N(0, I), exact for
  a positive semi-definite Sigma (the empirical covariance of fewer kernels than taps is singular,
  which a Cholesky factorisation refuses); eigenvalues below 0 from rounding are set to 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from neural_echos.budget import MAX_KERNEL_SIDE
from neural_echos.collect import kernels_from_checkpoint
from neural_echos.errors import ConfigError, NeuralEchosError
from neural_echos.init.base import (
    DepthwiseLayer,
    InitMethod,
    LayerInit,
    check_choice,
    kaiming_std,
    layer_stds,
    match_std,
    write_kernels,
)

Size = tuple[int, int]


@dataclass(kw_only=True)
class CovarianceTransferLayerInit(LayerInit):
    """A layer's record with where its covariance came from in the checkpoint."""

    source_size: Size  # kernel size of the checkpoint kernels Sigma was estimated from
    source_bin: int  # their relative-depth bin
    n_source_kernels: int  # how many kernels Sigma was estimated from

    def extra_columns(self) -> dict[str, str]:
        kh, kw = self.source_size
        return {"source (size, bin, kernels)": f"{kh}x{kw}, {self.source_bin}, {self.n_source_kernels}"}


class CovarianceTransferInit(InitMethod, name="covariance_transfer"):
    """Each depthwise filter ~ N(0, Sigma), Sigma the covariance of a checkpoint's depthwise filters
    of the same size and relative depth (other sizes: Sigma resized; see the module docstring).

    Args:
        checkpoint: a Lightning ``.ckpt``, torch ``.pt``/``.pth`` state dict or ``.safetensors``
            file holding trained depthwise kernels (read without model code).
        depth_bins: number of equal relative-depth bins the checkpoint's layers are pooled in
            (1: one covariance per kernel size for the whole model).
        scale: ``checkpoint`` (Sigma as estimated), ``kaiming`` (mean tap variance 2 / fan_in) or
            ``match`` (the layer's previous std squared).
    """

    def __init__(
        self,
        checkpoint: str,
        depth_bins: int = 3,
        scale: Literal["checkpoint", "kaiming", "match"] = "checkpoint",
    ):
        if isinstance(depth_bins, bool) or not isinstance(depth_bins, int) or depth_bins < 1:
            raise ConfigError(
                f"covariance_transfer option depth_bins must be an integer >= 1; got {depth_bins!r}"
            )
        check_choice("scale", scale, ("checkpoint", "kaiming", "match"))
        try:
            layers = kernels_from_checkpoint(checkpoint)
        except NeuralEchosError as err:
            raise ConfigError(f"covariance_transfer init: {err}") from err
        too_large = [layer.name for layer in layers if max(layer.kernel_size) > MAX_KERNEL_SIDE]
        if too_large:  # a (k*k)^2 covariance: 201x201 kernels would need 13 GB
            raise ConfigError(
                f"covariance_transfer init: checkpoint {str(checkpoint)!r} has depthwise kernels larger than "
                f"{MAX_KERNEL_SIDE}x{MAX_KERNEL_SIDE} (e.g. {too_large[0]!r}), whose covariance is not built; "
                "pass a checkpoint of kernels up to that size"
            )
        self.checkpoint, self.depth_bins, self.scale = str(checkpoint), depth_bins, scale
        # (size, bin) -> the checkpoint's kernels there, flattened [n, kh * kw]
        pooled: dict[tuple[Size, int], list[Tensor]] = {}
        for index, layer in enumerate(layers):
            depth = index / (len(layers) - 1) if len(layers) > 1 else 0.0
            pooled.setdefault((layer.kernel_size, depth_bin(depth, depth_bins)), []).append(
                layer.kernels.reshape(len(layer), -1)
            )
        self._source = {key: torch.cat(parts).double() for key, parts in pooled.items()}
        self._cache: dict[tuple[Size, int], tuple[Tensor, Size, int, int]] = {}

    def settings(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "depth_bins": self.depth_bins, "scale": self.scale}

    def covariance(self, size: Size, relative_depth: float) -> tuple[Tensor, Size, int, int]:
        """Sigma ``[kh * kw, kh * kw]`` (float64, the checkpoint's scale) for a layer of ``size`` at
        ``relative_depth``, with the source size, bin and number of kernels it came from."""
        key = (tuple(size), depth_bin(relative_depth, self.depth_bins))
        if key not in self._cache:
            self._cache[key] = self._estimate(*key)
        return self._cache[key]

    def _estimate(self, size: Size, wanted_bin: int) -> tuple[Tensor, Size, int, int]:
        sizes = sorted({key[0] for key in self._source})
        # the nearest source size, the larger on a tie
        source_size = min(sizes, key=lambda s: (abs(s[0] - size[0]) + abs(s[1] - size[1]), -s[0] * s[1]))
        bins = [b for s, b in self._source if s == source_size]
        source_bin = min(bins, key=lambda b: (abs(b - wanted_bin), b))  # nearest bin, the earlier on a tie
        taps = self._source[(source_size, source_bin)]
        cov = torch.cov(taps.T)  # empirical covariance of the taps (mean removed, n - 1)
        if source_size != size:
            resize = torch.kron(
                interpolation_matrix(source_size[0], size[0]), interpolation_matrix(source_size[1], size[1])
            )
            resized = resize @ cov @ resize.T  # Sigma' = M Sigma M^T: the covariance of the resized filters
            cov = resized * (cov.diagonal().mean() / resized.diagonal().mean())  # keep the mean tap variance
        return cov, source_size, source_bin, len(taps)

    def init_layers(self, layers: list[DepthwiseLayer], generator: torch.Generator) -> list[LayerInit]:
        weights = [layer.conv.weight for layer in layers]
        std_before = layer_stds(weights)
        sources = [self.covariance(tuple(layer.conv.kernel_size), layer.relative_depth) for layer in layers]
        if self.scale == "match":  # checked for every layer before any is written
            targets = [match_std(layer.name, std) for layer, std in zip(layers, std_before)]
        else:
            targets = (
                [kaiming_std(weight) for weight in weights]
                if self.scale == "kaiming"
                else [None] * len(layers)
            )
        for layer, (cov, *_), target in zip(layers, sources, targets):
            if target is not None:
                cov = cov * (target**2 / cov.diagonal().mean())  # mean tap variance = target std^2
            write_kernels(layer.conv.weight, sample_gaussian(cov, layer.conv.weight.shape[0], generator))
        std_after = layer_stds(weights)
        return [
            CovarianceTransferLayerInit(
                name=layer.name,
                kernel_size=tuple(layer.conv.kernel_size),
                n_kernels=layer.conv.weight.shape[0],
                n_initialized=layer.conv.weight.shape[0],
                std_before=before,
                std_after=after,
                source_size=source_size,
                source_bin=source_bin,
                n_source_kernels=n_source,
            )
            for layer, (_, source_size, source_bin, n_source), before, after in zip(
                layers, sources, std_before, std_after
            )
        ]


def depth_bin(relative_depth: float, n_bins: int) -> int:
    """The bin of a relative depth in [0, 1] among ``n_bins`` equal bins (1.0 is in the last)."""
    return min(int(relative_depth * n_bins), n_bins - 1)


def interpolation_matrix(k_in: int, k_out: int) -> Tensor:
    """R ``[k_out, k_in]`` (float64): 1-D linear interpolation of k_in taps to k_out taps, outermost
    taps aligned (``align_corners=True``; one output tap takes the centre)."""
    if k_in == 1:
        return torch.ones(k_out, 1, dtype=torch.float64)
    if k_out == 1:
        x = torch.tensor([(k_in - 1) / 2], dtype=torch.float64)
    else:
        x = torch.arange(k_out, dtype=torch.float64) * ((k_in - 1) / (k_out - 1))  # source coordinate per tap
    # hat function: weight 1 - |x - j| on the source taps j within distance 1
    return (1 - (x[:, None] - torch.arange(k_in, dtype=torch.float64)[None, :]).abs()).clamp(min=0)


def sample_gaussian(cov: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """n draws ``[n, d]`` (float32) of N(0, cov) for a positive semi-definite cov ``[d, d]``:
    w = z (V sqrt(Lambda))^T with cov = V Lambda V^T, z ~ N(0, I) from ``generator``."""
    evals, evecs = torch.linalg.eigh(cov.double())
    root = evecs * evals.clamp(min=0).sqrt()  # root @ root.T = cov
    z = torch.randn(n, cov.shape[0], generator=generator, dtype=torch.float64)
    return (z @ root.T).float()


__all__ = [
    "CovarianceTransferInit",
    "CovarianceTransferLayerInit",
    "depth_bin",
    "interpolation_matrix",
    "sample_gaussian",
]
