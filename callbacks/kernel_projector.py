"""The kernel-projector callback: the depthwise kernels in TensorBoard's Projector, with their classes."""

from __future__ import annotations

import math
import time
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks.kernel_snapshot import KernelSnapshot, run_classifier
from neural_echos import grids
from neural_echos import logged_names as names
from neural_echos.classifiers import CLASSES, KernelClassifier, TemplateClassifier
from neural_echos.classifiers.base import normalise_kernels
from neural_echos.collect import LayerKernels, kernels_from_module
from neural_echos.errors import ConfigError
from neural_echos.taxonomy import DETAILED_CLASSES
from neural_echos.tracking import change_word

# TensorBoard's Projector refuses a sprite larger than this on either side ("Sprite image of
# dimensions ... exceeds maximum dimensions 8192px x 8192px"): `ky=8192` in
# tensorboard/plugins/projector/tf_projector_plugin/projector_binary.js (tensorboard 2.x, in .venv).
MAX_SPRITE_SIDE = 8192
METADATA_HEADER = ["class", "three_way", "layer", "channel", "kernel_size", "class_at_first", "change"]


def sprite_capacity(thumbnail: int, max_side: int = MAX_SPRITE_SIDE) -> int:
    """How many ``thumbnail`` px square images fit a square sprite of at most ``max_side`` px
    (torch's writer lays ``n`` of them out ``ceil(sqrt(n))`` to a row)."""
    return (max_side // thumbnail) ** 2


def sample_indices(total: int, count: int) -> np.ndarray:
    """``min(total, count)`` evenly spaced indices in ``range(total)``: deterministic, network-wide."""
    if count >= total:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, count).round().astype(np.int64))


def sprite_side(n: int, thumbnail: int) -> int:
    return math.ceil(math.sqrt(n)) * thumbnail


