"""The direct classifier: every kernel against banks of DoG and derivative-of-Gaussian templates.

Every normalised kernel is correlated with the whole template bank of its size
(:mod:`neural_echos.templates`, one matmul) and takes the template of largest |correlation| r.
If |r| < threshold the kernel is "other"; otherwise its class is the template's family: a DoG
gives "on_center" for r > 0 and "off_center" for r < 0 (if the kernel is antagonistic too, see
:mod:`neural_echos.classifiers.base`), first derivatives "first_derivative", second/mixed
derivatives "second_derivative". The three-way classes count the derivative classes as "other";
``KernelReport.other_explained`` is the share of "other" kernels that a derivative template
explains (the follow-up paper's finding, arXiv 2401.14469). ``families=("dog",)`` gives a
DoG-only direct classifier.

For 3x3 kernels the derivative classes mean little: derivatives of Gaussians span most of the
9-dimensional space, so most noise matches one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from neural_echos.classifiers import register_classifier
from neural_echos.classifiers.base import (
    ANTAGONISM_MIN,
    DEFAULT_ALPHA,
    MIN_THRESHOLD,
    KernelClassifier,
    SizeResult,
    center_surround,
    class_means,
    normalise_kernels,
)
from neural_echos.collect import AnalysisError
from neural_echos.templates import FAMILIES, template_bank

DETAILED_CLASSES = ("on_center", "off_center", "first_derivative", "second_derivative", "other")
_ON, _OFF, _FIRST, _SECOND, _OTHER = range(5)  # indices into DETAILED_CLASSES
_THREE_WAY = np.array([0, 1, 2, 2, 2])  # DETAILED_CLASSES index -> CLASSES index


@register_classifier
class TemplateClassifier(KernelClassifier):
    """Best of a bank of DoG and derivative templates per kernel; see the module docstring.

    Args:
        families: template families, a non-empty subset of ``("dog", "first_derivative",
            "second_derivative")``.
        threshold, alpha, min_threshold, null_model, null_seed: see :class:`KernelClassifier`.
    """

    name = "template"
    detailed_classes = DETAILED_CLASSES

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
        if not families or set(families) - set(FAMILIES):
            raise AnalysisError(f"template families must be a non-empty subset of {FAMILIES}; got {families}")
        super().__init__(threshold, alpha, min_threshold, null_model, null_seed)
        self.families = families

    def own_settings(self) -> dict[str, Any]:
        return {"families": list(self.families)}

    def _best_templates(self, kernels: Tensor) -> tuple[Tensor, Tensor, np.ndarray]:
        """Signed correlation, family and name of every kernel's best template."""
        n = kernels.shape[0]
        bank = template_bank((int(kernels.shape[1]), int(kernels.shape[2])), self.families)
        if len(bank) == 0 or n == 0:  # DoG-only bank on a grid where no DoG fits
            return torch.zeros(n), torch.full((n,), -1), np.full(n, "", dtype=object)
        correlation = normalise_kernels(kernels) @ bank.templates.T  # [n, T] cosines
        best = correlation.abs().argmax(dim=1)
        r = correlation.gather(1, best[:, None]).squeeze(1)
        return r, bank.family[best], bank.names[best.numpy()]

    def strength(self, kernels: Tensor) -> Tensor:
        r, family, _ = self._best_templates(kernels)
        antagonistic = center_surround(kernels).antagonism >= ANTAGONISM_MIN
        return r.abs() * ((family == FAMILIES.index("dog")) & antagonistic)

    def classify_size(self, kernels: Tensor, threshold: float) -> SizeResult:
        size = (int(kernels.shape[1]), int(kernels.shape[2]))
        evidence = center_surround(kernels)
        r, family, names = self._best_templates(kernels)
        strong = r.abs() >= threshold
        is_dog = (family == FAMILIES.index("dog")) & (evidence.antagonism >= ANTAGONISM_MIN)

        detail = torch.full(r.shape, _OTHER, dtype=torch.int64)
        detail[strong & (family == FAMILIES.index("first_derivative"))] = _FIRST
        detail[strong & (family == FAMILIES.index("second_derivative"))] = _SECOND
        detail[strong & is_dog & (r > 0)] = _ON
        detail[strong & is_dog & (r < 0)] = _OFF
        detail = detail.numpy()
        columns = {
            "detailed_class": np.array(DETAILED_CLASSES)[detail],
            "correlation": np.round(r.numpy().astype(np.float64), 4),
            "template": names,
        }
        centroids = class_means(normalise_kernels(kernels), detail, size, DETAILED_CLASSES)
        return SizeResult(_THREE_WAY[detail], evidence, columns, detail, centroids)
