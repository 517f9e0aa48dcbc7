"""Classify depthwise kernels as on-center, off-center or other, two ways.

Normalisation (both methods). Each kernel x (``kh * kw`` values) is divided by its L2 norm,
x_hat = x / ||x||_2, with NO mean subtraction:

- the scale of a kernel is irrelevant, its sign is kept: an on-center kernel and its off-center
  negative sit at opposite points of the unit sphere (distance 2), so k-means separates them;
- the mean (DC) is kept, so a constant or blob-like offset counts against a center-surround
  match. All templates are zero-mean, so x_hat . t is the uncentred correlation (cosine) of
  the kernel with the template; only the kernel's zero-mean part can match, and a kernel that
  is mostly DC scores low. A kernel peaked at its centre pixel scores high as on-center (a
  DoG with a thin surround is close to a point).
- all-zero kernels stay zero: correlation 0, class "other".

Center-surround score of a kernel (or centroid): its correlation with the best-matching DoG
template of :mod:`neural_echos.templates`, signed: +1 for a perfect on-center DoG, -1 for a
perfect off-center one.

Method "kmeans" (the paper's, Babaiee et al. arXiv 2401.10178): k-means (default k = 3) on the
normalised kernels, one clustering per kernel size (kernels of different sizes live in
different spaces; resampling would change their shapes). scikit-learn ``KMeans`` with
k-means++ seeding, ``n_init=3`` and ``random_state=seed``: deterministic, and it draws nothing
from numpy's or torch's global random state (all classification runs on one thread, see
:func:`single_thread`). Naming rule, for any k: a cluster whose
centroid's center-surround score is >= threshold is "on_center", <= -threshold "off_center",
otherwise "other". Several clusters may share a name (k > 3, or two clusters of on-center
kernels of different widths), and there may be no on- or off-center cluster at all (random
kernels). Clusters are numbered by decreasing score, so cluster ids and names are stable from
epoch to epoch and between runs. Note: k-means cannot keep oriented second derivatives (bars)
apart from DoGs: their correlation can reach 0.83 (G_uu . LoG = 4 / sqrt(24) for Gaussians).

Method "template" (direct): correlate every normalised kernel with the whole template bank
(one matmul) and take the template of largest |correlation| r. If |r| < threshold the kernel is
"other"; otherwise its class is the template's family: DoG gives "on_center" for r > 0 and
"off_center" for r < 0, first derivatives "first_derivative", second/mixed derivatives
"second_derivative". The three-way proportions count the derivative classes as "other";
``other_explained`` is the share of "other" kernels that a derivative template explains (the
follow-up paper's finding, arXiv 2401.14469). Families may be restricted to ``("dog",)`` for a
DoG-only direct classifier.

Default threshold 0.5. For 7x7 kernels of i.i.d. Gaussian noise (random initialisation) fewer
than 1 % reach 0.5 with any template, while DoGs with noise of equal energy still reach ~0.9.
Small kernels have few dimensions, so chance matches grow: at 5x5 ~20 % of noise matches some
template and ~3 % a DoG; at 3x3 most noise matches some template (derivatives of Gaussians span
most of the 9-dimensional space), so "first/second_derivative" means little for 3x3 kernels.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from neural_echos.collect import AnalysisError, LayerKernels
from neural_echos.templates import FAMILIES, template_bank
from neural_echos.threads import single_thread  # re-exported: classify.single_thread

CLASSES = ("on_center", "off_center", "other")
DETAILED_CLASSES = ("on_center", "off_center", "first_derivative", "second_derivative", "other")
METHODS = ("kmeans", "template")
DEFAULT_METHOD = "kmeans"
DEFAULT_CLUSTERS = 3
DEFAULT_THRESHOLD = 0.5
DEFAULT_SEED = 0
KMEANS_N_INIT = 3

_ON, _OFF, _FIRST, _SECOND, _OTHER = range(5)  # indices into DETAILED_CLASSES
_THREE_WAY = np.array([0, 1, 2, 2, 2])  # DETAILED_CLASSES index -> CLASSES index


@dataclass
class LayerResult:
    """Per-kernel results for one layer, in channel order.

    Attributes:
        name: layer name.
        kernel_size: ``(kh, kw)``.
        category: ``[n]`` int, index into ``KernelReport.categories``.
        score: ``[n]`` float. "template": signed correlation with the best template; "kmeans":
            the kernel's center-surround score.
        template: ``[n]`` names of the best templates ("template" method), else ``None``.
        cluster: ``[n]`` cluster ids ("kmeans" method; per kernel size), else ``None``.
    """

    name: str
    kernel_size: tuple[int, int]
    category: np.ndarray
    score: np.ndarray
    template: np.ndarray | None = None
    cluster: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.category)


@dataclass
class Centroid:
    """A k-means centroid, or for the "template" method the mean normalised kernel of a class.

    Attributes:
        kernel_size: ``(kh, kw)``.
        index: cluster id (clusters of one size are numbered by decreasing score).
        category: class name.
        score: center-surround score of the centroid.
        count: kernels in the cluster (or class).
        weights: ``[kh, kw]`` mean of the normalised kernels.
    """

    kernel_size: tuple[int, int]
    index: int
    category: str
    score: float
    count: int
    weights: np.ndarray


@dataclass
class KernelReport:
    """Classes of every kernel of a model, with proportions and centroids."""

    method: str
    categories: tuple[str, ...]
    threshold: float
    layers: list[LayerResult]
    centroids: list[Centroid]
    n_clusters: int | None = None
    seed: int | None = None
    families: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_kernels(self) -> int:
        return sum(len(layer) for layer in self.layers)

    def counts(self, detailed: bool = False, layers: Sequence[LayerResult] | None = None) -> dict[str, int]:
        """Kernels per class over ``layers`` (default all); three-way unless ``detailed``."""
        layers = self.layers if layers is None else layers
        names = self.categories if detailed else CLASSES
        total = np.zeros(len(names), dtype=np.int64)
        for layer in layers:
            category = layer.category if detailed else self._three_way(layer.category)
            total += np.bincount(category, minlength=len(names))
        return dict(zip(names, total.tolist()))

    def proportions(
        self, detailed: bool = False, layers: Sequence[LayerResult] | None = None
    ) -> dict[str, float]:
        """Share of each class over ``layers`` (default all); the shares sum to 1 (all 0 if empty)."""
        counts = self.counts(detailed, layers)
        total = sum(counts.values())
        return {name: (count / total if total else 0.0) for name, count in counts.items()}

    def proportions_by_layer(self, detailed: bool = False) -> dict[str, dict[str, float]]:
        """Layer name -> class shares."""
        return {layer.name: self.proportions(detailed, [layer]) for layer in self.layers}

    def proportions_by_size(self, detailed: bool = False) -> dict[str, dict[str, float]]:
        """``"7x7"`` -> class shares over all layers of that kernel size."""
        groups = self._layers_by_size().items()
        return {_size_label(size): self.proportions(detailed, layers) for size, layers in groups}

    def other_explained(self) -> float | None:
        """Share of three-way "other" kernels that match a derivative template ("template" method).

        ``None`` for k-means, for a bank without derivative families, or when nothing is "other".
        """
        if self.method != "template" or not set(self.families) & {"first_derivative", "second_derivative"}:
            return None
        counts = self.counts(detailed=True)
        explained = counts["first_derivative"] + counts["second_derivative"]
        other = explained + counts["other"]
        return explained / other if other else None

    def to_dict(self) -> dict:
        """JSON-ready summary: settings, counts and proportions overall / per size / per layer, centroids."""
        detailed = self.method == "template"
        summary: dict = {
            "method": self.method,
            "threshold": self.threshold,
            "kernels": self.n_kernels,
            "classes": list(CLASSES),
            "proportions": self.proportions(),
            "counts": self.counts(),
        }
        if self.method == "kmeans":
            summary.update(n_clusters=self.n_clusters, seed=self.seed)
        if detailed:
            summary.update(
                families=list(self.families),
                detailed_classes=list(self.categories),
                detailed_proportions=self.proportions(detailed=True),
                detailed_counts=self.counts(detailed=True),
                other_explained=self.other_explained(),
            )
        summary["by_kernel_size"] = {}
        for size, layers in self._layers_by_size().items():
            entry = {
                "kernels": sum(len(layer) for layer in layers),
                "proportions": self.proportions(False, layers),
            }
            if detailed:
                entry["detailed_proportions"] = self.proportions(True, layers)
            summary["by_kernel_size"][_size_label(size)] = entry
        summary["layers"] = []
        for layer in self.layers:
            entry = {
                "name": layer.name,
                "kernel_size": list(layer.kernel_size),
                "kernels": len(layer),
                "proportions": self.proportions(False, [layer]),
            }
            if detailed:
                entry["detailed_proportions"] = self.proportions(True, [layer])
            summary["layers"].append(entry)
        summary["centroids"] = [
            {
                "kernel_size": list(c.kernel_size),
                "index": c.index,
                "class": c.category,
                "score": round(c.score, 4),
                "kernels": c.count,
                "weights": np.round(c.weights, 6).tolist(),
            }
            for c in self.centroids
        ]
        return summary

    def three_way(self, layer: LayerResult) -> np.ndarray:
        """``[n]`` index into :data:`CLASSES` for the kernels of ``layer``."""
        return self._three_way(layer.category)

    def _three_way(self, category: np.ndarray) -> np.ndarray:
        return _THREE_WAY[category] if self.categories == DETAILED_CLASSES else category

    def _layers_by_size(self) -> dict[tuple[int, int], list[LayerResult]]:
        groups: dict[tuple[int, int], list[LayerResult]] = {}
        for layer in self.layers:
            groups.setdefault(layer.kernel_size, []).append(layer)
        return groups


def normalise_kernels(kernels: Tensor) -> Tensor:
    """``[n, kh, kw]`` -> ``[n, kh * kw]`` float32 rows x / ||x||_2 (all-zero rows stay zero)."""
    flat = kernels.reshape(kernels.shape[0], -1).to(torch.float32)
    return flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)


def center_surround_score(kernels: Tensor) -> Tensor:
    """Signed correlation of each ``[n, kh, kw]`` kernel with its best DoG template, in [-1, 1].

    Positive: on-center, negative: off-center; 0 for sizes where no DoG fits (2x2).
    """
    size = (int(kernels.shape[1]), int(kernels.shape[2]))
    bank = template_bank(size, ("dog",))
    if len(bank) == 0 or kernels.shape[0] == 0:
        return torch.zeros(kernels.shape[0])
    correlation = normalise_kernels(kernels) @ bank.templates.T  # [n, T] cosines
    best = correlation.abs().argmax(dim=1, keepdim=True)
    return correlation.gather(1, best).squeeze(1)


def classify_kernels(
    kernels: Tensor,
    method: str = DEFAULT_METHOD,
    n_clusters: int = DEFAULT_CLUSTERS,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = DEFAULT_SEED,
    families: tuple[str, ...] = FAMILIES,
) -> KernelReport:
    """Classify one ``[n, kh, kw]`` stack of kernels (reported as one layer named "kernels")."""
    layer = LayerKernels(name="kernels", key="kernels", kernels=kernels)
    return classify_layers([layer], method, n_clusters, threshold, seed, families)


def classify_layers(
    layers: Sequence[LayerKernels],
    method: str = DEFAULT_METHOD,
    n_clusters: int = DEFAULT_CLUSTERS,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = DEFAULT_SEED,
    families: tuple[str, ...] = FAMILIES,
) -> KernelReport:
    """Classify the kernels of every layer; one k-means / template bank per kernel size.

    Args:
        layers: from :mod:`neural_echos.collect`.
        method: "kmeans" (the paper's) or "template" (direct, with derivative families).
        n_clusters: k for k-means (>= 2); a size with fewer kernels gets one cluster per kernel.
        threshold: in (0, 1); minimum |correlation| (of a centroid for k-means, of a kernel for
            templates) to be on/off-center or a derivative.
        seed: k-means random_state.
        families: template families for "template" (see :data:`neural_echos.templates.FAMILIES`).

    Raises:
        AnalysisError: unknown method, threshold outside (0, 1), n_clusters < 2, bad families.
    """
    check_settings(method, n_clusters, threshold)
    families = tuple(families)
    if method == "template" and (not families or set(families) - set(FAMILIES)):
        raise AnalysisError(f"template families must be a non-empty subset of {FAMILIES}; got {families}")

    by_size: dict[tuple[int, int], list[int]] = {}
    for i, layer in enumerate(layers):
        by_size.setdefault(layer.kernel_size, []).append(i)

    results: list[LayerResult | None] = [None] * len(layers)
    centroids: list[Centroid] = []
    for size, indices in by_size.items():
        kernels = torch.cat([layers[i].kernels for i in indices])
        with single_thread():
            if method == "template":
                outcome = _classify_by_templates(kernels, families, threshold)
            else:
                outcome = _classify_by_kmeans(kernels, n_clusters, threshold, seed)
        category, score, template, cluster, size_centroids = outcome
        centroids.extend(size_centroids)
        start = 0
        for i in indices:
            stop = start + len(layers[i])
            results[i] = LayerResult(
                name=layers[i].name,
                kernel_size=size,
                category=category[start:stop],
                score=score[start:stop],
                template=None if template is None else template[start:stop],
                cluster=None if cluster is None else cluster[start:stop],
            )
            start = stop

    return KernelReport(
        method=method,
        categories=DETAILED_CLASSES if method == "template" else CLASSES,
        threshold=float(threshold),
        layers=results,
        centroids=centroids,
        n_clusters=n_clusters if method == "kmeans" else None,
        seed=seed if method == "kmeans" else None,
        families=families if method == "template" else (),
    )


def check_settings(method: str, n_clusters: int, threshold: float) -> None:
    """Raise :class:`AnalysisError` for an unknown method, n_clusters < 2 or threshold outside (0, 1)."""
    if method not in METHODS:
        raise AnalysisError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 2:
        raise AnalysisError(f"the number of clusters must be an integer >= 2; got {n_clusters!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 < threshold < 1:
        raise AnalysisError(
            f"the threshold is a correlation and must lie strictly between 0 and 1; got {threshold!r}"
        )


def _classify_by_templates(
    kernels: Tensor, families: tuple[str, ...], threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, None, list[Centroid]]:
    size = (int(kernels.shape[1]), int(kernels.shape[2]))
    bank = template_bank(size, families)
    unit = normalise_kernels(kernels)
    if len(bank) == 0:  # DoG-only bank on a grid where no DoG fits
        n = unit.shape[0]
        category, score, template = np.full(n, _OTHER), np.zeros(n, np.float32), np.full(n, "", dtype=object)
        return category, score, template, None, _class_means(unit, category, size, DETAILED_CLASSES)

    correlation = unit @ bank.templates.T  # [n, T] cosines with zero-mean unit templates
    best = correlation.abs().argmax(dim=1)
    r = correlation.gather(1, best[:, None]).squeeze(1)  # signed correlation of the best template
    family = bank.family[best]

    category = torch.full_like(best, _OTHER)
    is_dog = family == FAMILIES.index("dog")
    category[is_dog & (r > 0)] = _ON
    category[is_dog & (r < 0)] = _OFF
    category[family == FAMILIES.index("first_derivative")] = _FIRST
    category[family == FAMILIES.index("second_derivative")] = _SECOND
    category[r.abs() < threshold] = _OTHER

    category = category.numpy()
    centroids = _class_means(unit, category, size, DETAILED_CLASSES)
    return category, r.numpy(), bank.names[best.numpy()], None, centroids


def _classify_by_kmeans(
    kernels: Tensor, n_clusters: int, threshold: float, seed: int
) -> tuple[np.ndarray, np.ndarray, None, np.ndarray, list[Centroid]]:
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    size = (int(kernels.shape[1]), int(kernels.shape[2]))
    unit = normalise_kernels(kernels)
    n = unit.shape[0]
    score = center_surround_score(kernels).numpy()
    k = min(n_clusters, n)
    if k == 0:
        return np.zeros(0, np.int64), score, None, np.zeros(0, np.int64), []

    with warnings.catch_warnings():  # (one thread: see single_thread)
        warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct kernels than clusters
        kmeans = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=seed).fit(unit.numpy())

    centres = torch.from_numpy(kmeans.cluster_centers_).to(torch.float32)
    centre_score = center_surround_score(centres.reshape(k, *size))
    order = torch.argsort(-centre_score, stable=True)  # cluster ids by decreasing score
    new_id = torch.empty_like(order)
    new_id[order] = torch.arange(k)
    cluster = new_id[torch.from_numpy(kmeans.labels_).long()].numpy()

    centroid_category = np.where(
        centre_score[order] >= threshold, _ON, np.where(centre_score[order] <= -threshold, _OFF, 2)
    )  # CLASSES indices: 0 on, 1 off, 2 other
    category = centroid_category[cluster]
    counts = np.bincount(cluster, minlength=k)
    centroids = [
        Centroid(
            kernel_size=size,
            index=i,
            category=CLASSES[centroid_category[i]],
            score=float(centre_score[order[i]]),
            count=int(counts[i]),
            weights=centres[order[i]].reshape(size).numpy(),
        )
        for i in range(k)
    ]
    return category, score, None, cluster, centroids


def _class_means(
    unit: Tensor, category: np.ndarray, size: tuple[int, int], names: tuple[str, ...]
) -> list[Centroid]:
    """Mean normalised kernel of every non-empty class, as centroids for the "template" method."""
    category_t = torch.from_numpy(np.asarray(category)).long()
    counts = torch.bincount(category_t, minlength=len(names))
    sums = torch.zeros(len(names), unit.shape[1]).index_add_(0, category_t, unit)
    present = torch.nonzero(counts).squeeze(1)
    means = sums[present] / counts[present, None]
    scores = center_surround_score(means.reshape(-1, *size))
    return [
        Centroid(size, int(c), names[int(c)], float(s), int(counts[c]), m.reshape(size).numpy())
        for c, s, m in zip(present, scores, means)
    ]


def _size_label(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


__all__ = [
    "CLASSES",
    "DEFAULT_CLUSTERS",
    "DEFAULT_METHOD",
    "DEFAULT_SEED",
    "DEFAULT_THRESHOLD",
    "DETAILED_CLASSES",
    "METHODS",
    "Centroid",
    "KernelReport",
    "LayerResult",
    "center_surround_score",
    "check_settings",
    "classify_kernels",
    "classify_layers",
    "normalise_kernels",
    "single_thread",
]
