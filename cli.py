"""The LightningCLI of neural-echos: sections, links and default callbacks (used by run.py)."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from callbacks import (
    DepthwiseInit,
    FiniteLossGuard,
    HParamsSession,
    KernelSnapshot,
    LearningRateLogger,
    RNGStateCheckpoint,
    ScalarsLayout,
)
from cli_configs import ConfigFile
from neural_echos.init import method_name

# The Rich progress bar redraws every this many steps: redrawing every step cost up to 10 % of
# a small model's CPU training throughput on 2 cores (benchmarks/bench_lightning_overhead.py).
PROGRESS_REFRESH_STEPS = 10


class NeuralEchosCLI(LightningCLI):
    def init_parser(self, **kwargs) -> LightningArgumentParser:
        # LightningCLI's, with --config files that may extend a `base:` and merge dicts (cli_configs.py)
        parser = LightningArgumentParser(**{"dump_header": [f"lightning.pytorch=={pl.__version__}"], **kwargs})
        parser.add_argument("-c", "--config", action=ConfigFile, help="Path to a configuration file in json or yaml format.")
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the DataModule knows the classes and the input size; the model takes them from it
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.image_size", "model.image_size", apply_on="instantiate")
        # the best checkpoint by val top-1, configurable as `checkpoint.*` (last.ckpt: see below)
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # depthwise initialisation (default: none, the model's own), chosen with `init.*`
        parser.add_lightning_class_args(DepthwiseInit, "init")
        # kernel proportions and grids in TensorBoard every epoch, configurable as `snapshot.*`
        parser.add_lightning_class_args(KernelSnapshot, "snapshot")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc1",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-epoch{epoch:03d}-acc{val/acc1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )

    def before_instantiate_classes(self) -> None:
        if self.subcommand == "fit":
            name_run_by_init(self.config["fit"])

    def instantiate_trainer(self, **kwargs) -> Trainer:
        # The default callbacks (non-finite loss guard, RNG states in checkpoints, learning rate
        # and the TensorBoard custom-scalars layout and HParams session, Rich progress bar and model
        # summary) join whatever `trainer.callbacks` lists; the last five only when the setting they
        # depend on is on (Lightning refuses a progress bar callback with enable_progress_bar=false).
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        defaults = [FiniteLossGuard(), RNGStateCheckpoint(), latest_checkpoint()]
        if config.get("logger") is not False:
            defaults += [LearningRateLogger(), ScalarsLayout(), HParamsSession()]
        if config.get("enable_progress_bar") is not False:
            defaults.append(RichProgressBar(refresh_rate=PROGRESS_REFRESH_STEPS))
        if config.get("enable_model_summary") is not False:
            defaults.append(RichModelSummary(max_depth=2))
        sections = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        return self._instantiate_trainer(config, sections + defaults)


def name_run_by_init(config) -> None:
    """TensorBoard run names that say what they are: ``<name>/<init method>/version_N``.

    The TensorBoard logger's ``name`` (the recipe's, e.g. ``quickstart``) gets the init method's
    registry name appended (``quickstart/dog``, ``quickstart/none``), unless it already ends with
    it, so a saved ``config.yaml`` run again, or a resume with the same config and
    ``--ckpt_path``, writes into the same folder.
    """
    logger = config.get("trainer", {}).get("logger")
    if not (isinstance(logger, Namespace) and str(logger.get("class_path", "")).endswith("TensorBoardLogger")):
        return
    method = config.get("init", {}).get("method")
    label = "none" if method is None else method_name(str(method.get("class_path", ""))) or "custom"
    name = logger.init_args.get("name") or "default"
    if name.rstrip("/").split("/")[-1] != label:
        logger.init_args.name = f"{name.rstrip('/')}/{label}"


def latest_checkpoint() -> ModelCheckpoint:
    """``last.ckpt`` rewritten at every epoch end, for ``--ckpt_path last``.

    A separate callback because Lightning's ``save_last`` only writes when the monitored
    checkpoint is written, so with a monitor and no improvement last.ckpt would go stale.
    """
    return ModelCheckpoint(filename="last", monitor=None, save_top_k=1, enable_version_counter=False)


TRAINER_DEFAULTS = {
    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "logs", "name": "default", "default_hp_metric": False}},
}
