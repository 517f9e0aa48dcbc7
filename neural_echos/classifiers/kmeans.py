"""The paper's classifier: k-means on the normalised kernels, with per-kernel labels.

Babaiee et al. (arXiv 2401.10178) cluster the normalised depthwise kernels with k-means (k = 3)
and name the clusters on-center, off-center and other. Here: scikit-learn ``KMeans`` (k-means++
seeding, ``n_init=3``, ``random_state=seed``: deterministic, and nothing drawn from numpy's or
torch's global state), one clustering per kernel size (kernels of different sizes live in
different spaces; resampling would change their shapes). Clusters are numbered by decreasing
centroid score, so cluster ids and names are stable from epoch to epoch and between runs.

A cluster is named on-center when its centroid's center-surround score is >= the threshold
(and the centroid is antagonistic), off-center when <= -threshold, else other; several clusters
may share a name, and there may be no on/off cluster at all (random kernels).

A kernel's label is its cluster's name only if the kernel itself passes too: its own score
>= threshold with the cluster's sign and its own antagonism >= ANTAGONISM_MIN; otherwise it is
"other". Naming members by their centroid alone is what calls random kernels center-surround:
the mean of many noisy kernels can look like a DoG when almost none of its members do (seen in
training: a centroid of 561 kernels scored 0.55 while one member did).

Caveat: k-means cannot keep oriented second derivatives (bars) apart from DoGs: their
correlation can reach 0.83 (G_uu . LoG = 4 / sqrt(24) for Gaussians).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor

from neural_echos.classifiers import register_classifier
from neural_echos.classifiers.base import (
    CLASSES,
    OFF,
    ON,
    OTHER,
    DEFAULT_ALPHA,
    MIN_THRESHOLD,
    Centroid,
    KernelClassifier,
    SizeResult,
    center_surround,
    normalise_kernels,
)
from neural_echos.collect import AnalysisError

KMEANS_N_INIT = 3


@register_classifier
class KMeansClassifier(KernelClassifier):
    """k-means (the paper's method) with per-kernel labels; see the module docstring.

    Args:
        n_clusters: k, >= 2 (the paper: 3); a size with fewer kernels gets one cluster per kernel.
        seed: k-means ``random_state``.
        threshold, alpha, min_threshold, null_model, null_seed: see :class:`KernelClassifier`.
    """

    name = "kmeans"
    centroid_name = "k-means centroids"

    def __init__(
        self,
        n_clusters: int = 3,
        seed: int = 0,
        threshold: float | str = "auto",
        alpha: float = DEFAULT_ALPHA,
        min_threshold: float = MIN_THRESHOLD,
        null_model: str = "permute",
        null_seed: int = 0,
    ):
        if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or n_clusters < 2:
            raise AnalysisError(f"the number of clusters must be an integer >= 2; got {n_clusters!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise AnalysisError(f"the k-means seed must be an integer; got {seed!r}")
        super().__init__(threshold, alpha, min_threshold, null_model, null_seed)
        self.n_clusters, self.seed = int(n_clusters), int(seed)

    def own_settings(self) -> dict[str, Any]:
        return {"n_clusters": self.n_clusters, "seed": self.seed}

    def strength(self, kernels: Tensor) -> Tensor:
        # A kernel is on/off-center only if it passes on its own, whatever its cluster: the
        # kernel's own strength bounds the rule, whatever clusters a population happens to form.
        return center_surround(kernels).strength()

    def classify_size(self, kernels: Tensor, threshold: float) -> SizeResult:
        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning

        size = (int(kernels.shape[1]), int(kernels.shape[2]))
        evidence = center_surround(kernels)
        n = kernels.shape[0]
        k = min(self.n_clusters, n)
        if k == 0:
            return SizeResult(np.zeros(0, np.int64), evidence, {"cluster": np.zeros(0, np.int64)})

        unit = normalise_kernels(kernels)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # fewer distinct kernels than clusters
            kmeans = KMeans(n_clusters=k, n_init=KMEANS_N_INIT, random_state=self.seed).fit(unit.numpy())

        centres = torch.from_numpy(kmeans.cluster_centers_).to(torch.float32)
        centre_evidence = center_surround(centres.reshape(k, *size))
        order = torch.argsort(-centre_evidence.score, stable=True)  # cluster ids by decreasing score
        new_id = torch.empty_like(order)
        new_id[order] = torch.arange(k)
        cluster = new_id[torch.from_numpy(kmeans.labels_).long()]

        cluster_polarity = centre_evidence.polar(threshold)[order]  # [k] +1 on, -1 off, 0 other
        own_polarity = evidence.polar(threshold)
        member_polarity = cluster_polarity[cluster]
        label = torch.full((n,), OTHER, dtype=torch.int64)
        label[(member_polarity > 0) & (own_polarity > 0)] = ON
        label[(member_polarity < 0) & (own_polarity < 0)] = OFF

        counts = torch.bincount(cluster, minlength=k)
        centroid_names = [CLASSES[ON] if p > 0 else CLASSES[OFF] if p < 0 else CLASSES[OTHER] for p in cluster_polarity]
        centroids = [
            Centroid(
                kernel_size=size,
                index=i,
                label=centroid_names[i],
                score=float(centre_evidence.score[order[i]]),
                count=int(counts[i]),
                weights=centres[order[i]].reshape(size).numpy(),
            )
            for i in range(k)
        ]
        return SizeResult(label.numpy(), evidence, {"cluster": cluster.numpy()}, centroids=centroids)
