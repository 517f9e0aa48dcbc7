"""The direct classifier (the default): every kernel named by its best template.

Each kernel takes its own taxonomy (:mod:`neural_echos.taxonomy`): the best of a bank of DoG,
derivative-of-Gaussian, blob and delta templates (:mod:`neural_echos.templates`, one matmul),
if its |correlation| reaches the threshold. A DoG names only an antagonistic kernel, positive
correlation on-center, negative off-center; the three-way classes count every other family as
"other". Both polarities are read kernel by kernel, so neither can be lost to a clustering, and a
bar is a bar when a bar template fits it better than a DoG.

``families`` restricts the bank: ``families: [dog]`` gives a DoG-only direct classifier (then a
bar that correlates with a DoG above the threshold is counted on/off-center).

For 3x3 kernels the derivative classes mean little: derivatives of Gaussians, blobs and deltas
span most of the 9-dimensional space, so most noise matches one (read each share beside its
chance share).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neural_echos.classifiers import register_classifier
from neural_echos.classifiers.base import (
    DEFAULT_ALPHA,
    MIN_THRESHOLD,
    Evidence,
    KernelClassifier,
    SizeResult,
    class_means,
    three_way,
)
from neural_echos.collect import AnalysisError
from neural_echos.taxonomy import DETAILED_CLASSES
from neural_echos.templates import FAMILIES


@register_classifier
class TemplateClassifier(KernelClassifier):
    """Each kernel's best template; see the module docstring.

    Args:
        families: template families, a subset of :data:`neural_echos.templates.FAMILIES`
            (``dog``, ``first_derivative``, ``second_derivative``, ``blob``, ``delta``,
            ``shifted_delta``) that includes ``dog``.
        threshold, alpha, min_threshold, null_model, null_seed: see :class:`KernelClassifier`.
    """

    name = "template"

    def __init__(
        self,
        families: tuple[str, ...] = FAMILIES,
        threshold: float | str = "auto",
        alpha: float = DEFAULT_ALPHA,
        min_threshold: float = MIN_THRESHOLD,
        null_model: str = "permute",
        null_seed: int = 0,
    ):
        families = tuple(families)
        if "dog" not in families or set(families) - set(FAMILIES):
            raise AnalysisError(
                f"template families must be a subset of {FAMILIES} with 'dog' in it; got {families}"
            )
        super().__init__(threshold, alpha, min_threshold, null_model, null_seed)
        self.families = families

    def own_settings(self) -> dict[str, Any]:
        return {"families": list(self.families)}

    def classify_size(self, evidence: Evidence, threshold: float) -> SizeResult:
        taxonomy = evidence.taxonomy
        detail = taxonomy.detail(threshold).numpy()
        columns = {
            "correlation": np.round(taxonomy.correlation.numpy().astype(np.float64), 4),
            "template": taxonomy.template,
        }
        centroids = class_means(evidence.unit, detail, evidence.size, DETAILED_CLASSES)
        return SizeResult(three_way(detail), detail, evidence.center_surround, columns, centroids)
