"""What every kernel classifier shares: the center-surround evidence of a kernel, the calibrated
threshold, the null model, and the result types.

Normalisation. Each kernel x (``kh * kw`` values) is divided by its L2 norm, x_hat = x / ||x||_2,
with NO mean subtraction: scale is irrelevant, the sign is kept (an on-center kernel and its
off-center negative sit at opposite points of the unit sphere), and the mean (DC) is kept, so a
constant or blob-like offset counts against a match. All-zero kernels stay zero ("other").

Center-surround evidence of a kernel (:func:`center_surround`):

- score: signed correlation (cosine) of x_hat with the best-matching zero-mean, unit-norm DoG
  template of :mod:`neural_echos.templates`: +1 for a perfect on-center DoG, -1 for off-center;
- antagonism: the paper's DoG has a centre and a surround of opposite signs. Split the best
  template t into its centre part t_C (d < r) and surround part t_S, fit x_hat ~ a_C t_C + a_S t_S
  by least squares (two projections: the parts do not overlap) and take a_S / a_C, with the
  polarity of the score: 1 for a pure DoG, 0 for a point (no surround), negative for a one-signed
  blob, 0 when the centre's sign disagrees with the score. A kernel can be on/off-center only if
  antagonism >= ANTAGONISM_MIN (0.25). Without this test Gaussian blobs (blur kernels) score as
  on-center: a 7x7 blob of sigma 1 px correlates 0.86 with a DoG, since its zero-mean part is
  DoG-shaped and its DC is small. The fitted amplitudes use every pixel of each part with the
  template's weights, so a DoG's surround survives noise far better than with plain sums (DoGs
  plus noise of equal energy: >= 94 % pass at 5x5 and larger, against 83-91 % with sums). A DC
  offset lowers a_S and raises a_C, so it counts against a match here too; see the tests for the
  bound.

Per-kernel taxonomy (:mod:`neural_echos.taxonomy`): every kernel is also named by the template
family it matches best -- on/off-center DoG (antagonistic only), blob, delta, shifted delta,
first derivative (edge), second derivative (bar), or other -- with the same threshold. This is
the kernel's own evidence, the same for every classifier: the detailed classes of a report.

A kernel is on-center when its classifier's rule (best template, k-means cluster, ...) says so
AND its own taxonomy names it on-center (the best template is an on-center DoG with
|r| >= threshold and the kernel is antagonistic); off-center likewise. Everything else is
"other". So an oriented bar is never counted as center-surround when a bar template fits it
better, whatever the classifier.

Threshold. ``threshold="auto"`` (the default) calibrates, per kernel size, against i.i.d.
Gaussian kernels (:data:`CALIBRATION_KERNELS` of them, a fixed seed): the smallest threshold
>= ``min_threshold`` at which at most ``alpha`` of them are on- or off-center by their own
taxonomy (an upper bound for every classifier, since each requires it). It depends only on the
classifier's settings and the kernel size, never on the kernels measured, so the same size is
measured with the same stick at every epoch and in every model. A number fixes the threshold for every size.

Null model (the chance share). Every result is computed twice per kernel size with the same
settings and thresholds: on the kernels, and on null kernels -- ``"permute"`` (default): each
kernel with its pixels randomly permuted (same values, no spatial layout), or ``"gaussian"``:
i.i.d. Gaussian kernels -- drawn from a private generator seeded with ``null_seed``. The share
the null kernels get is the chance share; observed - chance is the excess. A classifier that
fits a model to the kernels (k-means) classifies the null kernels with the model fitted on the
real ones (fit on real, predict on null): re-fitting on the null would let the null form its
own clusters, which are never named on/off, and chance would be 0 by construction. Permuting keeps a
kernel's values, so a sparse kernel whose largest value lands in the centre stays
center-surround-like: for 3x3 kernels (1 pixel in 9 is the centre) the permutation null of
peaked kernels is far from zero, which is exactly what it should say.
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from neural_echos.collect import AnalysisError, LayerKernels, check_finite
from neural_echos.taxonomy import DETAILED_CLASSES, THREE_WAY, Taxonomy, taxonomy
from neural_echos.templates import FAMILIES, template_bank
from neural_echos.threads import single_thread

CLASSES = ("on_center", "off_center", "other")
ON, OFF, OTHER = range(3)  # indices into CLASSES
NULL_MODELS = ("permute", "gaussian")
DEFAULT_ALPHA = 0.05
MIN_THRESHOLD = 0.5
ANTAGONISM_MIN = 0.25
CALIBRATION_KERNELS = 20_000
CALIBRATION_SEED = 20_240_110


def size_label(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


# --------------------------------------------------------------------------------------------
# evidence


def normalise_kernels(kernels: Tensor) -> Tensor:
    """``[n, kh, kw]`` -> ``[n, kh * kw]`` float32 rows x / ||x||_2 (all-zero rows stay zero).

    Each row is first divided by its largest |x|, so that the L2 norm neither overflows (1e30)
    nor underflows (1e-30) in float32: a kernel's class never depends on its scale."""
    flat = kernels.reshape(kernels.shape[0], -1).to(torch.float32)
    flat = flat / flat.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass
