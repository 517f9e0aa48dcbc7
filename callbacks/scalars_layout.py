"""The custom-scalars layout: the run's key curves on one TensorBoard page, chance lines included."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

# TensorBoard's custom_scalar plugin: {category: {chart title: ["Multiline", [tag regexes]]}}
LAYOUT = {
    "neural-echos": {
        "kernel classes: observed (proportion) and chance": [
            "Multiline", [r"kernels/proportion/.*", r"kernels/chance/.*"],
        ],
        "excess over chance": ["Multiline", [r"kernels/excess/.*"]],
        "kernel taxonomy: observed and chance": [
            "Multiline", [r"kernels/taxonomy/.*", r"kernels/taxonomy_chance/.*"],
        ],
        "val/acc1 and train loss": ["Multiline", [r"val/acc1", r"train/loss_epoch", r"val/loss"]],
        "learning rate": ["Multiline", [r"train/lr.*"]],
    }
}


class ScalarsLayout(Callback):
    """Write :data:`LAYOUT` to every TensorBoard logger when a fit starts (rank zero only).

    In TensorBoard's "Custom Scalars" tab the class shares and their chance lines then share one
    chart, next to accuracy and loss, whatever the alphabetical order of the tags.
    """

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_custom_scalars(LAYOUT)
