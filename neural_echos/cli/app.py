"""The LightningCLI of neural-echos: sections, links, default callbacks and plugins (used by
run.py). The rules that keep runs apart are in :mod:`neural_echos.cli.run_folders`, resume in
:mod:`neural_echos.cli.resume`, parse errors in :mod:`neural_echos.cli.parse_errors`."""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from jsonargparse import Namespace
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from callbacks import (
    DepthwiseInit,
    FiniteLossGuard,
    HParamsSession,
    KernelProjector,
    KernelSnapshot,
    KernelTracking,
    LearningRateLogger,
    RNGStateCheckpoint,
    RunSummary,
    ScalarsLayout,
)
from callbacks.run_summary import resume_command
from callbacks.run_summary import run_folder_of as run_folder
from neural_echos import safe_yaml
from neural_echos.cli.atomic_checkpoint_io import AtomicCheckpointIO
from neural_echos.cli.config_files import ConfigFile
from neural_echos.cli.parse_errors import NeuralEchosParser, check_config_files
from neural_echos.cli.resume import SEED_DEFAULT, load_checkpoint_for, reconcile_with_checkpoint
from neural_echos.cli.run_config import RunConfig
from neural_echos.cli.run_folders import (
    LAST_IF_ANY,
    adopt_run_folder_of,
    check_checkpoint_dirs,
    check_run_folder,
    find_last_checkpoint,
    lock_run_folder,
    remove_failed_run_folder,
    slurm_root_dir,
)
from neural_echos.errors import ConfigError
from neural_echos.init import method_name

# The Rich progress bar redraws every this many steps: redrawing every step cost up to 10 % of
# a small model's CPU training throughput on 2 cores (benchmarks/bench_lightning_overhead.py).
PROGRESS_REFRESH_STEPS = 10
SUBCOMMANDS = ("fit", "validate", "test", "predict")
INTERRUPTED_EXIT_STATUS = 130  # a shell's status for a process ended by SIGINT (128 + 2)


class ProgressBar(RichProgressBar):
    """Lightning's Rich progress bar without the logger's version (``v_num``, a number that says
    nothing here: the run folder does) and with epochs counted from 1, as the run summary,
    the checkpoint names and the README count them (``Epoch 2/2`` for the last of two)."""

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics

    def _get_train_description(self, current_epoch: int) -> str:
        # RichProgressBar's own counts from 0 ("Epoch 1/1" for the last of two); no public hook
        description = f"Epoch {current_epoch + 1}"
        if self.trainer.max_epochs is not None and self.trainer.max_epochs > 0:
            description += f"/{self.trainer.max_epochs}"
        return f"{description:{max(len(description), len(self.validation_description))}}"


class BestCheckpoint(ModelCheckpoint):
    """ModelCheckpoint whose file names count epochs from 1 (``best-epoch002`` is the second
    epoch's), as the progress bar, the run summary, the report and the README count them;
    Lightning formats ``{epoch}`` from 0. Its state in checkpoints keeps ModelCheckpoint's key,
    so runs saved before still resume with their best score."""

    def format_checkpoint_name(
        self, metrics: dict, filename: str | None = None, ver: int | None = None, prefix: str | None = None
    ) -> str:
        if "epoch" in metrics:
            metrics = {**metrics, "epoch": metrics["epoch"] + 1}
        return super().format_checkpoint_name(metrics, filename, ver, prefix)

    @property
    def state_key(self) -> str:
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)


