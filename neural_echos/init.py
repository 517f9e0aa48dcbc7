"""Initialising the depthwise convolutions of any model: DoG, Kaiming baselines, covariance.

:func:`initialize_depthwise` rewrites, in place, the weights of every depthwise convolution
of an ``nn.Module`` (as found by :func:`neural_echos.depthwise.find_depthwise_convs`: timm,
torchvision or our own models; weight shape ``[C * m, 1, kh, kw]`` with channel multiplier m,
one kernel per output channel) and returns an :class:`InitSummary` of what it changed.
Biases are left alone.

Methods:

- ``"dog"``: Difference-of-Gaussians center-surround kernels (:mod:`neural_echos.dog`), the
  initialisation of "Neural Echos" (Babaiee et al., arXiv 2401.10178). Per kernel, gamma is
  drawn uniformly from ``gamma_range`` and the kernel is on-center with probability
  ``on_center_prob`` (off-center otherwise). ``dog_share`` of the kernels of each layer
  (chosen at random, ``round(share * n)`` of them) get a DoG kernel; the rest keep their
  weights. Scale modes (``scale``):

  * ``"unit"``: as generated: centre entries sum to +1, surround entries to -1.
  * ``"kaiming"``: each layer's DoG kernels rescaled together (one factor per layer, so the
    relative amplitudes across gamma stay) to the std of Kaiming-normal init,
    ``gain / sqrt(fan_in)`` with ``fan_in = (in_channels / groups) * kh * kw`` and
    ``gain = sqrt(2)``: the default of ``torch.nn.init.kaiming_normal_`` (mode="fan_in",
    nonlinearity="leaky_relu" with a = 0, whose gain is sqrt(2 / (1 + a^2)) = sqrt(2), the
    ReLU gain).
  * ``"match"``: rescaled to the std the layer's weight had before (with ``dog_share`` < 1,
    the DoG kernels get that std; the layer's overall std then mixes them with the rest).

  "std" is the population std (``correction=0``) over all entries of the rescaled kernels; DoG
  kernels sum to 0, so it equals their root-mean-square.

- ``"kaiming_normal"`` / ``"kaiming_uniform"``: the paper's baseline: N(0, std^2) with
  ``std = sqrt(2) / sqrt(fan_in)``, or U(-b, b) with ``b = sqrt(2) * sqrt(3 / fan_in)``, as
  ``torch.nn.init.kaiming_normal_`` / ``kaiming_uniform_`` with their defaults (a = 0,
  mode="fan_in"). Stated explicitly because model defaults differ: timm's ConvNeXt
  initialises depthwise convs with trunc-normal(std 0.02), timm's ConvMixer keeps PyTorch's
  ``nn.Conv2d`` default (kaiming_uniform with a = sqrt(5)), so "default init" is no baseline.

- ``"covariance"``: filters drawn from N(0, Sigma) with a closed-form Gaussian covariance,
  after Trockman et al. (ICLR 2023); see :mod:`neural_echos.covariance` for exactly what is
  and is not taken from that paper. Options (``**method_kwargs``): ``sigma``, ``tau`` (each a
  number or an (early, late) pair over the depth of the model's depthwise layers) and
  ``eps``. Sigma is scaled so that the mean tap variance is the target std squared: scale
  ``"kaiming"`` (default) or ``"match"``.

Speed: all kernels of a size are made in one vectorised call (:func:`neural_echos.dog.dog_kernels`)
and the per-layer statistics in a few batched ops; the work runs on one CPU thread (see
``_one_cpu_thread``). DoG init of timm convnext_tiny (6,624 kernels) takes a few ms; see
``benchmarks/bench_dog_init.py``.

Randomness: everything comes from a private ``torch.Generator`` seeded with ``seed`` (the
global RNG is neither used nor advanced) and is drawn on the CPU in module order, so the same
seed and model give the same weights on every DDP rank and every device.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import numbers
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from neural_echos import covariance as cov_init
from neural_echos.depthwise import find_depthwise_convs
from neural_echos.dog import GAMMA_EPS, dog_kernels
from neural_echos.errors import ConfigError

METHODS = ("dog", "kaiming_normal", "kaiming_uniform", "covariance")
SCALES = ("unit", "kaiming", "match")
KAIMING_GAIN = math.sqrt(2.0)  # torch.nn.init.calculate_gain("relu"), the kaiming_* default (a = 0)

RadiusRule = Callable[[Tensor, tuple[int, int]], Tensor]


@dataclass
class LayerInit:
    """What :func:`initialize_depthwise` did to one depthwise layer."""

    name: str
    kernel_size: tuple[int, int]
    n_kernels: int  # output channels = kernels in the layer
    n_initialized: int  # kernels rewritten (the DoG kernels for method "dog")
    n_on: int | None  # on-center DoG kernels (None for other methods)
    n_off: int | None
    gamma_min: float | None
    gamma_mean: float | None
    gamma_max: float | None
    std_before: float  # population std of the whole weight
    std_after: float


@dataclass
class InitSummary:
    """Summary of :func:`initialize_depthwise`: settings, per-layer records and totals."""

    model: str
    method: str
    settings: dict[str, Any]
    layers: list[LayerInit] = field(default_factory=list)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_kernels(self) -> int:
        return sum(layer.n_kernels for layer in self.layers)

    @property
    def n_initialized(self) -> int:
        return sum(layer.n_initialized for layer in self.layers)

    @property
    def n_on(self) -> int | None:
        return None if self.method != "dog" else sum(layer.n_on or 0 for layer in self.layers)

    @property
    def n_off(self) -> int | None:
        return None if self.method != "dog" else sum(layer.n_off or 0 for layer in self.layers)

    def gamma_stats(self) -> tuple[float | None, float | None, float | None]:
        """(min, mean, max) of gamma over all DoG kernels of all layers; Nones without any."""
        drawn = [layer for layer in self.layers if layer.gamma_mean is not None]
        if not drawn:
            return None, None, None
        total = sum(layer.n_initialized for layer in drawn)
        mean = sum(layer.gamma_mean * layer.n_initialized for layer in drawn) / total
        return min(layer.gamma_min for layer in drawn), mean, max(layer.gamma_max for layer in drawn)

    def to_dict(self, per_layer: bool = True) -> dict[str, Any]:
        """JSON-serialisable: settings and totals as flat keys, per-layer records under "layers"."""
        gamma_min, gamma_mean, gamma_max = self.gamma_stats()
        out: dict[str, Any] = {"model": self.model, "method": self.method, **self.settings}
        out.update(
            n_layers=self.n_layers,
            n_kernels=self.n_kernels,
            n_initialized=self.n_initialized,
            n_on=self.n_on,
            n_off=self.n_off,
            gamma_min=gamma_min,
            gamma_mean=gamma_mean,
            gamma_max=gamma_max,
        )
        if per_layer:
            out["layers"] = [
                {**asdict(layer), "kernel_size": list(layer.kernel_size)} for layer in self.layers
            ]
        return out

    def __str__(self) -> str:
        gamma_min, gamma_mean, gamma_max = self.gamma_stats()
        settings = ", ".join(f"{key}={value}" for key, value in self.settings.items())
        header = (
            f"{self.method} init of {self.model!r}: {self.n_layers} depthwise layers, "
            f"{self.n_initialized} of {self.n_kernels} kernels initialised ({settings})"
        )
        lines = [header]
        if self.method == "dog":
            lines.append(
                f"  on-center {self.n_on}, off-center {self.n_off}, "
                f"gamma min/mean/max {_fmt(gamma_min)}/{_fmt(gamma_mean)}/{_fmt(gamma_max)}"
            )
        width = max(len("layer"), *(len(layer.name) for layer in self.layers))
        lines.append(
            f"  {'layer':<{width}}  size    kernels   init    on   off  gamma min/mean/max    std before -> after"
        )
        for layer in self.layers:
            size = f"{layer.kernel_size[0]}x{layer.kernel_size[1]}"
            on = "-" if layer.n_on is None else layer.n_on
            off = "-" if layer.n_off is None else layer.n_off
            gammas = f"{_fmt(layer.gamma_min)}/{_fmt(layer.gamma_mean)}/{_fmt(layer.gamma_max)}"
            lines.append(
                f"  {layer.name:<{width}}  {size:<6} {layer.n_kernels:>8} {layer.n_initialized:>6} "
                f"{on:>5} {off:>5}  {gammas:<19} {layer.std_before:.4g} -> {layer.std_after:.4g}"
            )
        return "\n".join(lines)


def initialize_depthwise(
    model: nn.Module,
    method: str = "dog",
    *,
    gamma_range: tuple[float, float] = (0.0, 1.0),
    on_center_prob: float = 0.5,
    dog_share: float = 1.0,
    scale: str | None = None,
    radius: float | RadiusRule | None = None,
    name_filter: str | None = None,
    seed: int = 0,
    model_name: str | None = None,
    **method_kwargs: Any,
) -> InitSummary:
    """Initialise every depthwise conv of ``model`` in place and return what was changed.

    Args:
        model: any ``nn.Module``; its depthwise ``nn.Conv2d`` layers are initialised.
        method: one of :data:`METHODS` (see the module docstring).
        gamma_range: (low, high) with 0 <= low < high <= 1; gamma ~ U(low, high) per DoG
            kernel (values within 1e-6 of 0 or 1 are clamped to 1e-6 / 1 - 1e-6). Default
            (0, 1); an ablation such as (0, 0.5) is one setting.
        on_center_prob: probability that a DoG kernel is on-center (default 0.5).
        dog_share: share of each layer's kernels that get a DoG kernel (default 1.0); the
            others keep their current weights.
        scale: "unit", "kaiming" or "match" (see the module docstring); ``None`` takes the
            method's default: "unit" for DoG, "kaiming" for covariance. Kaiming methods take
            no scale.
        radius: DoG centre radius: ``None`` for ``r = gamma * (k + 1) / 2``
            (:func:`neural_echos.dog.default_radius`), a fixed positive number of pixels, or
            a callable ``(gamma [n], (kh, kw)) -> r [n]``.
        name_filter: regular expression searched in the qualified layer names; only matching
            layers are initialised.
        seed: seed of the private ``torch.Generator`` (the global RNG is not touched).
        model_name: name used in messages and the summary (default: the class name).
        **method_kwargs: options of the covariance method: ``sigma``, ``tau``, ``eps``.

    Raises:
        ConfigError (a ValueError): for any invalid setting, with what is wrong and what to do.
        NoDepthwiseLayersError: the model has no depthwise layer, or the filter matches none.
    """
    label = model_name or type(model).__name__
    settings = _check_settings(
        method, gamma_range, on_center_prob, dog_share, scale, radius, seed, method_kwargs
    )
    generator = torch.Generator(device="cpu").manual_seed(settings["seed"])
    with torch.no_grad(), _one_cpu_thread():
        if method == "covariance":
            depth = {name: index for index, (name, _) in enumerate(find_depthwise_convs(model, None, label))}
            layers = find_depthwise_convs(model, name_filter, label)
            records = _init_covariance(layers, depth, generator, settings)
        else:
            layers = find_depthwise_convs(model, name_filter, label)
            if method == "dog":
                records = _init_dog(layers, generator, settings, radius)
            else:
                records = _init_kaiming(layers, generator, uniform=method == "kaiming_uniform")
    if name_filter is not None:
        settings["name_filter"] = name_filter
    return InitSummary(model=label, method=method, settings=settings, layers=records)


# --------------------------------------------------------------------------------------------
# settings


def _check_settings(
    method: str,
    gamma_range: tuple[float, float],
    on_center_prob: float,
    dog_share: float,
    scale: str | None,
    radius: float | RadiusRule | None,
    seed: int,
    method_kwargs: dict[str, Any],
) -> dict[str, Any]:
    """Validate every setting; return the ones that apply to ``method`` (JSON-serialisable)."""
    if method not in METHODS:
        raise ConfigError(f"unknown depthwise init method {method!r}; choose one of {', '.join(METHODS)}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ConfigError(f"seed must be an integer; got {seed!r}")
    seed = int(seed)
    settings: dict[str, Any] = {"seed": seed}

    if method == "dog":
        low, high = _check_gamma_range(gamma_range)
        _check_probability("on_center_prob", on_center_prob, "the probability that a DoG kernel is on-center")
        _check_probability("dog_share", dog_share, "the share of each layer's kernels that get a DoG kernel")
        scale = "unit" if scale is None else scale
        _check_scale(scale, SCALES)
        if radius is not None and not callable(radius):
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
        if method_kwargs:
            raise ConfigError(f"method 'dog' takes no extra options; got {sorted(method_kwargs)}")
        settings.update(
            gamma_low=low,
            gamma_high=high,
            on_center_prob=float(on_center_prob),
            dog_share=float(dog_share),
            scale=scale,
            radius=_radius_setting(radius),
        )
    elif method == "covariance":
        scale = "kaiming" if scale is None else scale
        _check_scale(scale, ("kaiming", "match"))
        unknown = sorted(set(method_kwargs) - {"sigma", "tau", "eps"})
        if unknown:
            raise ConfigError(
                f"method 'covariance' takes the options sigma, tau and eps; got unknown {unknown}"
            )
        sigma = method_kwargs.get("sigma", cov_init.DEFAULT_SIGMA)
        tau = method_kwargs.get("tau", cov_init.DEFAULT_TAU)
        eps = method_kwargs.get("eps", cov_init.DEFAULT_EPS)
        for name, value, optional in (("sigma", sigma, False), ("tau", tau, True)):
            _check_schedule(name, value, optional)
        if (
            isinstance(eps, bool)
            or not isinstance(eps, (int, float))
            or not (math.isfinite(eps) and eps >= 0)
        ):
            raise ConfigError(f"covariance option eps (diagonal nugget) must be a number >= 0; got {eps!r}")
        settings.update(scale=scale, sigma=_jsonable(sigma), tau=_jsonable(tau), eps=float(eps))
    else:
        if scale is not None:
            raise ConfigError(
                f"scale does not apply to method {method!r} (its std is fixed by Kaiming's rule); "
                "leave scale=None"
            )
        if method_kwargs:
            raise ConfigError(f"method {method!r} takes no extra options; got {sorted(method_kwargs)}")
        settings["gain"] = KAIMING_GAIN
    return settings


def _radius_setting(radius: float | RadiusRule | None) -> float | str:
    if radius is None:
        return "gamma*(k+1)/2"
    return repr(radius) if callable(radius) else float(radius)


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


def _check_scale(scale: Any, allowed: tuple[str, ...]) -> None:
    if scale not in allowed:
        raise ConfigError(f"unknown scale {scale!r} for this method; choose one of {', '.join(allowed)}")


def _check_schedule(name: str, value: Any, optional: bool) -> None:
    if value is None and optional:
        return
    values = value if isinstance(value, (tuple, list)) else (value,)
    if len(values) != (2 if isinstance(value, (tuple, list)) else 1) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in values
    ):
        raise ConfigError(
            f"covariance option {name} must be a positive number of pixels or an (early, late) pair of them"
            f"{' (or None)' if optional else ''}; got {value!r}"
        )


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# --------------------------------------------------------------------------------------------
# methods


def _init_dog(
    layers: list[tuple[str, nn.Conv2d]],
    generator: torch.Generator,
    settings: dict[str, Any],
    radius: float | RadiusRule | None,
) -> list[LayerInit]:
    low, high = settings["gamma_low"], settings["gamma_high"]
    share, scale = settings["dog_share"], settings["scale"]
    weights = [conv.weight for _, conv in layers]
    n_kernels = [weight.shape[0] for weight in weights]
    n_layers = len(layers)

    # Random numbers, one row per kernel, all layers in module order: gamma, polarity.
    u = torch.rand(sum(n_kernels), 2, generator=generator, dtype=torch.float64)
    gamma = (low + (high - low) * u[:, 0]).clamp(GAMMA_EPS, 1 - GAMMA_EPS)  # gamma ~ U(low, high)
    on_center = u[:, 1] < settings["on_center_prob"]
    # Kernels that get a DoG: all, or per layer the round(share * n) with the smallest random
    # keys (drawn after gamma and polarity, so a kernel chosen at any share gets the same DoG).
    n_dog = [math.floor(share * n + 0.5) for n in n_kernels]
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
    for i, (_, conv) in enumerate(layers):
        by_size.setdefault(tuple(conv.kernel_size), []).append(i)
    kernels: list[Tensor] = [torch.empty(0)] * n_layers
    for size, members in by_size.items():
        if len(members) == n_layers:  # one size in the model: all DoG kernels, in order
            rows = slice(None)
        else:
            rows = torch.cat([torch.arange(starts[i], starts[i + 1]) for i in members])
        gamma_s = gamma[rows]
        if radius is None:
            r = None  # dog_kernels' default: default_radius(gamma, size) = gamma * (k + 1) / 2
        elif callable(radius):
            r = torch.as_tensor(radius(gamma_s, size), dtype=torch.float64)
        else:
            r = radius
        # float32 kernels are accurate to ~1e-7; float64 layers get float64 kernels
        wide = any(weights[i].dtype == torch.float64 for i in members)
        try:
            out = dog_kernels(gamma_s, size, r, on_center[rows], torch.float64 if wide else torch.float32)
        except ValueError as err:
            names = ", ".join(layers[i][0] for i in members[:3])
            raise ConfigError(
                f"DoG init of the {size[0]}x{size[1]} depthwise layers ({names}): {err}"
            ) from err
        for i, part in zip(members, out.split([n_dog[i] for i in members])):
            kernels[i] = part

    std_before = _stds(weights)
    if scale != "unit":  # one factor per layer: target std / root-mean-square of its DoG kernels
        if scale == "kaiming":
            targets = [_kaiming_std(weight) for weight in weights]
        else:  # checked for every layer before any is written
            targets = [
                _match_std(name, std) if n > 0 else 0.0
                for (name, _), std, n in zip(layers, std_before, n_dog)
            ]
        for i in range(n_layers):
            if n_dog[i] > 0:
                kernels[i] = kernels[i] * (targets[i] / kernels[i].square().mean().sqrt())
    for weight, new, rows in zip(weights, kernels, chosen):
        if new.shape[0] > 0:
            _write(weight, new, rows)
    std_after = _stds(weights)

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

    records = []
    for i, ((name, conv), (g_min, g_sum, g_max, n_on)) in enumerate(zip(layers, stats)):
        has = n_dog[i] > 0
        records.append(
            LayerInit(
                name=name,
                kernel_size=tuple(conv.kernel_size),
                n_kernels=n_kernels[i],
                n_initialized=n_dog[i],
                n_on=int(n_on),
                n_off=n_dog[i] - int(n_on),
                gamma_min=g_min if has else None,
                gamma_mean=g_sum / n_dog[i] if has else None,
                gamma_max=g_max if has else None,
                std_before=std_before[i],
                std_after=std_after[i],
            )
        )
    return records


def _init_kaiming(
    layers: list[tuple[str, nn.Conv2d]], generator: torch.Generator, uniform: bool
) -> list[LayerInit]:
    weights = [conv.weight for _, conv in layers]
    std_before = _stds(weights)
    for weight in weights:
        std = _kaiming_std(weight)  # gain / sqrt(fan_in)
        if uniform:  # U(-b, b), b = gain * sqrt(3 / fan_in) = sqrt(3) * std
            new = (2 * torch.rand(weight.shape, generator=generator) - 1) * (math.sqrt(3.0) * std)
        else:  # N(0, std^2)
            new = torch.randn(weight.shape, generator=generator) * std
        weight.copy_(new)
    return _plain_records(layers, std_before, _stds(weights))


def _init_covariance(
    layers: list[tuple[str, nn.Conv2d]],
    depth: dict[str, int],
    generator: torch.Generator,
    settings: dict[str, Any],
) -> list[LayerInit]:
    # depth = position among all depthwise layers of the model, so a name filter does not
    # change the (early, late) schedule of the layers it keeps
    n_depth = len(depth)
    sigmas = cov_init.depth_schedule(_tuple(settings["sigma"]), n_depth)
    taus = cov_init.depth_schedule(_tuple(settings["tau"]), n_depth)
    weights = [conv.weight for _, conv in layers]
    std_before = _stds(weights)
    if settings["scale"] == "kaiming":
        targets = [_kaiming_std(weight) for weight in weights]
    else:  # checked for every layer before any is written
        targets = [_match_std(name, std) for (name, _), std in zip(layers, std_before)]
    for (name, conv), target in zip(layers, targets):
        level = depth[name]
        cov = cov_init.gaussian_covariance(
            tuple(conv.kernel_size), sigmas[level], taus[level], settings["eps"]
        )
        cov = cov * (target**2 / cov.diagonal().mean())  # mean tap variance = target std^2
        new = cov_init.sample_filters(cov, conv.weight.shape[0], generator)
        conv.weight.copy_(new.view(conv.weight.shape))
    return _plain_records(layers, std_before, _stds(weights))


# --------------------------------------------------------------------------------------------
# helpers


@contextlib.contextmanager
def _one_cpu_thread() -> Iterator[None]:
    """Run the enclosed CPU tensor ops on one intra-op thread, then restore the thread count.

    Initialisation is a few hundred small tensor ops (~10^4-10^5 elements each). Split over
    threads they gain nothing, and when the CPU is shared (2 cores, other jobs running) every
    such op can wait a whole scheduler time slice for a descheduled worker thread: we measured
    a median of ~370 ms instead of ~9 ms for convnext_tiny's DoG init on a loaded 2-core
    machine. (This changes a process-wide setting for the duration of the call.)
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _stds(weights: list[Tensor]) -> list[float]:
    """Population std (correction=0) of each weight, as floats.

    std^2 = |w|^2 / N - (sum w / N)^2 from two cheap reductions (3x faster than ``Tensor.std``
    here); in float32 its relative error is ~1e-7 * (1 + mean^2 / std^2), fine for weights.
    """
    reductions = []
    for weight in weights:
        acc = torch.float64 if weight.dtype == torch.float64 else torch.float32
        reductions += [torch.linalg.vector_norm(weight.detach(), dtype=acc), weight.detach().sum(dtype=acc)]
    try:
        values = torch.stack(reductions).tolist()  # one host sync
    except RuntimeError:  # weights on several devices
        values = [float(value) for value in reductions]
    stds = []
    for i, weight in enumerate(weights):
        norm, total, n = values[2 * i], values[2 * i + 1], weight.numel()
        stds.append(math.sqrt(max(norm * norm / n - (total / n) ** 2, 0.0)))
    return stds


