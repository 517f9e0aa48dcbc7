"""The HParams session of a run: its settings and final metrics side by side with other runs'."""

from __future__ import annotations

import json
import math
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks.rng_state import run_seed
from neural_echos import logged_names as names
from neural_echos.collect import kernels_from_module
from neural_echos.depthwise import NoDepthwiseLayersError

METRICS = names.HPARAMS_METRICS  # shown in the HParams table (their last value in the run)


class HParamsSession(Callback):
    """Write one HParams session per fit to every TensorBoard logger (rank zero only).

    Lightning writes hyper-parameters to ``hparams.yaml`` but no HParams session unless metrics
    are passed, so TensorBoard's HParams tab stays empty. This callback writes the session when
    training starts, with the settings that tell runs of this project apart (the keys of
    :mod:`neural_echos.logged_names`): ``init/method`` (the init method's registry name, ``none``
    for the model's own), ``init/settings`` (the options that differ from the method's defaults,
    one line), ``init/<option>`` for the options of *every* registered init method (``-`` where
    the run's method does not take it), ``model``, ``model/kernel_sizes``, ``model/lr``,
    ``model/optimizer``, ``model/kwargs``, ``data``, ``data/batch_size``, ``seed`` and
    ``snapshot/classifier``.

    Why every method's options: TensorBoard takes the list of HParams columns from the first run
    it finds with an experiment summary, so a run of another init method would hide the DoG
    options; every run declares the same keys. TensorBoard ticks the first five columns, the
    ones marked as differing first: :data:`neural_echos.logged_names.HPARAMS_SHOWN` are marked.
    The trial ID (session group) is short: ``<init method>/v<version>``. Init options are logged
    as text (numbers with 12 digits), so that one column holds one type in every run.
    The metrics are :data:`METRICS`, which TensorBoard reads from the run's scalars (their last
    value). A resumed fit writes no second session.
    """

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.ckpt_path is not None:
            return
        loggers = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if not loggers:
            return
        params = {key: _plain(value) for key, value in run_params(trainer, pl_module).items()}
        for logger in loggers:
            for summary in session_summaries(params, trial_id(logger, params[names.INIT_METHOD])):
                # no public SummaryWriter method writes a session without metric values;
                # SummaryWriter.add_hparams itself writes through the public file_writer
                logger.experiment.file_writer.add_summary(summary)


def trial_id(logger: TensorBoardLogger, method: str) -> str:
    """``dog/v0``: the init method and the run's version, short enough for the HParams table."""
    version = logger.version
    version = f"v{version}" if isinstance(version, int) else str(version).replace("version_", "v")
    return f"{method}/{version}"


def session_summaries(params: dict[str, Any], trial: str) -> list:
    """The experiment, session-start and session-end summaries of one run (torch's ``hparams``),
    with the trial ID as session group and :data:`names.HPARAMS_SHOWN` marked as differing."""
    from tensorboard.plugins.hparams import plugin_data_pb2
    from torch.utils.tensorboard.summary import hparams

    experiment, start, end = hparams(params, {name: 0.0 for name in METRICS})
    for summary, edit in ((experiment, _mark_shown), (start, lambda data: _group(data, trial))):
        value = summary.value[0]
        data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
        edit(data)
        value.metadata.plugin_data.content = data.SerializeToString()
    return [experiment, start, end]


def _mark_shown(data) -> None:
    for info in data.experiment.hparam_infos:
        info.differs = info.name in names.HPARAMS_SHOWN


def _group(data, trial: str) -> None:
    data.session_start_info.group_name = trial


def init_option_keys() -> list[str]:
    """``init/<option>`` for every option of every registered init method, sorted."""
    from neural_echos.init import init_methods
    from neural_echos.tools.report import method_defaults

    options = {key for method in init_methods() for key in (method_defaults(method) or {})}
    return sorted(names.INIT_SETTING.format(key) for key in options)


def run_params(trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
    """The settings of a run that the HParams session shows (see :class:`HParamsSession`)."""
    from callbacks.depthwise_init import NONE, DepthwiseInit
    from callbacks.kernel_snapshot import KernelSnapshot
    from neural_echos.tools.report import init_label

    params: dict[str, Any] = {}
    if trainer.datamodule is not None:
        params[names.DATA] = type(trainer.datamodule).__name__
        if "batch_size" in trainer.datamodule.hparams:
            params[names.DATA_BATCH_SIZE] = trainer.datamodule.hparams["batch_size"]
    init = next((cb for cb in trainer.callbacks if isinstance(cb, DepthwiseInit)), None)
    method = None if init is None else init.method
    params[names.INIT_METHOD] = NONE if method is None else method.name
    settings = {} if method is None else dict(method.settings())
    params.update({key: names.NOT_APPLICABLE for key in init_option_keys()})
    params.update({names.INIT_SETTING.format(key): _setting_text(value) for key, value in settings.items()})
    params[names.INIT_FREEZE] = bool(init is not None and init.freeze)  # a frozen control vs its trained twin
    label = init_label(params[names.INIT_METHOD], settings)
    params[names.INIT_SETTINGS] = label[len(params[names.INIT_METHOD]) :].strip() or "defaults"
    hp = pl_module.hparams
    for key, name in (("lr", names.MODEL_LR), ("optimizer", names.MODEL_OPTIMIZER)):
        if key in hp:
            params[name] = hp[key]
    params[names.MODEL] = hp.get("model_name", type(pl_module).__name__)
    params[names.MODEL_KERNEL_SIZES] = _kernel_sizes(pl_module)
    params[names.MODEL_KWARGS] = hp.get("model_kwargs") or {}
    params[names.SEED] = run_seed(trainer, default=-1)
    snapshot = next((cb for cb in trainer.callbacks if isinstance(cb, KernelSnapshot)), None)
    if snapshot is not None:
        params[names.SNAPSHOT_CLASSIFIER] = snapshot.classifier.name
    return params


def _setting_text(value: Any) -> str:
    """An init option as text: numbers with 12 digits (``0.5``, ``1.41421356237``: settings that differ
    read differently), lists as JSON, None as ``None``."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.12g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


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