class _DropLightningTips(logging.Filter):
    """Lightning's advertisement for its cloud logger ("💡 Tip: ... litlogger"), printed at every run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_lightning_noise() -> None:
    """Keep what a run prints about the run: Lightning's tips and a torch deprecation raised inside
    Lightning's own code (nothing a user of this project can act on) are left out."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
        logger.addFilter(_DropLightningTips())
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class NeuralEchosCLI(LightningCLI):
    def init_parser(self, **kwargs) -> LightningArgumentParser:
        # LightningCLI's, with --config files that may extend a `base:` and merge dicts
        # (neural_echos/cli/config_files.py)
        # allow_abbrev off: argparse would take --trainer.max_epoch as --trainer.max_epochs, silently
        parser = self.parser_class(
            **{"dump_header": [f"lightning.pytorch=={pl.__version__}"], "allow_abbrev": False, **kwargs}
        )
        parser.add_argument(
            "-c", "--config", action=ConfigFile, help="Path to a configuration file in json or yaml format."
        )
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the DataModule knows the classes and the input size; the model takes them from it
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.image_size", "model.image_size", apply_on="instantiate")
        # the best checkpoint by val top-1, configurable as `checkpoint.*` (last.ckpt: see below)
        parser.add_lightning_class_args(BestCheckpoint, "checkpoint")
        # depthwise initialisation (default: none, the model's own), chosen with `init.*`
        parser.add_lightning_class_args(DepthwiseInit, "init")
        # kernel proportions and grids in TensorBoard every epoch, configurable as `snapshot.*`
        parser.add_lightning_class_args(KernelSnapshot, "snapshot")
        # per-kernel transitions, drift and population signal (`tracking.*`), the Projector (`projector.*`)
        parser.add_lightning_class_args(KernelTracking, "tracking")
        parser.add_lightning_class_args(KernelProjector, "projector")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc1",
                "checkpoint.mode": "max",
                "checkpoint.filename": "best-epoch{epoch:03d}-acc{val/acc1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )

    # ---------------------------------------------------------------- --ckpt_path and resume

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        if self.config.get("subcommand") in SUBCOMMANDS:  # the run folder first: --ckpt_path last looks there
            name_run_by_init(self.config[self.config["subcommand"]])
        # before LightningCLI reads the checkpoint's hyper-parameters into the config
        self._prepare_checkpoint()
        if self.config.get("subcommand") in SUBCOMMANDS:
            check_trainer_settings(self.config[self.config["subcommand"]])

    def _prepare_checkpoint(self) -> None:
        subcommand = self.config.get("subcommand")
        if subcommand not in SUBCOMMANDS:
            return
        config = self.config[subcommand]
        ckpt_path = config.get("ckpt_path")
        if ckpt_path is None:
            return
        if ckpt_path in ("last", LAST_IF_ANY):
            ckpt_path = find_last_checkpoint(config, required=ckpt_path == "last")
            config.ckpt_path = ckpt_path
            if ckpt_path is None:
                return
        elif ckpt_path in ("best", "hpc"):
            raise ConfigError(
                f"--ckpt_path {ckpt_path} has no meaning for a new run.py process; pass the checkpoint file "
                "(e.g. logs/<name>/<version>/checkpoints/last.ckpt or best-*.ckpt), or 'last' with the run's "
                "--trainer.logger.init_args.version"
            )
        checkpoint = load_checkpoint_for(
            subcommand, ckpt_path, weights_only=config.get("weights_only") is not False
        )
        notes = reconcile_with_checkpoint(self, subcommand, config, checkpoint, ckpt_path)
        adopt_run_folder_of(config, ckpt_path, subcommand)  # after: a differing init is named as such
        if notes and rank_zero_only.rank == 0:
            print(f"resuming from {ckpt_path}: {'; '.join(notes)} (from the checkpoint)", file=sys.stderr)

    # ---------------------------------------------------------------- trainer

    def instantiate_trainer(self, **kwargs) -> Trainer:
        # The default callbacks (non-finite loss guard, RNG states in checkpoints, learning rate
        # and the TensorBoard custom-scalars layout and HParams session, Rich progress bar and model
        # summary) join whatever `trainer.callbacks` lists; the last five only when the setting they
        # depend on is on (Lightning refuses a progress bar callback with enable_progress_bar=false).
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        # the run's seed, passed explicitly: every seeded part reads it there (callbacks.rng_state.run_seed)
        seed = self._get(
            self.config, "seed_everything"
        )  # the int seeded with (LightningCLI._set_seed), or False
        seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else None
        defaults = [FiniteLossGuard(), RNGStateCheckpoint(seed=seed), latest_checkpoint()]
        if config.get("logger") is not False:
            defaults += [LearningRateLogger(), ScalarsLayout(), HParamsSession()]
        if config.get("enable_progress_bar") is not False:
            defaults.append(ProgressBar(refresh_rate=PROGRESS_REFRESH_STEPS))
        if config.get("enable_model_summary") is not False:
            defaults.append(RichModelSummary(max_depth=2))
        defaults.append(RunSummary())  # last: it prints after the progress bar's final line
        config["plugins"] = with_atomic_checkpoints(config.get("plugins"), config.get("accelerator"))
        if config.get("default_root_dir") is None:  # under SLURM: where Lightning's hpc_ckpt_N.ckpt go
            config["default_root_dir"] = slurm_root_dir(self.config.get(str(self.subcommand), self.config))
        sections = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        return self._instantiate_trainer(config, sections + defaults)

    # ---------------------------------------------------------------- fit

    def fit(self, model: LightningModule, **kwargs: Any) -> None:
        """``trainer.fit`` inside the run-folder rules (module docstring)."""
        trainer = self.trainer
        folder = run_folder(trainer)
        ckpt_path = kwargs.get("ckpt_path")
        created = False
        lock = None
        # the launching process (global rank 0) checks, before any other rank starts or writes
        if folder is not None and rank_zero_only.rank == 0:
            check_run_folder(folder, ckpt_path, trainer)
            created = not folder.exists()
            lock = lock_run_folder(folder)
        if folder is None and rank_zero_only.rank == 0:
            check_checkpoint_dirs(trainer, ckpt_path)
        try:
            trainer.fit(model, **kwargs)
        except SystemExit:
            if not trainer.interrupted:
                raise
            # Ctrl-C: Lightning shuts down gracefully and exits 1; say how to resume, exit 130 (128 + SIGINT)
            if rank_zero_only.rank == 0:
                resume = resume_command(trainer)
                print(
                    f"interrupted: resume with {resume}"
                    if resume
                    else "interrupted before the first "
                    "epoch ended: no checkpoint to resume from; run the command again",
                    file=sys.stderr,
                )
            raise SystemExit(INTERRUPTED_EXIT_STATUS) from None
        except BaseException:
            # only a folder this process created and holds the lock of (so no other run shares it)
            if created and lock is not None and trainer.global_step == 0:
                remove_failed_run_folder(folder, lock, Path(trainer.loggers[0].save_dir))
            raise
        if trainer.num_training_batches == 0 and trainer.limit_train_batches != 0:
            raise ConfigError(
                "the training set is empty (0 batches): nothing was trained. Check the data settings "
                "(data.root, data.val_split, class subsets or fractions) and that batch_size is not larger than "
                "the training set"
            )