class KernelProjector(Callback):
    """The depthwise kernels as an embedding in TensorBoard's Projector, at chosen snapshots.

    Each point is one kernel: its vector is the L2-normalised kernel (smaller kernels centred
    in the largest size with zeros), its thumbnail the kernel in the diverging colour map framed
    in its class colour (:mod:`neural_echos.grids`), its metadata ``class`` (the detailed class,
    :data:`~neural_echos.taxonomy.DETAILED_CLASSES`), ``three_way`` (on/off/other), ``layer``,
    ``channel``, ``kernel_size``, ``class_at_first`` (its class at the first projection, kept in
    this callback's checkpoint state) and ``change`` (``kept``, ``gained on/off``, ``lost
    on/off`` or ``changed``). Colour by ``class`` in the Projector to see where the classes sit,
    by ``change`` to see which kernels gained or lost the pattern; PCA, t-SNE or UMAP.

    The Projector refuses sprites over :data:`MAX_SPRITE_SIDE` px a side, so at most
    :func:`sprite_capacity` (``(8192 // thumbnail)^2``, 85,264 at 28 px) and at most
    ``max_kernels`` kernels are logged, evenly spaced over the network's kernels in order
    (deterministic, so the same kernels at every snapshot). The Projector's own PCA samples
    50,000 points, t-SNE 10,000, UMAP 5,000 (same file: ``Iy=5e4``, ``Za=1e4``, ``Ay=5e3``).

    Logged (TensorBoard only, rank zero) under tag ``depthwise_kernels`` at step 0 (``first``),
    at the last epoch's step (``last``, when training ends) and every ``every_n_epochs``.
    Classes come from the KernelSnapshot's classifier when one is among the callbacks.

    Args:
        enabled: False turns the callback off.
        first: log at the start of a fresh fit (step 0).
        last: log when training ends.
        every_n_epochs: also log after every N-th epoch (0: never).
        max_kernels: at most this many kernels (sampled evenly).
        thumbnail: thumbnail side in px.
        classifier: used when no KernelSnapshot callback is present.
        name_filter: regular expression selecting depthwise layers by name.
    """

    def __init__(
        self,
        enabled: bool = True,
        first: bool = True,
        last: bool = True,
        every_n_epochs: int = 0,
        max_kernels: int = 4096,
        thumbnail: int = 28,
        classifier: KernelClassifier | None = None,
        name_filter: str | None = None,
    ):
        if every_n_epochs < 0:
            raise ConfigError(
                f"projector.every_n_epochs must be >= 0 (0: only first and last), got {every_n_epochs}"
            )
        if max_kernels < 1:
            raise ConfigError(f"projector.max_kernels must be >= 1, got {max_kernels}")
        if not 4 <= thumbnail <= MAX_SPRITE_SIDE:
            raise ConfigError(
                f"projector.thumbnail must be between 4 and {MAX_SPRITE_SIDE} px, got {thumbnail}"
            )
        self.enabled, self.first, self.last, self.every_n_epochs = enabled, first, last, every_n_epochs
        self.max_kernels, self.thumbnail = max_kernels, thumbnail
        self.classifier, self.name_filter = classifier, name_filter
        self.first_detail: np.ndarray | None = None  # every kernel's class at the first projection
        self.steps: list[int] = []
        self.seconds: list[float] = []

    def state_dict(self) -> dict[str, Any]:
        # the first projection's classes (int8, one per kernel), so "change" survives a resume
        return (
            {}
            if self.first_detail is None
            else {"first_detail": torch.from_numpy(self.first_detail.astype(np.int8))}
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "first_detail" in state_dict:
            self.first_detail = state_dict["first_detail"].numpy().astype(np.int64)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.enabled and self.first and trainer.global_step == 0:
            self.project(trainer, pl_module, step=0)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.enabled and self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.project(trainer, pl_module, step=max(0, trainer.global_step - 1))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        step = max(0, trainer.global_step - 1)
        if self.enabled and self.last and step not in self.steps:
            self.project(trainer, pl_module, step=step)

    def _classifier(self, trainer: pl.Trainer) -> KernelClassifier:
        if self.classifier is None and not any(isinstance(cb, KernelSnapshot) for cb in trainer.callbacks):
            self.classifier = TemplateClassifier()  # built once: its calibration is cached in it
        return run_classifier(trainer, self.classifier)

    @torch.no_grad()
    def project(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        writers = [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not trainer.is_global_zero or not writers:
            return
        start = time.perf_counter()
        model = getattr(pl_module, "model", pl_module)
        layers = kernels_from_module(
            model,
            self.name_filter,
            model_name=pl_module.hparams.get("model_name"),
            filter_option="--projector.name_filter",
        )
        report = self._classifier(trainer).classify(layers)
        details = [np.asarray(r.detail, dtype=np.int64) for r in report.layers]
        if self.first_detail is None or len(self.first_detail) != sum(len(d) for d in details):
            self.first_detail = np.concatenate(details)  # the classes "change" is read against
        vectors, thumbnails, metadata = embedding(
            layers,
            details,
            min(self.max_kernels, sprite_capacity(self.thumbnail)),
            self.thumbnail,
            self.first_detail,
        )
        for writer in writers:
            writer.add_embedding(
                vectors,
                metadata=metadata,
                label_img=thumbnails,
                global_step=step,
                tag=names.PROJECTOR_EMBEDDING,
                metadata_header=METADATA_HEADER,
            )
        self.steps.append(step)
        self.seconds.append(time.perf_counter() - start)


def embedding(
    layers: list[LayerKernels],
    details: list[np.ndarray],
    count: int,
    thumbnail: int,
    first: np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[list[str]]]:
    """``(vectors [n, K*K], thumbnails [n, 3, t, t] in [0, 1], metadata rows)`` for ``count``
    kernels evenly spaced over ``layers`` (K: the largest kernel side); ``first``: every kernel's
    class at the first projection (default: its class now), for ``class_at_first`` and ``change``."""
    side = max(max(layer.kernel_size) for layer in layers)
    kernels, rows, classes = [], [], []
    for layer, detail in zip(layers, details, strict=True):
        kh, kw = layer.kernel_size
        top, left = (side - kh) // 2, (side - kw) // 2
        padded = torch.zeros(len(layer), side, side)
        padded[:, top : top + kh, left : left + kw] = layer.kernels
        kernels.append(padded)
        classes.append(np.asarray(detail))
        rows += [
            [DETAILED_CLASSES[d], CLASSES[min(int(d), 2)], layer.name, str(c), f"{kh}x{kw}"]
            for c, d in enumerate(detail)
        ]
    now = np.concatenate(classes)
    first = now if first is None else np.asarray(first)
    for row, was, is_ in zip(rows, first, now, strict=True):
        row += [DETAILED_CLASSES[int(was)], change_word(int(was), int(is_))]
    chosen = sample_indices(len(rows), count)
    stack, detail = torch.cat(kernels)[chosen], np.concatenate(classes)[chosen]
    zoom = max(1, (thumbnail - 2 * grids.FRAME) // side)
    # grids draws framed, coloured kernel cells (private helper: the same look as the snapshot grids)
    cells = grids._cells(
        grids.Block(stack.numpy(), detail), DETAILED_CLASSES, (side, side), zoom, None, "linear"
    )
    square = np.full((len(chosen), thumbnail, thumbnail, 3), 255, np.uint8)
    h, w = min(thumbnail, cells.shape[1]), min(thumbnail, cells.shape[2])
    top, left = (thumbnail - h) // 2, (thumbnail - w) // 2
    square[:, top : top + h, left : left + w] = cells[:, :h, :w]
    thumbnails = torch.from_numpy(square).permute(0, 3, 1, 2).float() / 255.0
    return normalise_kernels(stack), thumbnails, [rows[i] for i in chosen]


__all__ = [
    "MAX_SPRITE_SIDE",
    "KernelProjector",
    "change_word",
    "embedding",
    "sample_indices",
    "sprite_capacity",
    "sprite_side",
]