class CenterSurround:
    """Per-kernel center-surround evidence (see the module docstring); ``[n]`` tensors."""

    score: Tensor
    antagonism: Tensor


def center_surround(kernels: Tensor) -> CenterSurround:
    """Score and antagonism of each ``[n, kh, kw]`` kernel against its best DoG template.

    Sizes where no DoG fits (2x2) get score 0 and antagonism 0.
    """
    n, kh, kw = kernels.shape
    bank = template_bank((kh, kw), ("dog",))
    if len(bank) == 0 or n == 0:
        return CenterSurround(torch.zeros(n), torch.zeros(n))
    unit = normalise_kernels(kernels)
    correlation = unit @ bank.templates.T  # [n, T] cosines with zero-mean unit DoG templates
    best = correlation.abs().argmax(dim=1)
    score = correlation.gather(1, best[:, None]).squeeze(1)
    # x ~ a_C t_C + a_S t_S: least-squares amplitudes of the best template's centre part t_C and
    # surround part t_S (disjoint supports, so each is one projection); antagonism = a_S / a_C
    template = bank.templates[best]
    centre = bank.centre[best]  # [n, kh * kw] 0/1 masks of the best template's centre
    t_centre, t_surround = template * centre, template * (1 - centre)
    polarity = torch.where(score < 0, -1.0, 1.0)
    a_centre = polarity * (unit * t_centre).sum(1) / (t_centre * t_centre).sum(1).clamp_min(1e-12)
    a_surround = polarity * (unit * t_surround).sum(1) / (t_surround * t_surround).sum(1).clamp_min(1e-12)
    antagonism = torch.where(a_centre > 0, a_surround / a_centre.clamp_min(1e-12), 0.0)
    return CenterSurround(score, antagonism)


# --------------------------------------------------------------------------------------------
# results


@dataclass
class LayerResult:
    """Per-kernel results for one layer, in channel order.

    Attributes:
        name: layer name.
        kernel_size: ``(kh, kw)``.
        label: ``[n]`` int, index into :data:`CLASSES`.
        score: ``[n]`` float, the center-surround score.
        antagonism: ``[n]`` float (see the module docstring).
        null_label: ``[n]`` int, the labels of this layer's null kernels.
        columns: the classifier's own per-kernel columns (``[n]`` arrays), e.g. the k-means
            cluster or the best template; written to the CSVs as they are.
        detail: ``[n]`` int index into :data:`~neural_echos.taxonomy.DETAILED_CLASSES`: each
            kernel's own taxonomy.
        null_detail: ``[n]`` int, the taxonomy of this layer's null kernels.
    """

    name: str
    kernel_size: tuple[int, int]
    label: np.ndarray
    score: np.ndarray
    antagonism: np.ndarray
    null_label: np.ndarray
    detail: np.ndarray
    null_detail: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)


@dataclass
class Centroid:
    """A k-means centroid, or for other classifiers the mean normalised kernel of a class.

    Attributes:
        kernel_size: ``(kh, kw)``.
        index: cluster id (clusters of one size are numbered by decreasing score).
        label: class name (a name of :data:`CLASSES`, or of the detailed classes).
        score: center-surround score of the centroid.
        count: kernels in the cluster (or class).
        weights: ``[kh, kw]`` mean of the normalised kernels.
        passing: members whose own taxonomy gives them the centroid's name (for class means:
            all of them).
    """

    kernel_size: tuple[int, int]
    index: int
    label: str
    score: float
    count: int
    weights: np.ndarray
    passing: int = 0