def check_trainer_settings(config: Namespace) -> None:
    """Settings that pass the parser but fail deep inside the run (each was a traceback).

    Raises:
        ConfigError: ``seed_everything`` outside numpy's 0..2**32-1; a 64-bit ``trainer.precision``
            (the data pipelines normalise to float32, which a float64 model refuses).
    """
    seed = config.get("seed_everything")
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed <= 2**32 - 1:
        raise ConfigError(f"--seed_everything {seed} is out of range: a seed is an integer in 0..{2**32 - 1}")
    precision = str((config.get("trainer") or Namespace()).get("precision"))
    if precision in ("64", "64-true", "double"):
        raise ConfigError(
            f"--trainer.precision {precision}: the data pipelines give float32 images, which a float64 model "
            "refuses; use 32-true (the default), 16-mixed or bf16-mixed"
        )


def name_run_by_init(config) -> None:
    """TensorBoard run names that say what they are: ``<name>/<init method>/version_N``.

    The TensorBoard logger's ``name`` (the recipe's, e.g. ``quickstart``) gets the init method's
    registry name appended (``quickstart/dog``, ``quickstart/none``; ``quickstart/dog+frozen`` with
    ``init.freeze``), unless it already ends with it, so a saved ``config.yaml`` run again, or a
    resume with the same config and ``--ckpt_path``, writes into the same folder.
    """
    logger = config.get("trainer", {}).get("logger")
    if not (
        isinstance(logger, Namespace) and str(logger.get("class_path", "")).endswith("TensorBoardLogger")
    ):
        return
    method = config.get("init", {}).get("method")
    label = "none" if method is None else method_name(str(method.get("class_path", ""))) or "custom"
    if config.get("init", {}).get("freeze"):  # frozen depthwise weights: never filed with trained runs
        label += "+frozen"
    name = logger.init_args.get("name") or "default"
    if name.rstrip("/").split("/")[-1] != label:
        logger.init_args.name = f"{name.rstrip('/')}/{label}"


def latest_checkpoint() -> ModelCheckpoint:
    """``last.ckpt`` rewritten at every epoch end, for ``--ckpt_path last``.

    A separate callback because Lightning's ``save_last`` only writes when the monitored
    checkpoint is written, so with a monitor and no improvement last.ckpt would go stale.
    """
    return ModelCheckpoint(filename="last", monitor=None, save_top_k=1, enable_version_counter=False)


def with_atomic_checkpoints(plugins: Any, accelerator: Any) -> list:
    """The trainer's plugins plus :class:`AtomicCheckpointIO`, unless they name a CheckpointIO
    already or the accelerator is a TPU (XLA saves through its own CheckpointIO)."""
    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if any(isinstance(p, CheckpointIO) for p in plugins) or str(accelerator).lower() in ("tpu", "xla"):
        return plugins
    return [*plugins, AtomicCheckpointIO()]


TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "logs", "name": "default", "default_hp_metric": False},
    },
}


def main(args: list[str] | None = None) -> NeuralEchosCLI:
    """``run.py fit|validate|test|predict ...``: the CLI with this project's defaults (returned, for tests)."""
    from lightning_modules import ImageClassifier

    safe_yaml.bound_jsonargparse()  # command-line values and config files, as jsonargparse reads them
    quiet_lightning_noise()
    check_config_files(sys.argv[1:] if args is None else args)
    return NeuralEchosCLI(
        ImageClassifier,
        datamodule_class=None,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=SEED_DEFAULT,
        parser_class=NeuralEchosParser,
        save_config_callback=RunConfig,
        parser_kwargs={
            "prog": "run.py",
            "description": "neural-echos: train and evaluate (LightningCLI). Four more subcommands: "
            "`run.py analyze --help` (kernels of a checkpoint), `run.py survey --help` (several), "
            "`run.py compare --help` (two checkpoints of one run) and `run.py report --help` (compare runs).",
        },
        args=args,  # None: read sys.argv
    )
