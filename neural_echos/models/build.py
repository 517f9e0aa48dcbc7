"""Building a timm model from scratch by name, with errors that say what to fix (no Lightning).

Used by the LightningModule (``lightning_modules.ImageClassifier``) and by ``run.py analyze`` to
rebuild the model of one of our checkpoints from its hyper-parameters.
"""

from __future__ import annotations

import difflib
from typing import Any

import timm
import torch
from torch import nn

import neural_echos.models  # noqa: F401  (registers HorNet and ConvMixer with timm)
from neural_echos.errors import ConfigError, one_line


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
    model = _create(model_name, num_classes, in_chans, image_size, kwargs)
    if image_size is not None:
        _check_forward(model, model_name, kwargs, in_chans, image_size)
    return model


# What a model's constructor or forward raises for settings that do not fit together, e.g.
# ConvNeXt's kernel_sizes=4 (an even kernel breaks the residual's shape), 0, -1 or a list of the
# wrong length. timm does not validate model_kwargs, so we turn these into one ConfigError.
_BUILD_ERRORS = (RuntimeError, ValueError, IndexError, AssertionError, ZeroDivisionError)


def _create(
    model_name: str, num_classes: int, in_chans: int, image_size: int | None, kwargs: dict
) -> nn.Module:
    try:
        if image_size is not None and "img_size" not in kwargs:
            # Models with position embeddings or global filters need the input size; most CNNs
            # take no img_size argument, and timm offers no way to ask first, so try and fall back.
            try:
                return timm.create_model(
                    model_name,
                    pretrained=False,
                    num_classes=num_classes,
                    in_chans=in_chans,
                    img_size=image_size,
                    **kwargs,
                )
            except TypeError as err:
                if "img_size" not in str(err):
                    raise _bad_kwargs(model_name, kwargs, err) from err
        return timm.create_model(
            model_name, pretrained=False, num_classes=num_classes, in_chans=in_chans, **kwargs
        )
    except TypeError as err:
        raise _bad_kwargs(model_name, kwargs, err) from err
    except _BUILD_ERRORS as err:
        raise ConfigError(
            f"timm cannot build model {model_name!r} with model_kwargs {kwargs}: {one_line(err, 300)}. "
            "Check the values in model_kwargs (e.g. kernel sizes: odd, positive, one per stage)."
        ) from err


def _check_forward(model: nn.Module, model_name: str, kwargs: dict, in_chans: int, image_size: int) -> None:
    """One forward pass of a zero image in eval mode, so that settings that only fail at run time
    (an even kernel size) fail here with what to fix, not deep inside Lightning's first step.
    Uses no random numbers and leaves the model's mode and buffers as they were."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, image_size, image_size))
    except _BUILD_ERRORS as err:
        raise ConfigError(
            f"timm model {model_name!r} with model_kwargs {kwargs} fails on a {in_chans}x{image_size}x{image_size} "
            f"input: {one_line(err, 300)}. Check model_kwargs (e.g. kernel sizes must be odd) and data.image_size."
        ) from err
    finally:
        model.train(was_training)


def _bad_kwargs(model_name: str, kwargs: dict, err: TypeError) -> ConfigError:
    # name only the keys the TypeError names ("got an unexpected keyword argument 'x'"), not every key given
    named = [key for key in sorted(kwargs) if f"'{key}'" in str(err)]
    return ConfigError(
        f"timm model {model_name!r} does not accept model_kwargs {named or sorted(kwargs)}: {err}. "
        "Check the argument names of the model's class in timm (e.g. timm.models.convnext.ConvNeXt)."
    )
