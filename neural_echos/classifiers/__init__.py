"""Kernel classifiers: on-center, off-center or other, each with its chance share.

One classifier per module of this package, registered by name with :func:`register_classifier`:

- ``template`` (:class:`~neural_echos.classifiers.template.TemplateClassifier`, the default):
  each kernel named by its best template (DoG, derivative of Gaussian, blob, delta);
- ``kmeans`` (:class:`~neural_echos.classifiers.kmeans.KMeansClassifier`): the paper's k-means
  on the normalised kernels (k chosen per kernel size), clusters named by their members, with
  per-kernel labels.

What they share (the evidence of a kernel, the calibrated threshold, the null model and the
result types) is in :mod:`neural_echos.classifiers.base`. To add one: a module here with a
subclass of :class:`~neural_echos.classifiers.base.KernelClassifier` decorated with
``@register_classifier``; every module of the package is imported below, so it is found by name
(``get_classifier``) and by jsonargparse's ``class_path`` (the snapshot callback's
``classifier``).
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from neural_echos.classifiers.base import (
    CLASSES,
    NULL_MODELS,
    CenterSurround,
    Centroid,
    KernelClassifier,
    KernelReport,
    LayerResult,
    center_surround,
    normalise_kernels,
)
from neural_echos.collect import AnalysisError

CLASSIFIERS: dict[str, type[KernelClassifier]] = {}
DEFAULT_CLASSIFIER = "template"


def register_classifier(cls: type[KernelClassifier]) -> type[KernelClassifier]:
    """Class decorator: make ``cls`` available by its ``name``."""
    CLASSIFIERS[cls.name] = cls
    return cls


def get_classifier(name: str = DEFAULT_CLASSIFIER, **settings: Any) -> KernelClassifier:
    """The registered classifier ``name`` built with ``settings``.

    Raises:
        AnalysisError: unknown name, or a setting the classifier does not take.
    """
    if name not in CLASSIFIERS:
        raise AnalysisError(f"unknown method {name!r}; use one of {', '.join(sorted(CLASSIFIERS))}")
    try:
        return CLASSIFIERS[name](**settings)
    except TypeError as err:  # an option of another classifier
        raise AnalysisError(f"classifier {name!r} does not take {sorted(settings)}: {err}") from None


for _module in pkgutil.iter_modules(__path__):  # each module registers its classifiers on import
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

from neural_echos.classifiers.kmeans import KMeansClassifier
from neural_echos.classifiers.template import TemplateClassifier

__all__ = [
    "CLASSES",
    "CLASSIFIERS",
    "DEFAULT_CLASSIFIER",
    "NULL_MODELS",
    "AnalysisError",
    "CenterSurround",
    "Centroid",
    "KMeansClassifier",
    "KernelClassifier",
    "KernelReport",
    "LayerResult",
    "TemplateClassifier",
    "center_surround",
    "get_classifier",
    "normalise_kernels",
    "register_classifier",
]
