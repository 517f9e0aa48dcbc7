"""The kernel-tracking callback: which kernels kept, gained or lost the pattern, and when."""

from __future__ import annotations

import functools
import time
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks.kernel_snapshot import KernelSnapshot, run_classifier
from neural_echos import logged_names as names
from neural_echos.classifiers import KernelClassifier, TemplateClassifier
from neural_echos.classifiers.base import size_label
from neural_echos.collect import LayerKernels, kernels_from_module
from neural_echos.errors import ConfigError
from neural_echos.taxonomy import DETAILED_CLASSES
from neural_echos.tracking import (
    NULL_DRAWS,
    PopulationSignal,
    cosine_distance,
    drift,
    population_signal,
    transition_matrix,
    transition_summary,
)
from neural_echos.tracking_pictures import layer_drift_image, transition_image

MAX_STATE_MIB = 16.0


class KernelTracking(Callback):
    """Follow every depthwise kernel from its initialisation: class transitions, drift, population signal.

    At the start of a fresh ``fit`` (step 0) it keeps each kernel and its detailed class
    (:data:`~neural_echos.taxonomy.DETAILED_CLASSES`); after every N-th epoch it classifies the
    kernels again and logs, at the step the kernel snapshot uses (the epoch's validation step,
    ``global_step - 1``; see :class:`callbacks.kernel_snapshot.KernelSnapshot`):

    * ``tracking/since_init/{retained,gained,lost}`` and ``tracking/since_previous/...``: the
      share of all kernels that kept their detailed class, became on/off-center, or left it,
      since step 0 and since the previous tracking snapshot, each with ``..._chance``: the share
      if classes were redrawn independently with the same class shares
      (:func:`neural_echos.tracking.transition_summary`);
    * ``tracking/drift/{cosine_distance,norm_change,relative_distance}``: over all kernels, the
      median cosine distance to init, ``||W|| / ||W0|| - 1`` and ``||W - W0|| / ||W0||``
      (:func:`neural_echos.tracking.drift`);
    * ``tracking/population/<size>/{dog_energy,mean_score}`` with ``..._null`` (the mean over
      ``null_draws`` pixel-permuted nulls) and ``..._z``: the population signal per kernel size
      (:func:`neural_echos.tracking.population_signal`);
    * ``tracking/layer/<layer>/{cosine_distance,norm_change,dog_energy_z,mean_score_z}`` with
      ``layer_scalars: true``;
    * images (TensorBoard): ``tracking/transitions``: the transition tables since init and since
      the previous snapshot (rows: class then, columns: class now; counts and row shares);
      ``tracking/layers``: per layer, drift and population signal against its null.

    The classes are the kernel snapshot's: its classifier when a :class:`KernelSnapshot` is among
    the callbacks, else ``classifier`` (default :class:`TemplateClassifier`).

    Resume: step 0's kernels and classes and the previous snapshot's classes are kept in this
    callback's state in the checkpoint (``MAX_STATE_MIB`` at most: above it, only the classes
    are kept and drift is measured from the resumed kernels, which ``tracking/notes`` says). A
    checkpoint without this state (or of other layers) makes the resumed kernels the reference,
    also said in ``tracking/notes``. Rank zero only, and only with a logger; no global random
    generator is used.

    Args:
        every_n_epochs: epochs between tracking snapshots; 0 turns the callback off.
        classifier: used when no KernelSnapshot callback is present.
        images: log the transition and per-layer pictures.
        layer_scalars: also log per-layer scalars.
        null_draws: permuted nulls of the population signal (>= 2).
        name_filter: regular expression selecting depthwise layers by name.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        classifier: KernelClassifier | None = None,
        images: bool = True,
        layer_scalars: bool = False,
        null_draws: int = NULL_DRAWS,
        name_filter: str | None = None,
    ):
        if every_n_epochs < 0:
            raise ConfigError(
                f"tracking.every_n_epochs must be >= 0 (0 turns tracking off), got {every_n_epochs}"
            )
        if null_draws < 2:
            raise ConfigError(
                f"tracking.null_draws must be >= 2 (the null's spread needs two draws), got {null_draws}"
            )
        self.every_n_epochs, self.classifier = every_n_epochs, classifier
        self.images, self.layer_scalars = images, layer_scalars
        self.null_draws, self.name_filter = null_draws, name_filter
        self.init: dict[str, Any] | None = None  # names, kernels (or None), detail, step
        self.previous: dict[str, Any] | None = None  # detail, step
        self.notes: list[str] = []
        self.seconds: list[float] = []

    # -- state in checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        if self.init is None:
            return {}
        kernels = self.init["kernels"]
        if kernels is not None and sum(k.numel() * 4 for k in kernels) > MAX_STATE_MIB * 2**20:
            kernels = None  # too large for a checkpoint: drift restarts from the resumed kernels
        return {
            "names": list(self.init["names"]),
            "init_step": int(self.init["step"]),
            "init_kernels": kernels,
            "init_detail": [torch.as_tensor(d, dtype=torch.int8) for d in self.init["detail"]],
            "previous_detail": [torch.as_tensor(d, dtype=torch.int8) for d in self.previous["detail"]],
            "previous_step": int(self.previous["step"]),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self.init = {
            "names": list(state_dict["names"]),
            "step": state_dict["init_step"],
            "kernels": state_dict["init_kernels"],
            "detail": [d.numpy().astype(np.int64) for d in state_dict["init_detail"]],
        }
        self.previous = {
            "detail": [d.numpy().astype(np.int64) for d in state_dict["previous_detail"]],
            "step": state_dict["previous_step"],
        }

    # -- hooks -----------------------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs:
            self.track(trainer, pl_module, step=trainer.global_step if trainer.global_step == 0 else None)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.track(trainer, pl_module, step=max(0, trainer.global_step - 1))

    def _classifier(self, trainer: pl.Trainer) -> KernelClassifier:
        if self.classifier is None and not any(isinstance(cb, KernelSnapshot) for cb in trainer.callbacks):
            self.classifier = TemplateClassifier()  # built once: its calibration is cached in it
        return run_classifier(trainer, self.classifier)

    @torch.no_grad()
    def track(self, trainer: pl.Trainer, pl_module: pl.LightningModule, step: int | None) -> None:
        """Classify and compare; ``step=None``: at train start of a resumed run (log nothing new
        unless the reference has to be re-taken)."""
        if not trainer.is_global_zero or not trainer.loggers:  # nothing to log to: no cost either
            return
        start = time.perf_counter()
        model = getattr(pl_module, "model", pl_module)
        layers = kernels_from_module(
            model,
            self.name_filter,
            model_name=pl_module.hparams.get("model_name"),
            filter_option="--tracking.name_filter",
        )
        names = [layer.name for layer in layers]
        if step is None:  # resumed
            if self.init is not None and self.init["names"] == names:
                if self.init["kernels"] is None:
                    self.init["kernels"] = [layer.kernels.clone() for layer in layers]
                    self._note(
                        trainer,
                        f"drift is measured from the kernels at step {trainer.global_step} "
                        f"(the resumed checkpoint kept only the classes of step {self.init['step']})",
                    )
                return
            step = trainer.global_step
            self._note(
                trainer,
                f"the checkpoint held no tracking state for these layers: step {step} is the reference",
            )
            self.init = None
        detail = [
            np.asarray(r.detail, dtype=np.int64) for r in self._classifier(trainer).classify(layers).layers
        ]
        if self.init is None:
            self.init = {
                "names": names,
                "kernels": [layer.kernels.clone() for layer in layers],
                "detail": detail,
                "step": step,
            }
            self.previous = {"detail": detail, "step": step}
        self._log(trainer, layers, detail, step)
        self.previous = {"detail": detail, "step": step}
        self.seconds.append(time.perf_counter() - start)

    def _note(self, trainer: pl.Trainer, note: str) -> None:
        self.notes.append(note)
        for writer in _writers(trainer):
            writer.add_text(names.TRACKING_NOTES_TEXT, note, trainer.global_step)

    def _log(
        self, trainer: pl.Trainer, layers: list[LayerKernels], detail: list[np.ndarray], step: int
    ) -> None:
        n_classes = len(DETAILED_CLASSES)
        now = np.concatenate(detail)
        since_init = transition_matrix(np.concatenate(self.init["detail"]), now, n_classes)
        since_previous = transition_matrix(np.concatenate(self.previous["detail"]), now, n_classes)
        metrics: dict[str, float] = {}
        for name, matrix in (("since_init", since_init), ("since_previous", since_previous)):
            shares = transition_summary(matrix).as_dict()
            metrics.update({names.TRACKING_TRANSITION.format(name, key): v for key, v in shares.items()})

        reference = self.init["kernels"]
        drifts = [drift(layer.kernels, ref) for layer, ref in zip(layers, reference, strict=True)]
        distances = torch.cat(
            [cosine_distance(layer.kernels, ref) for layer, ref in zip(layers, reference, strict=True)]
        )
        flat_now = torch.cat([layer.kernels.reshape(-1) for layer in layers]).double()
        flat_ref = torch.cat([ref.reshape(-1) for ref in reference]).double()
        ref_norm = float(flat_ref.norm()) or float("inf")
        metrics[names.TRACKING_DRIFT.format("cosine_distance")] = float(distances.median())
        metrics[names.TRACKING_DRIFT.format("norm_change")] = float(flat_now.norm()) / ref_norm - 1.0
        metrics[names.TRACKING_DRIFT.format("relative_distance")] = (
            float((flat_now - flat_ref).norm()) / ref_norm
        )

        by_size: dict[tuple[int, int], list[torch.Tensor]] = {}
        for layer in layers:
            by_size.setdefault(layer.kernel_size, []).append(layer.kernels)
        for size, stacks in by_size.items():
            for statistic, signal in population_signal(torch.cat(stacks), self.null_draws).items():
                tag = names.TRACKING_POPULATION.format(size_label(size), statistic)
                metrics.update(_signal_metrics(tag, signal))
        per_layer = [population_signal(layer.kernels, self.null_draws) for layer in layers]
        if self.layer_scalars:
            for layer, moved, signals in zip(layers, drifts, per_layer, strict=True):
                tag = functools.partial(names.TRACKING_LAYER.format, layer.name)
                metrics[tag("cosine_distance")] = moved.cosine_distance
                metrics[tag("norm_change")] = moved.norm_change
                metrics.update({tag(f"{statistic}_z"): s.z for statistic, s in signals.items()})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

        writers = _writers(trainer)
        if self.images and writers:
            tables = [
                (f"since init (step {self.init['step']})", since_init),
                (f"since the previous snapshot (step {self.previous['step']})", since_previous),
            ]
            heading = f"{len(now)} depthwise kernels at step {step}: detailed classes"
            images = {
                names.TRACKING_TRANSITIONS_IMAGE: transition_image(tables, DETAILED_CLASSES, heading),
                names.TRACKING_LAYERS_IMAGE: layer_drift_image(
                    [layer.name for layer in layers],
                    drifts,
                    per_layer,
                    f"step {step}, drift from step {self.init['step']}",
                ),
            }
            for writer in writers:
                for tag, image in images.items():
                    writer.add_image(tag, image, step, dataformats="HWC")


def _signal_metrics(prefix: str, signal: PopulationSignal) -> dict[str, float]:
    return {prefix: signal.observed, f"{prefix}_null": signal.null_mean, f"{prefix}_z": signal.z}


def _writers(trainer: pl.Trainer) -> list:
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]


__all__ = ["KernelTracking"]
