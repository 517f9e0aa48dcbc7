"""What every depthwise init method shares: the base class and registry, the summary types, helpers.

An init method is a subclass of :class:`InitMethod` registered under a name
(``class DoGInit(InitMethod, name="dog")``). Its constructor takes its own options only, checks
them (:class:`ConfigError` with what to do) and stores them; :meth:`InitMethod.init_layers` is
its one call: it rewrites the given depthwise layers in place, drawing every random number from
the generator it is given, and returns one :class:`LayerInit` (or a subclass with the method's
own fields) per layer. :meth:`InitMethod.initialize` does the rest for every method: find the
layers, seed the generator, run on one CPU thread without autograd, build the summary.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from neural_echos.depthwise import find_depthwise_convs
from neural_echos.errors import ConfigError
from neural_echos.threads import single_thread

KAIMING_GAIN = math.sqrt(2.0)  # torch.nn.init.calculate_gain("relu"), the kaiming_* default (a = 0)

REGISTRY: dict[str, type[InitMethod]] = {}  # registry name -> class, filled by InitMethod subclasses


@dataclass(frozen=True)
class DepthwiseLayer:
    """A depthwise conv to initialise and where it sits among all depthwise layers of the model
    (so that a name filter does not change the depth a layer is treated at)."""

    name: str
    conv: nn.Conv2d
    index: int  # position among all the model's depthwise layers, in module order
    n_layers: int  # number of depthwise layers in the model

    @property
    def relative_depth(self) -> float:
        """index / (n_layers - 1): 0 for the first depthwise layer, 1 for the last (0 when alone)."""
        return self.index / (self.n_layers - 1) if self.n_layers > 1 else 0.0


@dataclass
class LayerInit:
    """What an init method did to one depthwise layer (the fields every method reports)."""

    name: str
    kernel_size: tuple[int, int]
    n_kernels: int  # output channels = kernels in the layer
    n_initialized: int  # kernels rewritten
    std_before: float  # population std of the whole weight
    std_after: float

    def extra_columns(self) -> dict[str, str]:
        """Method-specific columns of the summary table (header -> cell); none here."""
        return {}


@dataclass
class InitSummary:
    """Summary of one initialisation: settings, per-layer records and totals.

    Methods with per-layer fields of their own subclass it (:attr:`InitMethod.summary_class`)
    to add totals (:meth:`totals`) and a line of text (:meth:`detail_lines`).
    """

    model: str
    method: str  # the registry name
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

    def totals(self) -> dict[str, Any]:
        """Totals over all layers (subclasses add the method's own)."""
        return {"n_layers": self.n_layers, "n_kernels": self.n_kernels, "n_initialized": self.n_initialized}

    def detail_lines(self) -> list[str]:
        """Lines between the header and the table (subclasses: the method's totals)."""
        return []

    def to_dict(self, per_layer: bool = True) -> dict[str, Any]:
        """JSON-serialisable: settings and totals as flat keys, per-layer records under "layers"."""
        out: dict[str, Any] = {"model": self.model, "method": self.method, **self.settings, **self.totals()}
        if per_layer:
            out["layers"] = [
                {**asdict(layer), "kernel_size": list(layer.kernel_size)} for layer in self.layers
            ]
        return out

    def __str__(self) -> str:
        settings = ", ".join(f"{key}={value}" for key, value in self.settings.items())
        header = (
            f"{self.method} init of {self.model!r}: {self.n_layers} depthwise layers, "
            f"{self.n_initialized} of {self.n_kernels} kernels initialised ({settings})"
        )
        extras = [layer.extra_columns() for layer in self.layers]
        headers = list(dict.fromkeys(key for row in extras for key in row))
        widths = {h: max(len(h), *(len(row.get(h, "-")) for row in extras)) for h in headers}
        width = max(len("layer"), *(len(layer.name) for layer in self.layers))
        extra_head = "".join(f"  {h:>{widths[h]}}" for h in headers)
        lines = [header, *self.detail_lines()]
        lines.append(f"  {'layer':<{width}}  size    kernels   init{extra_head}  std before -> after")
        for layer, row in zip(self.layers, extras):
            size = f"{layer.kernel_size[0]}x{layer.kernel_size[1]}"
            cells = "".join(f"  {row.get(h, '-'):>{widths[h]}}" for h in headers)
            lines.append(
                f"  {layer.name:<{width}}  {size:<6} {layer.n_kernels:>8} {layer.n_initialized:>6}"
                f"{cells}  {layer.std_before:.4g} -> {layer.std_after:.4g}"
            )
        return "\n".join(lines)


class InitMethod(ABC):
    """Base class of the depthwise init methods; a subclass registers with ``name="..."``.

    Subclasses implement :meth:`init_layers` and :meth:`settings`, and set
    :attr:`summary_class` when their layer records carry fields of their own.
    """

    name: ClassVar[str]
    summary_class: ClassVar[type[InitSummary]] = InitSummary

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            if name in REGISTRY and REGISTRY[name].__qualname__ != cls.__qualname__:
                raise ValueError(f"init method name {name!r} is taken by {REGISTRY[name].__qualname__}")
            cls.name = name
            REGISTRY[name] = cls

    def settings(self) -> dict[str, Any]:
        """The method's options as they are logged (JSON-serialisable)."""
        return {}

    @abstractmethod
    def init_layers(self, layers: list[DepthwiseLayer], generator: torch.Generator) -> list[LayerInit]:
        """Rewrite the weights of ``layers`` in place from ``generator`` (CPU); one record each.

        Called under ``torch.no_grad()``. Check everything that can fail before writing any
        layer, so that an error leaves the model as it was.
        """

    def initialize(
        self,
        model: nn.Module,
        *,
        seed: int = 0,
        name_filter: str | None = None,
        model_name: str | None = None,
        filter_option: str = "name_filter",
    ) -> InitSummary:
        """Initialise the depthwise convs of ``model`` in place and return what was changed.

        Args:
            model: any ``nn.Module``; its depthwise ``nn.Conv2d`` layers
                (:func:`neural_echos.depthwise.find_depthwise_convs`) are initialised.
            seed: seed of the private ``torch.Generator`` (the global RNG is not touched).
            name_filter: regular expression searched in the qualified layer names; only
                matching layers are initialised.
            model_name: name used in messages and the summary (default: the class name).
            filter_option: the option that set ``name_filter``, named in its errors.

        Raises:
            ConfigError (a ValueError): an invalid setting, with what is wrong and what to do.
            NoDepthwiseLayersError: the model has no depthwise layer, or the filter matches none.
        """
        label = model_name or type(model).__name__
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ConfigError(f"seed must be an integer; got {seed!r}")
        every = find_depthwise_convs(model, None, label)
        position = {name: index for index, (name, _) in enumerate(every)}
        selected = (
            every if name_filter is None else find_depthwise_convs(model, name_filter, label, filter_option)
        )
        layers = [DepthwiseLayer(name, conv, position[name], len(every)) for name, conv in selected]
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        with torch.no_grad(), single_thread(torch_only=True):
            records = self.init_layers(layers, generator)
        settings: dict[str, Any] = {"seed": int(seed), **self.settings()}
        if name_filter is not None:
            settings["name_filter"] = name_filter
        return self.summary_class(model=label, method=self.name, settings=settings, layers=records)

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self.settings().items())
        return f"{type(self).__name__}({options})"


