"""Follow each depthwise kernel through training: class transitions, drift, and a population signal.

Pure torch/numpy (no Lightning); :mod:`callbacks.kernel_tracking` logs what this computes,
:mod:`neural_echos.tools.compare` writes it for two checkpoints.

Transitions. A kernel's class (a :data:`~neural_echos.taxonomy.DETAILED_CLASSES` index, or a
three-way one) at two moments gives one count in a matrix: row = class before, column = class
after. Row sums are the class counts before, column sums the counts after, and the diagonal is
the kernels that kept their class. :func:`transition_summary` reads three shares off it, each of
all kernels and each beside its chance share, the share expected if every kernel's later class
were drawn independently of its earlier one with the same class shares (independence, i.e. the
product of the marginals):

- ``retained``: kept its class; chance ``sum_c p_before(c) p_after(c)``;
- ``gained``: on/off-center after, not before (became center-surround); chance
  ``p_after(on|off) (1 - p_before(on|off))``;
- ``lost``: on/off-center before, not after (left center-surround); chance
  ``p_before(on|off) (1 - p_after(on|off))``.

Drift (:func:`drift`), per layer, of the kernels ``W`` against the same kernels ``W0`` earlier
(at init): the median over kernels of the cosine distance ``1 - cos(w, w0)`` (0: the same
direction, whatever the scale; 1: orthogonal; 2: sign-flipped), the relative norm change
``||W|| / ||W0|| - 1`` (Frobenius norms over the layer: growth or decay, which weight decay
drives) and the relative distance ``||W - W0|| / ||W0||``.

Population signal (:func:`population_signal`). A center-surround component shared by many
kernels can form under init noise long before single kernels pass the classifier's threshold
(after the quickstart's 10 epochs from timm's init, one k-means centroid of 593 7x7 kernels
scored +0.87 on-center while 3.4 % of the kernels passed on their own). Two statistics of a
layer's (or a kernel size's) population, each against the same statistic of its pixel-permuted
null (every kernel's pixels shuffled: same values, no spatial layout), drawn ``draws`` times
from a private seeded generator, so that it comes with a mean and a spread:

- ``mean_score``: the mean signed DoG score (cosine with the best DoG template, as in
  :func:`neural_echos.classifiers.base.center_surround`): > 0 when on-center shapes
  outweigh off-center ones; i.i.d. noise and its null sit at 0;
- ``dog_energy``: the share of the population's second moment along the best single DoG
  template, ``max_t mean_i (u_i . t)^2`` over the L2-normalised kernels ``u_i`` and the
  zero-mean unit DoG templates ``t``. It sees a shared component of either sign; for
  isotropic noise it is about ``1 / (kh kw)`` plus the max over templates, and so is its null.

``z = (observed - null mean) / null std`` says how far the population is from chance; a z of a
few units is the emergence no per-kernel share shows yet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from neural_echos.classifiers.base import center_surround, normalise_kernels
from neural_echos.taxonomy import DETAILED_CLASSES, OFF, ON
from neural_echos.templates import template_bank

CENTER_SURROUND = (ON, OFF)  # detailed class indices of on- and off-center
NULL_DRAWS = 8
NULL_SEED = 0


# --------------------------------------------------------------------------------------------
# transitions


def transition_matrix(
    before: np.ndarray, after: np.ndarray, n_classes: int = len(DETAILED_CLASSES)
) -> np.ndarray:
    """``[n_classes, n_classes]`` int64 counts: kernels of class ``i`` before and ``j`` after.

    ``before`` and ``after``: the same kernels' class indices, in the same order."""
    before, after = np.asarray(before, dtype=np.int64), np.asarray(after, dtype=np.int64)
    if before.shape != after.shape:
        raise ValueError(
            f"transitions need the same kernels twice; got {before.shape[0]} and {after.shape[0]} kernels"
        )
    return np.bincount(before * n_classes + after, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def row_shares(matrix: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (where a row is empty: zeros): where each class went."""
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape, dtype=np.float64), where=totals > 0)


@dataclass
class TransitionSummary:
    """Shares of all kernels (see the module docstring), each with its chance share."""

    kernels: int
    retained: float
    retained_chance: float
    gained: float
    gained_chance: float
    lost: float
    lost_chance: float

    def as_dict(self) -> dict[str, float]:
        return {
            name: float(getattr(self, name))
            for name in ("retained", "retained_chance", "gained", "gained_chance", "lost", "lost_chance")
        }


def transition_summary(
    matrix: np.ndarray, center_surround_classes: tuple[int, ...] = CENTER_SURROUND
) -> TransitionSummary:
    """Retained, gained and lost shares of a transition matrix, with their independence chance."""
    total = int(matrix.sum())
    if total == 0:
        return TransitionSummary(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    before, after = matrix.sum(axis=1) / total, matrix.sum(axis=0) / total
    is_cs = np.zeros(matrix.shape[0], dtype=bool)
    is_cs[list(center_surround_classes)] = True
    cs_before, cs_after = before[is_cs].sum(), after[is_cs].sum()
    return TransitionSummary(
        kernels=total,
        retained=np.trace(matrix) / total,
        retained_chance=float((before * after).sum()),
        gained=matrix[~is_cs][:, is_cs].sum() / total,
        gained_chance=float(cs_after * (1 - cs_before)),
        lost=matrix[is_cs][:, ~is_cs].sum() / total,
        lost_chance=float(cs_before * (1 - cs_after)),
    )


def change_word(first: int, now: int) -> str:
    """How a kernel's detailed class moved since the first projection."""
    if first == now:
        return "kept"
    was, is_ = first in CENTER_SURROUND, now in CENTER_SURROUND
    return "gained on/off" if is_ and not was else "lost on/off" if was and not is_ else "changed"


# --------------------------------------------------------------------------------------------
# drift


def cosine_distance(kernels: Tensor, reference: Tensor) -> Tensor:
    """``[n]``: ``1 - cos`` between each ``[n, kh, kw]`` kernel and its reference (0 for a kernel
    equal to its reference, also when both are zero; 1 when exactly one of them is zero)."""
    unit, unit_ref = normalise_kernels(kernels), normalise_kernels(reference)
    cos = (unit * unit_ref).sum(dim=1)
    both_zero = (unit.abs().sum(1) == 0) & (unit_ref.abs().sum(1) == 0)
    return torch.where(both_zero, 0.0, 1.0 - cos).clamp(0.0, 2.0)


@dataclass
class Drift:
    """How far one layer's kernels moved from a reference (see the module docstring)."""

    cosine_distance: float  # median over kernels
    norm_change: float  # ||W|| / ||W0|| - 1
    relative_distance: float  # ||W - W0|| / ||W0||


def drift(kernels: Tensor, reference: Tensor) -> Drift:
    """Drift of ``[n, kh, kw]`` kernels from the same kernels ``reference`` (e.g. at init)."""
    if kernels.shape != reference.shape:
        raise ValueError(
            "drift needs the same kernels twice; got shapes "
            f"{tuple(kernels.shape)} and {tuple(reference.shape)}"
        )
    kernels, reference = kernels.double(), reference.double()
    if kernels.shape[0] == 0:
        return Drift(0.0, 0.0, 0.0)
    norm_ref = float(reference.norm())
    if norm_ref == 0:  # a zero reference: any change is infinite, no change is 0
        change = 0.0 if float(kernels.norm()) == 0 else float("inf")
        return Drift(float(cosine_distance(kernels, reference).median()), change, change)
    return Drift(
        cosine_distance=float(cosine_distance(kernels, reference).median()),
        norm_change=float(kernels.norm()) / norm_ref - 1.0,
        relative_distance=float((kernels - reference).norm()) / norm_ref,
    )


# --------------------------------------------------------------------------------------------
# population signal


@dataclass
class PopulationSignal:
    """A population statistic, its permuted null (mean and standard deviation over draws) and z."""

    observed: float
    null_mean: float
    null_std: float

    @property
    def excess(self) -> float:
        return self.observed - self.null_mean

    @property
    def z(self) -> float:
        # the null's spread has a floor (1e-6) so that a degenerate null (all-equal pixels) gives a finite z
        return self.excess / max(self.null_std, 1e-6)


def mean_dog_score(kernels: Tensor) -> float:
    """Mean signed DoG score of ``[n, kh, kw]`` kernels (0 where no DoG fits or none given)."""
    if kernels.shape[0] == 0:
        return 0.0
    return float(center_surround(kernels).score.double().mean())


def dog_energy(kernels: Tensor) -> float:
    """Share of the second moment of the L2-normalised kernels along the best DoG template."""
    n, kh, kw = kernels.shape
    bank = template_bank((kh, kw), ("dog",))
    if n == 0 or len(bank) == 0:
        return 0.0
    unit = normalise_kernels(kernels).double()
    projections = unit @ bank.templates.double().T  # [n, T]
    return float((projections**2).mean(dim=0).max())


def permuted(kernels: Tensor, generator: torch.Generator) -> Tensor:
    """Each kernel's pixels shuffled by its own random permutation."""
    n = kernels.shape[0]
    flat = kernels.reshape(n, -1).to(torch.float32)
    order = torch.rand(flat.shape, generator=generator).argsort(dim=1)
    return flat.gather(1, order).reshape(kernels.shape)


def population_signal(
    kernels: Tensor, draws: int = NULL_DRAWS, seed: int = NULL_SEED
) -> dict[str, PopulationSignal]:
    """``{"mean_score": ..., "dog_energy": ...}`` of ``[n, kh, kw]`` kernels against ``draws``
    pixel-permuted nulls from a generator seeded with ``seed`` (the global RNG is untouched)."""
    if draws < 2:
        raise ValueError(f"population_signal needs at least 2 null draws for a spread; got {draws}")
    kernels = kernels.to(torch.float32)
    generator = torch.Generator().manual_seed(seed)
    statistics = {"mean_score": mean_dog_score, "dog_energy": dog_energy}
    nulls = {name: [] for name in statistics}
    for _ in range(draws):
        null = permuted(kernels, generator)
        for name, statistic in statistics.items():
            nulls[name].append(statistic(null))
    return {
        name: PopulationSignal(
            statistic(kernels), float(np.mean(nulls[name])), float(np.std(nulls[name], ddof=1))
        )
        for name, statistic in statistics.items()
    }


__all__ = [
    "CENTER_SURROUND",
    "Drift",
    "PopulationSignal",
    "TransitionSummary",
    "change_word",
    "cosine_distance",
    "dog_energy",
    "drift",
    "mean_dog_score",
    "permuted",
    "population_signal",
    "row_shares",
    "transition_matrix",
    "transition_summary",
]
