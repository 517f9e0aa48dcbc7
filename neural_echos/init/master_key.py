"""``master_key``: each depthwise kernel one of the 8 "master key filters" of ConvNeXt V2.

Babaiee, Kiasari, Rus & Grosu, "The master key filters hypothesis: Deep filters are general"
(AAAI 2025, arXiv 2412.16751): the depthwise filters of trained ConvNeXt-type networks cluster
around 8 filters, which transfer across data sets. The 8 filters (7x7, unit L2 norm, zero sum)
are those of Lindeberg, Babaiee & Kiasari (arXiv 2509.12746), shipped in
``neural_echos/data/master_key_filters.txt`` from github.com/tonylindeberg/masterfiltmodel
(``model-fitting/8Filters.txt``, CC BY 4.0, Copyright 2026 Tony Lindeberg;
:func:`neural_echos.known_kernels.master_key_filters`). Filters 7 and 8 are on-center
center-surround; 1-6 are deltas, shifts and edges.

Sizes other than 7x7: the filter is resampled as an image covering the same window, with
``torch.nn.functional.interpolate(mode="bilinear", align_corners=False, antialias=True)``
(bilinear when enlarging; an antialiased, area-like average when shrinking, so a centre-surround
filter stays one), whose pixel grid maps the centre pixel of one odd window onto the centre pixel
of another. The resampled filter is then re-normalised to what the file's filters are: its mean
subtracted (zero sum) and divided by its L2 norm (unit norm). 7x7 kernels are the file's filters
exactly (times the scale factor).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from neural_echos.errors import ConfigError
from neural_echos.init.base import (
    DepthwiseLayer,
    InitMethod,
    LayerInit,
    check_choice,
    kaiming_std,
    layer_stds,
    match_std,
    plain_records,
    write_kernels,
)
from neural_echos.known_kernels import master_key_filters

SCALES = ("unit", "kaiming", "match")
FILE_SIZE = (7, 7)  # the size of the published filters
ALL_FILTERS = (1, 2, 3, 4, 5, 6, 7, 8)


def resampled_master_keys(size: tuple[int, int], dtype: torch.dtype = torch.float64) -> Tensor:
    """``[8, kh, kw]``: the 8 master key filters at ``size`` (module docstring: the file's own at
    7x7, else resampled and re-normalised to zero sum and unit L2 norm)."""
    filters = master_key_filters()
    if tuple(size) == FILE_SIZE:
        return filters.to(dtype)
    resampled = F.interpolate(
        filters.double()[:, None], size=tuple(size), mode="bilinear", align_corners=False, antialias=True
    )[:, 0]
    resampled = resampled - resampled.mean(dim=(1, 2), keepdim=True)
    norm = resampled.flatten(1).norm(dim=1)[:, None, None]
    # a 1x1 (or 1xk with a flat profile) window cannot hold a zero-sum filter: refused by the caller
    return (resampled / norm).to(dtype)


class MasterKeyInit(InitMethod, name="master_key"):
    """Each depthwise kernel one of the 8 master key filters (module docstring: source, resampling).

    Per kernel, the filter is drawn uniformly at random from ``filters`` (independently per
    kernel, from the init's seed: not cycled by channel index, so no filter is tied to a channel
    position) and negated with probability ``flip_prob`` (the filters are defined up to sign; a
    negated filter 7 or 8 is off-center, as the DoG init's ``on_center_prob`` gives off-center
    kernels).

    Args:
        filters: the 1-based numbers of the filters to draw from (default all 8; ``[7, 8]``: the
            center-surround ones only).
        flip_prob: probability that a kernel is the negated filter (0.5: both signs equally).
        scale: ``unit``: the filters as published (unit L2 norm, zero sum). ``kaiming``: each
            layer's kernels rescaled together (one factor per layer) to the std of Kaiming-normal
            init, ``sqrt(2) / sqrt(fan_in)``; ``match``: to the std the layer's weight had before.
            As the DoG init's ``scale``; the filters sum to zero, so std = root-mean-square.
    """

    def __init__(
        self,
        filters: list[int] | tuple[int, ...] = ALL_FILTERS,
        flip_prob: float = 0.5,
        scale: Literal["unit", "kaiming", "match"] = "unit",
    ):
        try:
            numbers = [int(f) for f in filters if not isinstance(f, bool) and float(f) == int(f)]
        except (TypeError, ValueError):
            numbers = []
        if not numbers or len(numbers) != len(list(filters)) or not all(1 <= f <= 8 for f in numbers):
            raise ConfigError(
                f"filters must be a non-empty list of master key filter numbers 1-8; got {filters!r}"
            )
        if len(set(numbers)) != len(numbers):
            raise ConfigError(f"filters lists a master key filter twice: {filters!r}; give each number once")
        if isinstance(flip_prob, bool) or not isinstance(flip_prob, (int, float)) or not 0 <= flip_prob <= 1:
            raise ConfigError(
                "flip_prob is the probability that a kernel is the negated filter and must lie "
                f"in [0, 1]; got {flip_prob!r}"
            )
        check_choice("scale", scale, SCALES)
        self.filters, self.flip_prob, self.scale = tuple(sorted(numbers)), float(flip_prob), scale

    def settings(self) -> dict[str, Any]:
        return {"filters": list(self.filters), "flip_prob": self.flip_prob, "scale": self.scale}

    def init_layers(self, layers: list[DepthwiseLayer], generator: torch.Generator) -> list[LayerInit]:
        weights = [layer.conv.weight for layer in layers]
        std_before = layer_stds(weights)
        # everything that can fail, before any layer is written
        for layer, before in zip(layers, std_before, strict=True):
            kh, kw = layer.conv.kernel_size
            if kh * kw < 2:
                raise ConfigError(
                    f"master_key init: layer {layer.name!r} has {kh}x{kw} kernels, which "
                    "cannot hold a master key filter; exclude it with --init.name_filter"
                )
            if self.scale == "match":
                match_std(layer.name, before)
        chosen = torch.tensor(self.filters) - 1
        bank: dict[tuple[int, int], Tensor] = {}
        for layer, weight, before in zip(layers, weights, std_before, strict=True):
            size = tuple(layer.conv.kernel_size)
            if size not in bank:
                bank[size] = resampled_master_keys(size)[chosen]
            n = weight.shape[0]
            # one row of random numbers per kernel, layers in module order: which filter, its sign
            pick = torch.randint(0, len(self.filters), (n,), generator=generator)
            flip = torch.rand(n, generator=generator, dtype=torch.float64) < self.flip_prob
            kernels = bank[size][pick] * torch.where(flip, -1.0, 1.0).double()[:, None, None]
            if self.scale != "unit":
                target = kaiming_std(weight) if self.scale == "kaiming" else before
                kernels = kernels * (target / kernels.square().mean().sqrt())
            write_kernels(weight, kernels.to(weight.dtype))
        return plain_records(layers, std_before, layer_stds(weights))


__all__ = ["ALL_FILTERS", "MasterKeyInit", "resampled_master_keys"]