# --------------------------------------------------------------------------------------------
# helpers for the methods


def layer_stds(weights: list[Tensor]) -> list[float]:
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


def kaiming_std(weight: Tensor, gain: float = KAIMING_GAIN) -> float:
    """std of Kaiming init: gain / sqrt(fan_in), fan_in = (in_channels / groups) * kh * kw."""
    fan_in = weight[0].numel()
    return gain / math.sqrt(fan_in)


def match_std(name: str, std_before: float) -> float:
    """The layer's previous std, refused when it is 0 (nothing to match)."""
    if not std_before > 0:
        raise ConfigError(
            f"scale='match' keeps the layer's previous std, but layer {name!r} has std {std_before} "
            "(all weights equal); use scale='kaiming'"
        )
    return std_before


def check_choice(option: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"unknown {option} {value!r} for this method; choose one of {', '.join(allowed)}")


def write_kernels(weight: Tensor, new: Tensor, rows: Tensor | None = None) -> None:
    """Write kernels ``new [m, kh, kw]`` (or ``[m, kh * kw]``) into ``weight [n, 1, kh, kw]``
    (all rows, or rows ``rows``), in place, keeping the weight's dtype, device and memory format."""
    new = new.reshape(new.shape[0], 1, *weight.shape[2:])
    if rows is None:
        weight.copy_(new)
    else:
        weight.index_copy_(0, rows.to(weight.device), new.to(device=weight.device, dtype=weight.dtype))


def plain_records(
    layers: list[DepthwiseLayer], std_before: list[float], std_after: list[float]
) -> list[LayerInit]:
    """Records of methods that rewrite every kernel and report nothing of their own."""
    return [
        LayerInit(
            name=layer.name,
            kernel_size=tuple(layer.conv.kernel_size),
            n_kernels=layer.conv.weight.shape[0],
            n_initialized=layer.conv.weight.shape[0],
            std_before=before,
            std_after=after,
        )
        for layer, before, after in zip(layers, std_before, std_after)
    ]


__all__ = [
    "KAIMING_GAIN",
    "REGISTRY",
    "DepthwiseLayer",
    "InitMethod",
    "InitSummary",
    "LayerInit",
    "check_choice",
    "kaiming_std",
    "layer_stds",
    "match_std",
    "plain_records",
    "write_kernels",
]
