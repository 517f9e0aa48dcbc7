"""The kernel-snapshot callback: watch center-surround patterns develop in TensorBoard."""

from __future__ import annotations

import io
import time

import lightning.pytorch as pl
import numpy as np
import torch
from jsonargparse import lazy_instance
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from PIL import Image
from tensorboard.compat.proto.summary_pb2 import Summary

from neural_echos import grids
from neural_echos import logged_names as names
from neural_echos.classifiers import KernelClassifier, TemplateClassifier
from neural_echos.collect import kernels_from_module
from neural_echos.errors import ConfigError
from neural_echos.grids import SAMPLINGS, SCALINGS, TRANSFERS


def image_summary(tag: str, image: np.ndarray) -> Summary:
    """An ``[H, W, 3]`` uint8 picture as TensorBoard's image summary (PNG, fast compression)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    height, width = image.shape[:2]
    picture = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=picture)])


class KernelSnapshot(Callback):
    """Classify and draw the depthwise kernels when training starts and every N epochs.

    Logged at step 0 (the initialised kernels, when training starts) and, after every N-th
    epoch, at the step of that epoch's validation metrics (Lightning logs validation at the end
    of an epoch one step before the epoch's last step is counted: global step - 1), so that
    TensorBoard's "link by step" lines kernels and accuracy up:

    * ``kernels/proportion/{on_center,off_center,other}``: shares over all depthwise kernels;
    * ``kernels/chance/{on_center,off_center,other}``: the shares the classifier gives null
      kernels (each kernel's pixels permuted, by default), i.e. what chance alone gives;
    * ``kernels/excess/{on_center,off_center}``: proportion minus chance;
    * ``kernels/threshold/<size>``: the correlation threshold used for each kernel size;
    * ``kernels/layers`` (image): layers x classes, each share and its chance share, in network
      order; ``kernels/layer/<layer>/{on_center,off_center,other}`` scalars with
      ``layer_scalars: true``;
    * ``kernels/taxonomy/<class>`` and ``kernels/taxonomy_chance/<class>``: the share of each
      taxonomy class (:mod:`neural_echos.taxonomy`: on/off-center, blob, delta, shifted delta,
      first and second derivative, other) and its chance share; ``kernels/named`` and
      ``kernels/named_chance``: the share the taxonomy names;
    * ``kernels/notes`` (text): what the classifier found that its shares do not show (k-means:
      a polarity that no cluster carries);
    * ``kernels/classifier`` (text, first snapshot): the classifier and its settings;
    * images (TensorBoard only): ``kernels/grid/<layer or stage>`` kernel grids, framed by
      class, with a title saying which kernels are shown and a legend strip (colour scale with
      its values, frame colours); ``kernels/centroids`` the cluster centroids (k-means) or class
      means (templates), each with its class, score and how many members have that class;
      ``kernels/taxonomy`` one bar per taxonomy class with its chance share (see
      :mod:`neural_echos.grids`);
    * histograms (``histograms: true``): ``kernels/weights/<layer>``.

    It runs on rank zero only, under ``torch.no_grad`` on a CPU copy of the kernels, and draws
    nothing from the global random generators, so it does not change training. A resumed run
    skips the step-0 snapshot and continues at its next epoch.

    Args:
        every_n_epochs: epochs between snapshots; 0 turns the callback off.
        classifier: a kernel classifier of :mod:`neural_echos.classifiers`, chosen with
            ``class_path`` (``TemplateClassifier`` by default; ``KMeansClassifier``, the paper's)
            and its own ``init_args``.
        images: log kernel grids, centroids and the per-layer share image.
        max_kernels: kernels per grid image.
        sampling: which kernels a grid shows: ``spread`` (evenly spaced channels) or
            ``per_class`` (evenly spaced within each class).
        scaling: colour scale per ``kernel`` (each by its own max |w|) or per ``layer`` (shared,
            so magnitudes compare).
        transfer: ``linear`` or ``signed_sqrt`` (shows thin DoG surrounds).
        layer_scalars: also log the per-layer shares as scalars.
        histograms: log weight histograms per layer.
        name_filter: regular expression selecting depthwise layers by name.
        max_grid_images: kernel grid images per snapshot: one per layer up to this many layers,
            else one per stage (``kernels/grid/stages.0``, ...), so that TensorBoard's Time
            Series shows two runs' kernels on a page or two (4: convnext_atto's four stages).
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        classifier: KernelClassifier = lazy_instance(TemplateClassifier),  # noqa: B008  (jsonargparse's lazy default)
        images: bool = True,
        max_kernels: int = 64,
        sampling: str = "spread",
        scaling: str = "kernel",
        transfer: str = "linear",
        layer_scalars: bool = False,
        histograms: bool = False,
        name_filter: str | None = None,
        max_grid_images: int = 4,
    ):
        if every_n_epochs < 0:
            raise ConfigError(
                f"snapshot.every_n_epochs must be >= 0 (0 turns snapshots off), got {every_n_epochs}"
            )
        if max_kernels < 1:
            raise ConfigError(f"snapshot.max_kernels must be >= 1, got {max_kernels}")
        if max_grid_images < 1:
            raise ConfigError(f"snapshot.max_grid_images must be >= 1, got {max_grid_images}")
        for option, value, choices in (
            ("sampling", sampling, SAMPLINGS),
            ("scaling", scaling, SCALINGS),
            ("transfer", transfer, TRANSFERS),
        ):
            if value not in choices:
                raise ConfigError(f"snapshot.{option} must be one of {', '.join(choices)}; got {value!r}")
        self.every_n_epochs = every_n_epochs
        self.classifier = classifier
        self.images, self.max_kernels, self.histograms = images, max_kernels, histograms
        self.sampling, self.scaling, self.transfer = sampling, scaling, transfer
        self.layer_scalars = layer_scalars
        self.name_filter = name_filter
        self.max_grid_images = max_grid_images
        self.seconds: list[float] = []  # wall time of each snapshot, for the cost report
        self.last_shares: dict[str, tuple[float, float]] = {}  # class -> (share, chance) of the last snapshot

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs and trainer.global_step == 0:
            self.snapshot(trainer, pl_module, step=0)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.snapshot(trainer, pl_module, step=max(0, trainer.global_step - 1))

    @torch.no_grad()
    def snapshot(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int) -> None:
        if not trainer.is_global_zero or not trainer.loggers:
            return
        start = time.perf_counter()
        model = getattr(pl_module, "model", pl_module)
        layers = kernels_from_module(
            model,
            self.name_filter,
            model_name=pl_module.hparams.get("model_name"),
            filter_option="--snapshot.name_filter",
        )
        report = self.classifier.classify(layers)

        observed, chance = report.proportions(), report.chance()
        metrics = {names.SHARE.format(name): share for name, share in observed.items()}
        metrics.update({names.CHANCE.format(name): share for name, share in chance.items()})
        metrics.update(
            {names.EXCESS.format(name): observed[name] - chance[name] for name in names.EXCESS_CLASSES}
        )
        metrics.update({names.THRESHOLD.format(size): value for size, value in report.thresholds.items()})
        if self.layer_scalars:
            for layer in report.layers:
                shares = report.proportions([layer])
                metrics.update(
                    {names.LAYER_SHARE.format(layer.name, name): shares[name] for name in names.CLASSES}
                )
        taxonomy, taxonomy_chance = report.detailed_proportions(), report.detailed_chance()
        metrics.update({names.TAXONOMY_SHARE.format(name): share for name, share in taxonomy.items()})
        metrics.update({names.TAXONOMY_CHANCE.format(name): share for name, share in taxonomy_chance.items()})
        metrics[names.NAMED], metrics[names.NAMED_CHANCE] = report.explained(), report.explained(null=True)
        self.last_shares = {name: (observed[name], chance[name]) for name in observed}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

        writers = [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        for writer in writers:  # text, whatever images and histograms are set to
            if not self.seconds:  # the first snapshot of the run says which classifier reads the kernels
                writer.add_text(names.CLASSIFIER_TEXT, repr(self.classifier), step)
            if report.notes:
                writer.add_text(names.NOTES_TEXT, "\n\n".join(report.notes), step)
        if writers and (self.images or self.histograms):
            images = {}
            if self.images:
                pictures = grids.grouped_grid_images(
                    layers,
                    report,
                    self.max_kernels,
                    self.sampling,
                    self.scaling,
                    self.transfer,
                    max_images=self.max_grid_images,
                )
                images = {names.GRID_IMAGE.format(group): image for group, _, image in pictures}
                images[names.LAYERS_IMAGE] = grids.layer_shares_image(report)
                images[names.TAXONOMY_IMAGE] = grids.taxonomy_image(report)
                if report.centroids:
                    images[names.CENTROIDS_IMAGE] = grids.centroid_image(report, self.scaling, self.transfer)
            summaries = [image_summary(tag, image) for tag, image in images.items()]
            for writer in writers:
                for summary in summaries:
                    # SummaryWriter.add_image re-scales through float32 and compresses at level 6:
                    # 13 ms an image here, most of a snapshot; the same PNG summary, made once, goes
                    # through the writer's public FileWriter (as SummaryWriter.add_hparams writes)
                    writer.file_writer.add_summary(summary, step)
                if self.histograms:
                    for layer in layers:
                        writer.add_histogram(names.WEIGHTS_HISTOGRAM.format(layer.name), layer.kernels, step)
        self.seconds.append(time.perf_counter() - start)


def run_classifier(trainer: pl.Trainer, own: KernelClassifier | None) -> KernelClassifier:
    """The classifier of the run's :class:`KernelSnapshot` (so tracking and the Projector class
    kernels as the snapshot does), else ``own``, else the default :class:`TemplateClassifier`."""
    snapshot = next((cb for cb in trainer.callbacks if isinstance(cb, KernelSnapshot)), None)
    if snapshot is not None:
        return snapshot.classifier
    return own if own is not None else TemplateClassifier()
