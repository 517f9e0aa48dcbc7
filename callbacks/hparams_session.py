"""The HParams session of a run: its settings and final metrics side by side with other runs'."""

from __future__ import annotations

import json
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks.rng_state import run_seed
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
    training starts, with the settings that tell runs of this project apart, named so that
    TensorBoard's alphabetical order (it shows the first five columns) puts the init method
    early: ``data``, ``data/batch_size``, ``init`` (the init method's registry name, ``none``
    for the model's own), ``init/<option>`` (its settings), ``model``, ``model/kernel_sizes``,
    ``model/lr``, ``model/optimizer``, ``model/kwargs``, ``seed``, ``snapshot/classifier``. The
    metrics are :data:`METRICS`, which TensorBoard reads from the run's scalars (their last
    value). A resumed fit writes no second session.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.ckpt_path is not None:
            return
        loggers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not loggers:
            return
        from torch.utils.tensorboard.summary import hparams

        params = {key: _plain(value) for key, value in run_params(trainer, pl_module).items()}
        experiment, start, end = hparams(params, {name: 0.0 for name in METRICS})
        for logger in loggers:
            # Lightning's own log_hyperparams writes through the same file writer; writing here
            # keeps the session in the run's folder without logging dummy metric values
            writer = logger.experiment._get_file_writer()
            for summary in (experiment, start, end):
                writer.add_summary(summary)


def run_params(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
    """The settings of a run that the HParams session shows (see :class:`HParamsSession`)."""
    from callbacks.depthwise_init import NONE, DepthwiseInit
    from callbacks.kernel_snapshot import KernelSnapshot

    params: dict[str, Any] = {}
    if trainer.datamodule is not None:
        params["data"] = type(trainer.datamodule).__name__
        if "batch_size" in trainer.datamodule.hparams:
            params["data/batch_size"] = trainer.datamodule.hparams["batch_size"]
    init = next((cb for cb in trainer.callbacks if isinstance(cb, DepthwiseInit)), None)
    method = None if init is None else init.method
    params["init"] = NONE if method is None else method.name
    if method is not None:
        params.update({f"init/{key}": value for key, value in method.settings().items()})
    hp = pl_module.hparams
    for key in ("lr", "optimizer"):
        if key in hp:
            params[f"model/{key}"] = hp[key]
    params["model"] = hp.get("model_name", type(pl_module).__name__)
    params["model/kernel_sizes"] = _kernel_sizes(pl_module)
    params["model/kwargs"] = hp.get("model_kwargs") or {}
    params["seed"] = run_seed(trainer, default=-1)
    snapshot = next((cb for cb in trainer.callbacks if isinstance(cb, KernelSnapshot)), None)
    if snapshot is not None:
        params["snapshot/classifier"] = snapshot.classifier.name
    return params


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