@dataclass
class Evidence:
    """A kernel stack's own evidence, computed once per kernel size and shared by every rule."""

    unit: Tensor  # [n, kh * kw] L2-normalised kernels
    size: tuple[int, int]
    center_surround: CenterSurround
    taxonomy: Taxonomy


@dataclass
class SizeResult:
    """What a classifier's rule gives for the kernels of one size (internal to classifiers).

    ``model`` is whatever the rule fitted (k-means: the fitted estimator), for classifying the
    null kernels with it; ``notes`` are sentences the report carries (e.g. a polarity that no
    k-means centroid carries).
    """

    label: np.ndarray
    detail: np.ndarray
    evidence: CenterSurround
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    centroids: list[Centroid] = field(default_factory=list)
    model: Any = None
    notes: list[str] = field(default_factory=list)


@dataclass
class KernelReport:
    """Classes of every kernel of a model, with their chance shares, per layer and size.

    Attributes:
        classifier: the classifier's registered name (``kmeans``, ``template``).
        settings: the classifier's settings (what its constructor took).
        thresholds: kernel size label (``"7x7"``) -> threshold used.
        layers: per-layer results.
        centroids: centroids or class means, per size.
        detailed_classes: the taxonomy's classes (:data:`~neural_echos.taxonomy.DETAILED_CLASSES`).
        group: which convolutions: ``"depthwise"`` or ``"regular"``.
        centroid_name: what ``centroids`` are (``"k-means centroids"``, ``"class means"``).
        notes: sentences about the result (e.g. a polarity no k-means centroid carries).
    """

    classifier: str
    settings: dict[str, Any]
    thresholds: dict[str, float]
    layers: list[LayerResult]
    centroids: list[Centroid]
    detailed_classes: tuple[str, ...] = DETAILED_CLASSES
    group: str = "depthwise"
    centroid_name: str = "class means"
    notes: list[str] = field(default_factory=list)

    @property
    def n_kernels(self) -> int:
        return sum(len(layer) for layer in self.layers)

    def counts(self, layers: Sequence[LayerResult] | None = None, null: bool = False) -> dict[str, int]:
        """Kernels per class over ``layers`` (default all), of the kernels or (``null``) their null."""
        layers = self.layers if layers is None else layers
        total = np.zeros(len(CLASSES), dtype=np.int64)
        for layer in layers:
            total += np.bincount(layer.null_label if null else layer.label, minlength=len(CLASSES))
        return dict(zip(CLASSES, total.tolist()))

    def proportions(
        self, layers: Sequence[LayerResult] | None = None, null: bool = False
    ) -> dict[str, float]:
        """Share of each class; the shares sum to 1 (all 0 when there are no kernels)."""
        return _shares(self.counts(layers, null))

    def chance(self, layers: Sequence[LayerResult] | None = None) -> dict[str, float]:
        """Share of each class among the null kernels: what chance gives."""
        return self.proportions(layers, null=True)

    def excess(self, layers: Sequence[LayerResult] | None = None) -> dict[str, float]:
        """Observed minus chance share, per class."""
        observed, chance = self.proportions(layers), self.chance(layers)
        return {name: observed[name] - chance[name] for name in CLASSES}

    def detailed_counts(
        self, layers: Sequence[LayerResult] | None = None, null: bool = False
    ) -> dict[str, int]:
        """Kernels per detailed class over ``layers`` (default all), of the kernels or their null."""
        layers = self.layers if layers is None else layers
        counts = np.zeros(len(self.detailed_classes), dtype=np.int64)
        for layer in layers:
            counts += np.bincount(
                layer.null_detail if null else layer.detail, minlength=len(self.detailed_classes)
            )
        return dict(zip(self.detailed_classes, counts.tolist()))

    def detailed_proportions(
        self, layers: Sequence[LayerResult] | None = None, null: bool = False
    ) -> dict[str, float]:
        """Shares of the detailed classes (of the null kernels with ``null``: their chance shares)."""
        return _shares(self.detailed_counts(layers, null))

    def detailed_chance(self, layers: Sequence[LayerResult] | None = None) -> dict[str, float]:
        """Chance share of each detailed class."""
        return self.detailed_proportions(layers, null=True)

    def explained(self, layers: Sequence[LayerResult] | None = None, null: bool = False) -> float:
        """Share of kernels the taxonomy names (any detailed class but "other")."""
        return 1.0 - self.detailed_proportions(layers, null)["other"] if self._any(layers) else 0.0

    def other_explained(self) -> float | None:
        """Share of the three-way "other" kernels that a detailed class other than "other" names
        (``None`` when nothing is "other")."""
        other = sum(int((layer.label == OTHER).sum()) for layer in self.layers)
        unexplained = sum(
            int(((layer.label == OTHER) & (layer.detail == DETAILED_CLASSES.index("other"))).sum())
            for layer in self.layers
        )
        return (other - unexplained) / other if other else None

    def _any(self, layers: Sequence[LayerResult] | None) -> bool:
        return any(len(layer) for layer in (self.layers if layers is None else layers))

    def layers_by_size(self) -> dict[str, list[LayerResult]]:
        groups: dict[str, list[LayerResult]] = {}
        for layer in self.layers:
            groups.setdefault(size_label(layer.kernel_size), []).append(layer)
        return groups

    def shares(self, layers: Sequence[LayerResult] | None = None) -> dict[str, Any]:
        """``{kernels, proportions, chance, excess}`` over ``layers`` (default all)."""
        layers = self.layers if layers is None else layers
        entry: dict[str, Any] = {
            "kernels": sum(len(layer) for layer in layers),
            "proportions": self.proportions(layers),
            "chance": self.chance(layers),
            "excess": self.excess(layers),
        }
        entry["detailed_proportions"] = self.detailed_proportions(layers)
        entry["detailed_chance"] = self.detailed_chance(layers)
        entry["explained"] = self.explained(layers)
        entry["explained_chance"] = self.explained(layers, null=True)
        return entry

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: settings, thresholds, shares with chance and excess overall, per
        kernel size and per layer, and the centroids."""
        summary: dict[str, Any] = {
            "group": self.group,
            "method": self.classifier,
            "settings": self.settings,
            "thresholds": self.thresholds,
            "classes": list(CLASSES),
            "detailed_classes": list(self.detailed_classes),
            "notes": list(self.notes),
            **self.shares(),
            "counts": self.counts(),
            "other_explained": self.other_explained(),
        }
        summary["by_kernel_size"] = {
            size: {"threshold": self.thresholds[size], **self.shares(layers)}
            for size, layers in self.layers_by_size().items()
        }
        summary["layers"] = [
            {"name": layer.name, "kernel_size": list(layer.kernel_size), **self.shares([layer])}
            for layer in self.layers
        ]
        summary["centroids"] = [
            {
                "kernel_size": list(c.kernel_size),
                "index": c.index,
                "class": c.label,
                "score": round(c.score, 4),
                "kernels": c.count,
                "passing": c.passing,
                "weights": np.round(c.weights, 6).tolist(),
            }
            for c in self.centroids
        ]
        return summary


def _shares(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {name: (count / total if total else 0.0) for name, count in counts.items()}


# --------------------------------------------------------------------------------------------
# the base class


_CALIBRATION_CACHE: dict[tuple, float] = {}


class KernelClassifier(ABC):
    """Base of every kernel classifier: threshold calibration, null model, per-layer results.

    A classifier is one small subclass in its own module of this package, registered with
    :func:`neural_echos.classifiers.register_classifier`. It implements :meth:`classify_size`
    (its rule on the kernels of one size at a given threshold, given their :class:`Evidence`)
    and, if its rule fits a model to the kernels, :meth:`classify_null` (the null kernels
    classified with that model).

    Args:
        threshold: ``"auto"`` (calibrated per kernel size, see the module docstring) or a
            correlation in (0, 1) used for every size.
        alpha: for ``"auto"``: the largest share of i.i.d. Gaussian kernels allowed to be
            on- or off-center, in (0, 1).
        min_threshold: for ``"auto"``: the threshold never goes below this, in (0, 1).
        null_model: the null model of the chance share, ``"permute"`` or ``"gaussian"``.
        null_seed: seed of the null kernels' private generator.
    """

    name: ClassVar[str]
    centroid_name: ClassVar[str] = "class means"  # what the report's centroids are, for pictures
    families: tuple[str, ...] = FAMILIES  # the taxonomy's template families

    def __init__(
        self,
        threshold: float | str = "auto",
        alpha: float = DEFAULT_ALPHA,
        min_threshold: float = MIN_THRESHOLD,
        null_model: str = "permute",
        null_seed: int = 0,
    ):
        if threshold != "auto":
            _check_unit_interval(threshold, "threshold", 'a correlation, or "auto" to calibrate it')
        _check_unit_interval(
            alpha, "alpha", "the share of Gaussian noise kernels allowed to be on/off-center"
        )
        _check_unit_interval(min_threshold, "min_threshold", "the lowest threshold that auto may pick")
        if null_model not in NULL_MODELS:
            raise AnalysisError(f"unknown null model {null_model!r}; use one of {', '.join(NULL_MODELS)}")
        if isinstance(null_seed, bool) or not isinstance(null_seed, (int, np.integer)):
            raise AnalysisError(f"null_seed must be an integer; got {null_seed!r}")
        self.threshold = threshold if threshold == "auto" else float(threshold)
        self.alpha, self.min_threshold = float(alpha), float(min_threshold)
        self.null_model, self.null_seed = null_model, int(null_seed)

    # -- what a subclass provides ---------------------------------------------------------------

    @abstractmethod
    def classify_size(self, evidence: Evidence, threshold: float) -> SizeResult:
        """Labels (and the classifier's own columns and centroids) of the kernels of one size."""

    def classify_null(self, evidence: Evidence, threshold: float, fitted: SizeResult) -> SizeResult:
        """The null kernels' labels; ``fitted`` is the result on the real kernels (a rule that
        fits a model predicts with that model here). Default: the same per-kernel rule."""
        return self.classify_size(evidence, threshold)

    def evidence(self, kernels: Tensor) -> Evidence:
        """Each ``[n, kh, kw]`` kernel's own evidence: center-surround score and taxonomy."""
        size = (int(kernels.shape[1]), int(kernels.shape[2]))
        unit = normalise_kernels(kernels)
        cs = center_surround(kernels)
        return Evidence(unit, size, cs, taxonomy(unit, size, cs.antagonism >= ANTAGONISM_MIN, self.families))

    def strength(self, kernels: Tensor) -> Tensor:
        """``[n]``: the largest threshold at which each kernel is on/off-center by its own taxonomy
        (0: at none). Every rule requires that, so it bounds every classifier's on/off share."""
        return self.evidence(kernels).taxonomy.strength()

    def own_settings(self) -> dict[str, Any]:
        """The subclass's own constructor settings (for reports and the calibration cache)."""
        return {}

    # -- shared machinery -----------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        return {
            **self.own_settings(),
            "threshold": self.threshold,
            "alpha": self.alpha,
            "min_threshold": self.min_threshold,
            "null_model": self.null_model,
            "null_seed": self.null_seed,
        }

    def threshold_for(self, size: tuple[int, int]) -> float:
        """The threshold used for kernels of ``size``: fixed, or calibrated (cached per process)."""
        if self.threshold != "auto":
            return self.threshold
        key = (
            type(self).__qualname__,
            repr(sorted(self.own_settings().items())),
            self.alpha,
            self.min_threshold,
            size,
        )
        if key not in _CALIBRATION_CACHE:
            generator = torch.Generator().manual_seed(CALIBRATION_SEED)
            noise = torch.randn(CALIBRATION_KERNELS, *size, generator=generator)
            with single_thread():
                strength = self.strength(noise)
            _CALIBRATION_CACHE[key] = max(self.min_threshold, _smallest_threshold(strength, self.alpha))
        return _CALIBRATION_CACHE[key]

    def null_kernels(self, kernels: Tensor, generator: torch.Generator) -> Tensor:
        """Null kernels for ``[n, kh, kw]`` kernels: pixels permuted per kernel, or i.i.d. Gaussian."""
        n = kernels.shape[0]
        flat = kernels.reshape(n, -1).to(torch.float32)
        if self.null_model == "gaussian":
            return torch.randn(flat.shape, generator=generator).reshape(kernels.shape)
        order = torch.rand(flat.shape, generator=generator).argsort(dim=1)  # a random permutation per row
        return flat.gather(1, order).reshape(kernels.shape)

    def classify(self, layers: Sequence[LayerKernels], group: str = "depthwise") -> KernelReport:
        """Classify every layer's kernels (one rule application per kernel size) with chance shares.

        Raises:
            AnalysisError: a layer holds NaN or infinite values (naming it).
        """
        check_finite(list(layers), "the kernels to classify")
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, layer in enumerate(layers):
            by_size.setdefault(layer.kernel_size, []).append(i)

        generator = torch.Generator().manual_seed(self.null_seed)
        results: list[LayerResult | None] = [None] * len(layers)
        centroids: list[Centroid] = []
        thresholds: dict[str, float] = {}
        notes: list[str] = []
        for size, indices in by_size.items():
            kernels = torch.cat([layers[i].kernels for i in indices]).to(torch.float32)
            threshold = self.threshold_for(size)
            thresholds[size_label(size)] = threshold
            with single_thread():
                observed = self.classify_size(self.evidence(kernels), threshold)
                null = self.classify_null(
                    self.evidence(self.null_kernels(kernels, generator)), threshold, observed
                )
            centroids.extend(observed.centroids)
            notes.extend(observed.notes)
            start = 0
            for i in indices:
                part = slice(start, start + len(layers[i]))
                results[i] = LayerResult(
                    name=layers[i].name,
                    kernel_size=size,
                    label=observed.label[part],
                    score=observed.evidence.score[part].numpy(),
                    antagonism=observed.evidence.antagonism[part].numpy(),
                    null_label=null.label[part],
                    detail=observed.detail[part],
                    null_detail=null.detail[part],
                    columns={key: values[part] for key, values in observed.columns.items()},
                )
                start = part.stop
        return KernelReport(
            classifier=self.name,
            settings=self.settings(),
            thresholds=thresholds,
            layers=results,
            centroids=centroids,
            group=group,
            centroid_name=self.centroid_name,
            notes=notes,
        )

    def classify_kernels(self, kernels: Tensor) -> KernelReport:
        """Classify one ``[n, kh, kw]`` stack (reported as one layer named "kernels")."""
        return self.classify([LayerKernels(name="kernels", key="kernels", kernels=kernels)])

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.settings().items())
        return f"{type(self).__name__}({settings})"