def _kaiming_std(weight: Tensor) -> float:
    """std of Kaiming-normal init: gain / sqrt(fan_in), fan_in = (in_channels / groups) * kh * kw."""
    fan_in = weight[0].numel()
    return KAIMING_GAIN / math.sqrt(fan_in)


def _match_std(name: str, std_before: float) -> float:
    if not std_before > 0:
        raise ConfigError(
            f"scale='match' keeps the layer's previous std, but layer {name!r} has std {std_before} "
            "(all weights equal); use scale='kaiming' or 'unit'"
        )
    return std_before


def _write(weight: Tensor, new: Tensor, chosen: Tensor | None) -> None:
    """Write kernels ``new [m, kh, kw]`` into ``weight [n, 1, kh, kw]`` (all, or rows ``chosen``),
    in place, keeping the weight's dtype, device and memory format."""
    new = new.view(new.shape[0], 1, *new.shape[1:])
    if chosen is None:
        weight.copy_(new)
    else:
        weight.index_copy_(0, chosen.to(weight.device), new.to(device=weight.device, dtype=weight.dtype))


def _plain_records(
    layers: list[tuple[str, nn.Conv2d]], std_before: list[float], std_after: list[float]
) -> list[LayerInit]:
    """Records of methods that rewrite every kernel and draw no gamma."""
    return [
        LayerInit(
            name=name,
            kernel_size=tuple(conv.kernel_size),
            n_kernels=conv.weight.shape[0],
            n_initialized=conv.weight.shape[0],
            n_on=None,
            n_off=None,
            gamma_min=None,
            gamma_mean=None,
            gamma_max=None,
            std_before=before,
            std_after=after,
        )
        for (name, conv), before, after in zip(layers, std_before, std_after)
    ]


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


__all__ = ["KAIMING_GAIN", "METHODS", "SCALES", "InitSummary", "LayerInit", "initialize_depthwise"]
