"""``gaussian_covariance``: filters drawn from N(0, Sigma) with a closed-form Gaussian covariance.

After Trockman, Willmott & Kolter (ICLR 2023). The construction and its defaults are ours, not
checked against the paper's equations: :mod:`neural_echos.covariance` says exactly what is and is
not taken from that paper. Do not report results of it as "the Trockman et al. init".
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch

from neural_echos import covariance as cov_init
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

Schedule = float | tuple[float, float]


class GaussianCovarianceInit(InitMethod, name="gaussian_covariance"):
    """Learning-free covariance init: each k x k filter ~ N(0, Sigma), Sigma in closed form.

    ``Sigma_pq = v_p v_q exp(-|p - q|^2 / (2 sigma^2)) + eps delta_pq`` with the envelope
    ``v_p = exp(-|p - c|^2 / (4 tau^2))`` (:func:`neural_echos.covariance.gaussian_covariance`),
    scaled so that the mean tap variance is the target std squared. Caveat: our construction,
    after Trockman et al. (ICLR 2023), not verified against their equations (see the module).

    Args:
        sigma: correlation length in pixels, or an (early, late) pair interpolated linearly over
            the depth of the model's depthwise layers (placeholder default of ours).
        tau: envelope width in pixels, an (early, late) pair, or None for no envelope.
        eps: the nugget added to the diagonal (keeps Sigma positive definite).
        scale: ``kaiming``: mean tap variance 2 / fan_in (Kaiming-normal's); ``match``: the
            layer's previous std squared.
    """

    def __init__(
        self,
        sigma: Schedule = cov_init.DEFAULT_SIGMA,
        tau: Schedule | None = cov_init.DEFAULT_TAU,
        eps: float = cov_init.DEFAULT_EPS,
        scale: Literal["kaiming", "match"] = "kaiming",
    ):
        check_choice("scale", scale, ("kaiming", "match"))
        _check_schedule("sigma", sigma, optional=False)
        _check_schedule("tau", tau, optional=True)
        if (
            isinstance(eps, bool)
            or not isinstance(eps, (int, float))
            or not (math.isfinite(eps) and eps >= 0)
        ):
            raise ConfigError(
                f"gaussian_covariance option eps (diagonal nugget) must be a number >= 0; got {eps!r}"
            )
        self.sigma, self.tau = _tuple(sigma), _tuple(tau)
        self.eps, self.scale = float(eps), scale

    def settings(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "sigma": _jsonable(self.sigma),
            "tau": _jsonable(self.tau),
            "eps": self.eps,
        }

    def init_layers(self, layers: list[DepthwiseLayer], generator: torch.Generator) -> list[LayerInit]:
        # depth = position among all depthwise layers of the model, so a name filter does not
        # change the (early, late) schedule of the layers it keeps
        n_depth = layers[0].n_layers
        sigmas = cov_init.depth_schedule(self.sigma, n_depth)
        taus = cov_init.depth_schedule(self.tau, n_depth)
        weights = [layer.conv.weight for layer in layers]
        std_before = layer_stds(weights)
        if self.scale == "kaiming":
            targets = [kaiming_std(weight) for weight in weights]
        else:  # checked for every layer before any is written
            targets = [match_std(layer.name, std) for layer, std in zip(layers, std_before)]
        for layer, target in zip(layers, targets):
            size = tuple(layer.conv.kernel_size)
            cov = cov_init.gaussian_covariance(size, sigmas[layer.index], taus[layer.index], self.eps)
            cov = cov * (target**2 / cov.diagonal().mean())  # mean tap variance = target std^2
            write_kernels(
                layer.conv.weight, cov_init.sample_filters(cov, layer.conv.weight.shape[0], generator)
            )
        return plain_records(layers, std_before, layer_stds(weights))


def _check_schedule(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    values = value if isinstance(value, (tuple, list)) else (value,)
    if len(values) != (2 if isinstance(value, (tuple, list)) else 1) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values
    ):
        raise ConfigError(
            f"gaussian_covariance option {name} must be a positive number of pixels or an (early, late) pair of them"
            f"{' (or None)' if optional else ''}; got {value!r}"
        )


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


__all__ = ["GaussianCovarianceInit"]
