"""``dog``: Difference-of-Gaussians center-surround kernels, the init of "Neural Echos".

Babaiee et al., arXiv 2401.10178; the kernel maths is :mod:`neural_echos.dog`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from neural_echos.dog import GAMMA_EPS, default_radius, dog_kernels, effective_radius
from neural_echos.errors import ConfigError
from neural_echos.init.base import (
    DepthwiseLayer,
    InitMethod,
    InitSummary,
    LayerInit,
    check_choice,
    kaiming_std,
    layer_stds,
    match_std,
    write_kernels,
)

SCALES = ("unit", "kaiming", "match")

RadiusRule = Callable[[Tensor, tuple[int, int]], Tensor]


@dataclass(kw_only=True)
class DoGLayerInit(LayerInit):
    """A layer's record with the DoG kernels' polarity counts and gamma statistics."""

    n_on: int  # on-center DoG kernels
    n_off: int
    gamma_min: float | None  # None when the layer got no DoG kernel (dog_share 0)
    gamma_mean: float | None
    gamma_max: float | None
    radius_mean: float | None  # mean centre radius the DoG kernels got (kept inside the window)
    n_radius_adjusted: int  # DoG kernels whose requested radius was moved inside the window

    def extra_columns(self) -> dict[str, str]:
        gammas = f"{_fmt(self.gamma_min)}/{_fmt(self.gamma_mean)}/{_fmt(self.gamma_max)}"
        return {
            "on": str(self.n_on),
            "off": str(self.n_off),
            "gamma min/mean/max": gammas,
            "radius": _fmt(self.radius_mean),
            "adjusted": str(self.n_radius_adjusted),
        }


@dataclass
class DoGSummary(InitSummary):
    """:class:`InitSummary` with on/off-center counts and gamma statistics over all layers."""

    @property
    def n_on(self) -> int:
        return sum(layer.n_on for layer in self.layers)

    @property
    def n_off(self) -> int:
        return sum(layer.n_off for layer in self.layers)

    def gamma_stats(self) -> tuple[float | None, float | None, float | None]:
        """(min, mean, max) of gamma over all DoG kernels of all layers; Nones without any."""
        drawn = [layer for layer in self.layers if layer.gamma_mean is not None]
        if not drawn:
            return None, None, None
        total = sum(layer.n_initialized for layer in drawn)
        mean = sum(layer.gamma_mean * layer.n_initialized for layer in drawn) / total
        return min(layer.gamma_min for layer in drawn), mean, max(layer.gamma_max for layer in drawn)

    @property
    def n_radius_adjusted(self) -> int:
        return sum(layer.n_radius_adjusted for layer in self.layers)

    def totals(self) -> dict[str, Any]:
        gamma_min, gamma_mean, gamma_max = self.gamma_stats()
        return {
            **super().totals(),
            "n_on": self.n_on,
            "n_off": self.n_off,
            "gamma_min": gamma_min,
            "gamma_mean": gamma_mean,
            "gamma_max": gamma_max,
            "n_radius_adjusted": self.n_radius_adjusted,
        }

    def detail_lines(self) -> list[str]:
        gamma_min, gamma_mean, gamma_max = self.gamma_stats()
        lines = [
            (
                f"  on-center {self.n_on}, off-center {self.n_off}, "
                f"gamma min/mean/max {_fmt(gamma_min)}/{_fmt(gamma_mean)}/{_fmt(gamma_max)}"
            )
        ]
        if self.n_radius_adjusted:
            lines.append(
                f"  centre radius moved inside the window for {self.n_radius_adjusted} of {self.n_initialized} "
                "kernels, so that the centre and the surround each keep a ring of pixels "
                "(neural_echos.dog.effective_radius)"
            )
        return lines


class DoGInit(InitMethod, name="dog"):
    """Difference-of-Gaussians center-surround kernels (the paper's initialisation).

    Per kernel, gamma is drawn uniformly from ``gamma_range`` and the kernel is on-center with
    probability ``on_center_prob`` (off-center otherwise). ``dog_share`` of the kernels of each
    layer (chosen at random, ``round(share * n)`` of them) get a DoG kernel; the rest keep their
    weights.

    Args:
        gamma_range: (low, high) with 0 <= low < high <= 1; gamma ~ U(low, high) per kernel
            (values within 1e-6 of 0 or 1 are clamped to 1e-6 / 1 - 1e-6). An ablation such as
            (0, 0.5) is one setting.
        on_center_prob: probability that a DoG kernel is on-center.
        dog_share: share of each layer's kernels that get a DoG kernel.
        scale: ``unit``: as generated, centre entries sum to +1 and surround entries to -1.
            ``kaiming``: each layer's DoG kernels rescaled together (one factor per layer, so the
            relative amplitudes across gamma stay) to the std of Kaiming-normal init,
            ``gain / sqrt(fan_in)`` with ``fan_in = (in_channels / groups) * kh * kw`` and
            ``gain = sqrt(2)``: the default of ``torch.nn.init.kaiming_normal_`` (mode="fan_in",
            nonlinearity="leaky_relu" with a = 0, whose gain is sqrt(2 / (1 + a^2)) = sqrt(2)).
            ``match``: rescaled to the std the layer's weight had before (with ``dog_share`` < 1
            the DoG kernels get that std; the layer's overall std then mixes them with the rest).
            "std" is the population std over all entries of the rescaled kernels; DoG kernels
            sum to 0, so it equals their root-mean-square.
        radius: the centre radius: ``None`` for ``r = gamma * (k + 1) / 2``
            (:func:`neural_echos.dog.default_radius`), a fixed positive number of pixels, or (from
            Python) a callable ``(gamma [n], (kh, kw)) -> r [n]``.
    """

    def __init__(
        self,
        gamma_range: tuple[float, float] = (0.0, 1.0),
        on_center_prob: float = 0.5,
        dog_share: float = 1.0,
        scale: Literal["unit", "kaiming", "match"] = "unit",
        radius: float | None = None,  # (a RadiusRule callable too, from Python; not on the command line)
    ):
        self.gamma_range = _check_gamma_range(gamma_range)
        _check_probability("on_center_prob", on_center_prob, "the probability that a DoG kernel is on-center")
        _check_probability("dog_share", dog_share, "the share of each layer's kernels that get a DoG kernel")
        check_choice("scale", scale, SCALES)
        _check_radius(radius)
        self.on_center_prob, self.dog_share = float(on_center_prob), float(dog_share)
        self.scale, self.radius = scale, radius

    summary_class = DoGSummary

    def settings(self) -> dict[str, Any]:
        low, high = self.gamma_range
        radius = self.radius
        return {
            "gamma_low": low,
            "gamma_high": high,
            "on_center_prob": self.on_center_prob,
            "dog_share": self.dog_share,
            "scale": self.scale,
            "radius": "gamma*(k+1)/2"
            if radius is None
            else repr(radius)
            if callable(radius)
            else float(radius),
        }

    def init_layers(self, layers: list[DepthwiseLayer], generator: torch.Generator) -> list[LayerInit]:
        low, high = self.gamma_range
        weights = [layer.conv.weight for layer in layers]
        n_kernels = [weight.shape[0] for weight in weights]
        n_layers = len(layers)

        # Random numbers, one row per kernel, all layers in module order: gamma, polarity.
        u = torch.rand(sum(n_kernels), 2, generator=generator, dtype=torch.float64)
        gamma = (low + (high - low) * u[:, 0]).clamp(GAMMA_EPS, 1 - GAMMA_EPS)  # gamma ~ U(low, high)
        on_center = u[:, 1] < self.on_center_prob
        # Kernels that get a DoG: all, or per layer the round(share * n) with the smallest random
        # keys (drawn after gamma and polarity, so a kernel chosen at any share gets the same DoG).
        n_dog = [math.floor(self.dog_share * n + 0.5) for n in n_kernels]
        chosen: list[Tensor | None] = [None] * n_layers  # rows of each layer's weight to rewrite
        if n_dog != n_kernels:
            all_keys = torch.rand(sum(n_kernels), generator=generator, dtype=torch.float64)
            first_row = [0, *itertools.accumulate(n_kernels)]
            for i in range(n_layers):
                keys = all_keys[first_row[i] : first_row[i + 1]]
                chosen[i] = keys.argsort()[: n_dog[i]].sort().values
            rows = torch.cat([rows + start for rows, start in zip(chosen, first_row)])
            gamma, on_center = gamma[rows], on_center[rows]
        starts = [0, *itertools.accumulate(n_dog)]  # DoG kernels of layer i: rows starts[i]:starts[i + 1]

        # One dog_kernels call per kernel size, for all layers of that size at once.
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, layer in enumerate(layers):
            by_size.setdefault(tuple(layer.conv.kernel_size), []).append(i)
        kernels: list[Tensor] = [torch.empty(0)] * n_layers
        radius_used: list[Tensor] = [torch.empty(0)] * n_layers  # effective radius of each DoG kernel
        radius_moved: list[Tensor] = [torch.empty(0)] * n_layers  # ... and whether it was moved
        for size, members in by_size.items():
            if len(members) == n_layers:  # one size in the model: all DoG kernels, in order
                rows = slice(None)
            else:
                rows = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in members])
            gamma_s = gamma[rows]
            if self.radius is None:
                r = default_radius(gamma_s, size)  # r = gamma * (k + 1) / 2
            elif callable(self.radius):
                r = torch.as_tensor(self.radius(gamma_s, size), dtype=torch.float64)
            else:
                r = torch.full_like(gamma_s, float(self.radius))
            # float32 kernels are accurate to ~1e-7; float64 layers get float64 kernels
            wide = any(weights[i].dtype == torch.float64 for i in members)
            try:
                out = dog_kernels(gamma_s, size, r, on_center[rows], torch.float64 if wide else torch.float32)
            except ValueError as err:
                names = ", ".join(layers[i].name for i in members[:3])
                raise ConfigError(
                    f"DoG init of the {size[0]}x{size[1]} depthwise layers ({names}): {err}"
                ) from err
            r = r.reshape(-1).expand(len(gamma_s)) if r.numel() == 1 else r.reshape(-1)
            used = effective_radius(r, size)  # what dog_kernels gave each kernel
            parts = [n_dog[i] for i in members]
            for i, part, r_used, moved in zip(
                members, out.split(parts), used.split(parts), (used != r).split(parts)
            ):
                kernels[i], radius_used[i], radius_moved[i] = part, r_used, moved

        std_before = layer_stds(weights)
        if self.scale != "unit":  # one factor per layer: target std / root-mean-square of its DoG kernels
            if self.scale == "kaiming":
                targets = [kaiming_std(weight) for weight in weights]
            else:  # checked for every layer before any is written
                targets = [
                    match_std(layer.name, std) if n > 0 else 0.0
                    for layer, std, n in zip(layers, std_before, n_dog)
                ]
            for i in range(n_layers):
                if n_dog[i] > 0:
                    kernels[i] = kernels[i] * (targets[i] / kernels[i].square().mean().sqrt())
        for weight, new, rows in zip(weights, kernels, chosen):
            if new.shape[0] > 0:
                write_kernels(weight, new, rows)
        std_after = layer_stds(weights)

        # gamma statistics and polarity counts per layer, for all layers at once (layer i owns the
        # next n_dog[i] DoG kernels; an empty layer gets inf / 0 / -inf, reported as None below)
        lengths = torch.tensor(n_dog)
        stats = torch.stack(
            [
                torch.segment_reduce(gamma, "min", lengths=lengths),
                torch.segment_reduce(gamma, "sum", lengths=lengths),
                torch.segment_reduce(gamma, "max", lengths=lengths),
                torch.segment_reduce(on_center.double(), "sum", lengths=lengths),  # on-center count
            ]
        ).T.tolist()

        records: list[LayerInit] = []
        for i, (layer, (g_min, g_sum, g_max, n_on)) in enumerate(zip(layers, stats)):
            has = n_dog[i] > 0
            records.append(
                DoGLayerInit(
                    name=layer.name,
                    kernel_size=tuple(layer.conv.kernel_size),
                    n_kernels=n_kernels[i],
                    n_initialized=n_dog[i],
                    std_before=std_before[i],
                    std_after=std_after[i],
                    n_on=int(n_on),
                    n_off=n_dog[i] - int(n_on),
                    gamma_min=g_min if has else None,
                    gamma_mean=g_sum / n_dog[i] if has else None,
                    gamma_max=g_max if has else None,
                    radius_mean=float(radius_used[i].mean()) if has else None,
                    n_radius_adjusted=int(radius_moved[i].sum()) if has else 0,
                )
            )
        return records


def _check_gamma_range(gamma_range: Any) -> tuple[float, float]:
    try:
        low, high = (float(value) for value in gamma_range)
    except (TypeError, ValueError):
        raise ConfigError(f"gamma_range must be a pair (low, high) of numbers; got {gamma_range!r}") from None
    if not (0.0 <= low <= 1.0 and 0.0 <= high <= 1.0):
        raise ConfigError(
            f"gamma_range {gamma_range!r} must lie within [0, 1]: gamma is the centre/surround ratio, "
            "in (0, 1). Use e.g. (0, 1) or (0, 0.5)."
        )
    if low >= high:
        raise ConfigError(
            f"gamma_range needs low < high; got {gamma_range!r}. gamma ~ U(low, high): give a non-empty interval."
        )
    return low, high


def _check_probability(name: str, value: Any, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} is {meaning} and must lie in [0, 1]; got {value!r}")


def _check_radius(radius: Any) -> None:
    if radius is None or callable(radius):
        return
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not math.isfinite(radius):
        raise ConfigError(
            f"radius must be None (r = gamma * (k + 1) / 2), a positive number of pixels or a "
            f"callable (gamma, (kh, kw)) -> r; got {radius!r}"
        )
    if radius <= 0:
        raise ConfigError(
            f"radius must be a positive number of pixels (the DoG centre radius); got {radius}. "
            "Use None for the default r = gamma * (k + 1) / 2."
        )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


__all__ = ["SCALES", "DoGInit", "DoGLayerInit", "DoGSummary"]
