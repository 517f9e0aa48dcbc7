"""Building a timm model from scratch by name, with errors that say what to fix (no Lightning).

Used by the LightningModule (``lightning_modules.ImageClassifier``) and by ``run.py analyze`` to
rebuild the model of one of our checkpoints from its hyper-parameters.
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
from torch import nn

import models  # noqa: F401  (registers HorNet and ConvMixer with timm)
from neural_echos.errors import ConfigError


def build_timm_model(
    model_name: str,
    num_classes: int,
    in_chans: int = 3,
    image_size: int | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """``timm.create_model`` from scratch (no pretrained weights), with errors that say what to fix."""
    kwargs = dict(model_kwargs or {})
    for reserved in ("num_classes", "in_chans", "pretrained"):
        if reserved in kwargs:
            raise ConfigError(
                f"model_kwargs must not set {reserved!r}: it comes from the DataModule "
                "(num_classes, in_chans) or is fixed (training from scratch)"
            )
    if model_name not in timm.list_models():
        close = difflib.get_close_matches(model_name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown timm model {model_name!r}.{hint} List names with "
            "`python -c \"import timm, models; print(timm.list_models('convnext*'))\"`."
        )
    if image_size is not None and "img_size" not in kwargs:
        # Models with position embeddings or global filters need the input size; most CNNs
        # take no img_size argument, and timm offers no way to ask first, so try and fall back.
        try:
            return timm.create_model(model_name, pretrained=False, num_classes=num_classes, in_chans=in_chans, img_size=image_size, **kwargs)
        except TypeError as err:
            if "img_size" not in str(err):
                raise _bad_kwargs(model_name, kwargs, err) from err
    try:
        return timm.create_model(model_name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as err:
        raise _bad_kwargs(model_name, kwargs, err) from err


def _bad_kwargs(model_name: str, kwargs: dict, err: TypeError) -> ConfigError:
    return ConfigError(
        f"timm model {model_name!r} does not accept model_kwargs {sorted(kwargs)}: {err}. "
        "Check the argument names of the model's class in timm (e.g. timm.models.convnext.ConvNeXt)."
    )
