"""Finding the depthwise convolutions of a model.

A convolution is depthwise when every input channel has its own filter group
(``groups == in_channels > 1``), each group may have several filters (a channel
multiplier: ``out_channels`` a multiple of ``groups``) and the kernel is spatial
(some kernel side > 1). This covers timm, torchvision and our own models, which all
use ``nn.Conv2d`` (or a subclass such as timm's ``Conv2dSame``) for depthwise layers.
"""

from __future__ import annotations

import re
from typing import TypeVar

from torch import nn

from neural_echos.errors import ConfigError, NeuralEchosError

T = TypeVar("T")


class NoDepthwiseLayersError(NeuralEchosError, ValueError):
    """The model (or the name filter) selects no depthwise convolution."""


def is_depthwise(module: nn.Module) -> bool:
    """True for a 2-D depthwise convolution with a spatial kernel."""
    if not isinstance(module, nn.Conv2d):
        return False
    return (
        module.groups == module.in_channels
        and module.groups > 1
        and module.out_channels % module.groups == 0
        and max(module.kernel_size) > 1
    )


def find_depthwise_convs(
    model: nn.Module, name_filter: str | None = None, model_name: str | None = None, option: str | None = None
) -> list[tuple[str, nn.Conv2d]]:
    """Return ``(qualified_name, conv)`` for every depthwise conv, in module order.

    ``name_filter`` is a regular expression searched (``re.search``) in the qualified
    module name; only matching layers are returned. ``model_name`` only makes error
    messages name the model, ``option`` the option that set ``name_filter``. Raises
    :class:`NoDepthwiseLayersError` when nothing is found, so a caller never silently initialises or analyses nothing.
    """
    label = model_name or type(model).__name__
    found = [(name, m) for name, m in model.named_modules() if is_depthwise(m)]
    if not found:
        raise NoDepthwiseLayersError(
            f"model {label!r} has no depthwise convolution (nn.Conv2d with "
            "groups == in_channels > 1 and a kernel larger than 1x1). DoG initialisation and "
            "kernel analysis need one: pick a depthwise architecture such as convnext_atto, "
            "a ConvMixer, mobilenetv3 or efficientnet."
        )
    return select_by_name(found, name_filter, f"the {len(found)} depthwise layers of {label!r}", option)


def select_by_name(
    items: list[tuple[str, T]], name_filter: str | None, described: str, option: str | None = None
) -> list[tuple[str, T]]:
    """The ``(name, item)`` pairs whose name matches the regular expression ``name_filter``
    (``re.search``); all of them for ``None``. ``described`` names the items in the error
    raised when nothing matches, ``option`` the option that set the filter (``--layers``,
    ``--init.name_filter``...) in both errors."""
    if name_filter is None:
        return items
    what = option or "name filter"
    try:
        pattern = re.compile(name_filter)
    except re.error as err:
        raise ConfigError(f"{what} {name_filter!r} is not a valid regular expression: {err}; fix it") from err
    selected = [(name, item) for name, item in items if pattern.search(name)]
    if not selected:
        examples = ", ".join(name for name, _ in items[:3])
        raise NoDepthwiseLayersError(
            f"{what} {name_filter!r} matches none of {described} (for example: {examples}). "
            f"Fix the regular expression or drop {what}."
        )
    return selected
