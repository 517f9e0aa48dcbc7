"""The kernel taxonomy: every kernel named by the template family it matches best.

Classes (:data:`DETAILED_CLASSES`), beside the paper's on/off-center:

- ``on_center`` / ``off_center``: a Difference-of-Gaussians (the OOCS form of "Neural Echos",
  arXiv 2401.10178), positive or negative correlation, AND antagonistic (a surround of the
  opposite sign, see :func:`neural_echos.classifiers.base.center_surround`);
- ``blob``: a one-signed Gaussian (blur), either sign;
- ``delta``: the identity kernel (one pixel at the centre), either sign;
- ``shifted_delta``: one pixel off the centre (a whole-pixel shift), either sign;
- ``first_derivative``: an oriented first derivative of a Gaussian (edge);
- ``second_derivative``: an oriented second or mixed derivative of a Gaussian (bar, cross);
- ``other``: no template reaches the threshold.

Rule, per kernel x (L2-normalised, mean kept): its cosine r with every template of
:mod:`neural_echos.templates`; the template of largest |r| names it if |r| >= threshold. A DoG
template may name only an antagonistic kernel: for a kernel with no opposite-sign surround (a
delta, a blob) the DoG templates are left out and the best other template names it. So an
oriented bar, which correlates up to 0.83 with a DoG, is a bar when a bar template fits it
better, and a delta, which correlates 0.99 with a point-centred zero-mean DoG, is a delta.

The derivative families come from the follow-up paper ("Unveiling the Unseen", arXiv
2401.14469: > 90 % of ConvNeXt kernels are DoG or derivative patterns); blobs and deltas are
what trained 3x3 depthwise kernels mostly are, and what the master-key-filter papers (arXiv
2412.16751, 2509.12746) find among the 8 universal ConvNeXt V2 filters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neural_echos.templates import FAMILIES, template_bank

DETAILED_CLASSES = (
    "on_center",
    "off_center",
    "blob",
    "delta",
    "shifted_delta",
    "first_derivative",
    "second_derivative",
    "other",
)
ON, OFF, OTHER = 0, 1, DETAILED_CLASSES.index("other")
# template family -> detailed class (DoGs split by sign into ON / OFF)
FAMILY_CLASS = {family: DETAILED_CLASSES.index(family) for family in FAMILIES if family != "dog"}
# detailed class -> three-way class index (0 on, 1 off, 2 other)
THREE_WAY = np.array([0, 1] + [2] * (len(DETAILED_CLASSES) - 2))


@dataclass
class Taxonomy:
    """The best template of ``n`` kernels: ``[n]`` tensors and arrays.

    Attributes:
        named: int64 index into :data:`DETAILED_CLASSES`: the class of the best template,
            whatever its correlation (:meth:`detail` applies the threshold).
        correlation: signed cosine with the best template.
        template: the best template's name (``""`` where the bank is empty).
    """

    named: Tensor
    correlation: Tensor
    template: np.ndarray

    def detail(self, threshold: float) -> Tensor:
        """``[n]`` detailed classes: the best template's class where |r| >= threshold, else other."""
        return torch.where(self.correlation.abs() >= threshold, self.named, OTHER)

    def strength(self) -> Tensor:
        """``[n]``: the largest threshold at which each kernel is on/off-center (0: at none)."""
        return self.correlation.abs() * (self.named <= OFF)


def taxonomy(
    unit: Tensor, size: tuple[int, int], antagonistic: Tensor, families: tuple[str, ...] = FAMILIES
) -> Taxonomy:
    """The best template of each ``[n, kh * kw]`` L2-normalised kernel of ``size`` (see the module
    docstring). ``antagonistic``: ``[n]`` bool, the kernels with an opposite-sign surround (only
    they may be named by a DoG template)."""
    n = unit.shape[0]
    bank = template_bank(size, families)
    if len(bank) == 0 or n == 0:
        return Taxonomy(
            torch.full((n,), OTHER, dtype=torch.int64), torch.zeros(n), np.full(n, "", dtype=object)
        )
    correlation = unit @ bank.templates.T  # [n, T] cosines
    is_dog = bank.family == FAMILIES.index("dog")
    # a DoG template names only an antagonistic kernel; the others fall to their best other template
    allowed = correlation.abs() * ~(is_dog[None, :] & ~antagonistic[:, None])
    best = allowed.argmax(dim=1)
    r = correlation.gather(1, best[:, None]).squeeze(1)
    family = bank.family[best]
    named = torch.full((n,), OTHER, dtype=torch.int64)
    for fam, cls in FAMILY_CLASS.items():
        named[family == FAMILIES.index(fam)] = cls
    dog = family == FAMILIES.index("dog")
    named[dog & (r > 0)] = ON
    named[dog & (r <= 0)] = OFF
    return Taxonomy(named, r, bank.names[best.numpy()])


__all__ = ["DETAILED_CLASSES", "THREE_WAY", "Taxonomy", "taxonomy"]
