"""The HParams session of a run: its settings and final metrics side by side with other runs'."""

from __future__ import annotations

import json
import os
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from neural_echos.collect import kernels_from_module
from neural_echos.depthwise import NoDepthwiseLayersError

# Metrics shown in the HParams table (their last value in the run)
METRICS = (
    "val/acc1",
    "kernels/proportion/on_center",
    "kernels/proportion/off_center",
    "kernels/excess/on_center",
    "kernels/excess/off_center",
)


class HParamsSession(Callback):
    """Write one HParams session per fit to every TensorBoard logger (rank zero only).

    Lightning writes hyper-parameters to ``hparams.yaml`` but no HParams session unless metrics
    are passed, so TensorBoard's HParams tab stays empty. This callback writes the session when
    training starts (after Lightning has logged the module's and the DataModule's
    hyper-parameters and :class:`~callbacks.DepthwiseInit` its ``init/*`` settings): every
    logged hyper-parameter (nested values as JSON text), plus ``seed``, ``data`` (the DataModule
    class), ``kernel_sizes`` and ``snapshot/classifier``; the metrics are :data:`METRICS`, which
    TensorBoard reads from the run's scalars. A resumed fit writes no second session.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.ckpt_path is not None:
            return
        loggers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not loggers:
            return
        from torch.utils.tensorboard.summary import hparams

        extra = {"seed": int(os.environ.get("PL_GLOBAL_SEED", -1)), "kernel_sizes": _kernel_sizes(pl_module)}
        if trainer.datamodule is not None:
            extra["data"] = type(trainer.datamodule).__name__
        snapshot = next((cb for cb in trainer.callbacks if hasattr(cb, "classifier")), None)
        if snapshot is not None:
            extra["snapshot/classifier"] = getattr(snapshot.classifier, "name", type(snapshot.classifier).__name__)
        for logger in loggers:
            params = {key: _plain(value) for key, value in {**dict(logger.hparams), **extra}.items()}
            experiment, start, end = hparams(params, {name: 0.0 for name in METRICS})
            # Lightning's own log_hyperparams writes through the same file writer; writing here
            # keeps the session in the run's folder without logging dummy metric values
            writer = logger.experiment._get_file_writer()
            for summary in (experiment, start, end):
                writer.add_summary(summary)


def _kernel_sizes(pl_module: pl.LightningModule) -> str:
    try:
        layers = kernels_from_module(getattr(pl_module, "model", pl_module))
    except NoDepthwiseLayersError:
        return "none"
    sizes = sorted({layer.kernel_size for layer in layers})
    return ",".join(f"{kh}x{kw}" for kh, kw in sizes)


def _plain(value: Any) -> bool | int | float | str:
    if isinstance(value, (bool, int, float, str)):
        return value
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)