def _smallest_threshold(strength: Tensor, alpha: float) -> float:
    """The smallest t with mean(strength >= t) <= alpha."""
    n = strength.numel()
    allowed = int(np.floor(alpha * n))  # kernels allowed at or above t
    if allowed >= n:
        return 0.0
    ranked = torch.sort(strength.double(), descending=True).values
    # every kernel strictly above the (allowed + 1)-th largest strength passes; that one must not
    return float(np.nextafter(float(ranked[allowed]), np.inf))


def _check_unit_interval(value: Any, name: str, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise AnalysisError(f"{name} is {what} and must lie strictly between 0 and 1; got {value!r}")


def class_means(
    unit: Tensor, classes: np.ndarray, size: tuple[int, int], names: Sequence[str]
) -> list[Centroid]:
    """Mean normalised kernel of every non-empty class (``classes``: index into ``names``), for display."""
    index = torch.from_numpy(np.asarray(classes)).long()
    counts = torch.bincount(index, minlength=len(names))
    sums = torch.zeros(len(names), unit.shape[1]).index_add_(0, index, unit)
    present = torch.nonzero(counts).squeeze(1)
    means = sums[present] / counts[present, None]
    scores = center_surround(means.reshape(-1, *size)).score
    return [
        Centroid(
            size, int(c), names[int(c)], float(s), int(counts[c]), m.reshape(size).numpy(), int(counts[c])
        )
        for c, s, m in zip(present, scores, means)
    ]


def three_way(detail: np.ndarray) -> np.ndarray:
    """Detailed class indices -> :data:`CLASSES` indices (on, off, everything else other)."""
    return THREE_WAY[np.asarray(detail)]
