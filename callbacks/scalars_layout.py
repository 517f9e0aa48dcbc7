"""The custom-scalars layout: "above chance?" at a glance, one chart per kernel class."""

from __future__ import annotations

import re

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from neural_echos import logged_names as names


def _exactly(*tags: str) -> list[str]:
    """Anchored regexes: TensorBoard searches a chart's regexes in every tag (``on_center`` would
    also match ``layer/x/on_center``)."""
    return [f"^{re.escape(tag)}$" for tag in tags]


def build_layout() -> dict[str, dict[str, list]]:
    """TensorBoard's custom_scalar layout: ``{category: {chart title: ["Multiline", [tag regexes]]}}``.

    One chart per class, each with two lines per run: the observed share and the share chance
    alone gives (null kernels), so that "above chance?" is the gap between a run's two lines; the
    chart scales to its own lines (a 3 % share and a 0 % chance no longer sit on the axis of a
    share near 1). The categories, in order: the three classes, the excess over chance (one
    chart per class, 0 = chance), accuracy, loss and the learning rate, the taxonomy classes, and
    the kernel tracking (kept / gained / lost since init beside chance, drift, population signal).
    """
    classes = {
        f"{name}: observed vs chance": [
            "Multiline",
            _exactly(names.SHARE.format(name), names.CHANCE.format(name)),
        ]
        for name in names.CLASSES
    }
    excess = {
        f"{name}: observed - chance (0 = chance)": ["Multiline", _exactly(names.EXCESS.format(name))]
        for name in names.EXCESS_CLASSES
    }
    taxonomy = {
        f"{name}: observed vs chance": [
            "Multiline",
            _exactly(names.TAXONOMY_SHARE.format(name), names.TAXONOMY_CHANCE.format(name)),
        ]
        for name in names.TAXONOMY_CLASSES
    }
    taxonomy["named by the taxonomy: observed vs chance"] = [
        "Multiline",
        _exactly(names.NAMED, names.NAMED_CHANCE),
    ]
    training = {
        names.ACC: ["Multiline", _exactly(names.ACC)],
        "loss: train (epoch) and val": ["Multiline", _exactly(names.TRAIN_LOSS_EPOCH, names.VAL_LOSS)],
        "learning rate": ["Multiline", [f"^{re.escape(names.LEARNING_RATE)}"]],
    }
    tracking = {
        f"{key} since init: observed vs chance": [
            "Multiline",
            _exactly(
                names.TRACKING_TRANSITION.format("since_init", key),
                names.TRACKING_TRANSITION.format("since_init", f"{key}_chance"),
            ),
        ]
        for key in ("retained", "gained", "lost")
    }
    tracking["drift from init: median cosine distance"] = [
        "Multiline",
        _exactly(names.TRACKING_DRIFT.format("cosine_distance")),
    ]
    tracking["population DoG signal, z over its permuted null (per kernel size)"] = [
        "Multiline",
        [
            f"^{re.escape(names.TRACKING_POPULATION.format('SIZE', 'dog_energy_z')).replace('SIZE', '[0-9x]+')}$"
        ],
    ]
    return {
        "kernel classes: observed vs chance": classes,
        "kernel classes: excess over chance": excess,
        "training": training,
        "kernel taxonomy: observed vs chance": taxonomy,
        "kernel tracking: which kernels moved (docs/tracking.md)": tracking,
    }


LAYOUT = build_layout()


class ScalarsLayout(Callback):
    """Write :data:`LAYOUT` to every TensorBoard logger when a fit starts (rank zero only).

    In TensorBoard's "Custom Scalars" tab each kernel class then has its own chart with its
    chance line, next to accuracy and loss, whatever the alphabetical order of the tags.
    """

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_custom_scalars(LAYOUT)
