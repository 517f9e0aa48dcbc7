"""The LightningCLI of neural-echos: sections, links, default callbacks and plugins, and the
rules that keep runs apart (used by run.py).

Runs and resumes (README "Reliability" lists what is guaranteed and the tests that show it):

- A run folder (``<save_dir>/<name>/<version>/`` of the TensorBoard or CSV logger) that already
  holds anything is never trained into by a fresh ``fit``: a fixed ``--trainer.logger.init_args.version``
  that holds a run refuses to start unless ``--ckpt_path`` is one of that run's checkpoints (or
  SLURM requeues it from Lightning's ``hpc_ckpt_N.ckpt``, kept in the run folder: under SLURM that
  folder is the trainer's ``default_root_dir``). A lock file (``.lock``) refuses a second
  process writing to the same folder at the same time.
- ``config.yaml`` of a run is written once, by the process that started it; a resume writes
  ``config.resume-N.yaml`` and validate/test/predict in that folder ``config.<subcommand>-N.yaml``.
- With no fixed logger version, a ``--ckpt_path`` file inside one of the logger's run folders
  fixes the version to that folder (a resume continues its run there; validate/test/predict log
  beside it).
- ``--ckpt_path last`` is the newest ``last*.ckpt`` of the run folder the logger settings name (a
  fixed version); none there is an error. ``--ckpt_path last-if-any`` resumes from it when it
  exists and starts the run otherwise (``scripts/sweep.sh --resume``).
- A resume continues the checkpoint's run as it was trained: a setting given on the command
  line or in a config (a value other than the argument's default) that differs from the
  checkpoint's hyper-parameters (model, data, seed) is an error listing the differences;
  settings left at their defaults take the checkpoint's values, so the seed and therefore the
  data order (EpochShuffle draws from (seed, epoch)) are the checkpoint's. Settings the
  checkpoint does not record (trainer.*, snapshot.*) follow the command line. The init section
  (``init.*``, recorded by ``DepthwiseInit`` in every checkpoint) must match the checkpoint's:
  a resume under another init method would file the run under that method.
- A fit that fails before its first training step removes the run folder it created (it holds
  nothing but the logger's empty files), so a fixed version can be started again.
"""

from __future__ import annotations

import argparse
import difflib
import fcntl
import importlib
import inspect
import os
import re
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from jsonargparse import Namespace
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, RichModelSummary, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.plugins.io import CheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_only

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
from neural_echos import safe_yaml
from neural_echos.collect import is_torchscript_archive, no_torchscript
from neural_echos.errors import ConfigError, NeuralEchosError, ResumeError, one_line, option_suggestion
from neural_echos.init import method_name
from plugins import AtomicCheckpointIO

# The Rich progress bar redraws every this many steps: redrawing every step cost up to 10 % of
# a small model's CPU training throughput on 2 cores (benchmarks/bench_lightning_overhead.py).
PROGRESS_REFRESH_STEPS = 10
SUBCOMMANDS = ("fit", "validate", "test", "predict")
SEED_DEFAULT = 42
LAST_IF_ANY = "last-if-any"
LOCK_NAME = ".lock"
# hyper-parameters a resume may change freely (where the data lies and how it is read)
FREE_DATA_KEYS = {"root", "download", "num_workers"}
# filled in from the DataModule (link_arguments below), compared there
LINKED_MODEL_KEYS = {"num_classes", "image_size"}
INTERNAL_KEYS = {"_instantiator", "_class_path"}


class ConfigParseError(NeuralEchosError, argparse.ArgumentError):
    """A config or command-line error found by the parser (unknown key, wrong type, bad YAML)."""

    def __init__(self, message: str):
        argparse.ArgumentError.__init__(self, None, message)

    def __str__(self) -> str:
        return self.message


class NeuralEchosParser(LightningArgumentParser):
    """LightningArgumentParser whose errors are one line plus a hint, not the whole usage.

    jsonargparse prints the usage (about 100 lines here) before the error; raising instead
    lets run.py report it like every other bad input (``error: ...``, exit status 2).
    """

    def error(self, message: str, ex: Exception | None = None):
        if isinstance(ex, ConfigParseError):  # a subcommand parser's error, passed up by the main parser
            raise ex
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        message, hint = tidy_parse_message(one_line(message, limit=10_000), prog)
        hint = hint or f"run `python {prog} --help` for the options"
        suggestion = option_suggestion(message, parser._option_string_actions)
        raise ConfigParseError(f"{one_line(message)}{suggestion} ({hint})") from ex


# The option keys whose value is one of our registered classes: registry name -> class name.
def _registered_classes(key: str) -> dict[str, str]:
    if key == "init.method":
        from neural_echos.init import init_methods

        return {name: cls.__name__ for name, cls in init_methods().items()}
    if key == "snapshot.classifier":
        from neural_echos.classifiers import CLASSIFIERS

        return {name: cls.__name__ for name, cls in sorted(CLASSIFIERS.items())}
    return {}


_INNER_HINT = re.compile(r" \(run `python [^`]*` for the options\)")
_UNION = re.compile(
    r'Parser key "(?P<key>[^"]+)": Does not validate against any of the Union subtypes .*?'
    r"Errors: - Problem with given class_path '(?P<cls>[^']+)': (?P<inner>.*?)(?: - Expected a <class 'NoneType'>.*)?$"
)
_OPTION = re.compile(r'Parser key "(?P<option>[^"]+)": (?P<rest>.*)$')
_UNKNOWN_CLASS = re.compile(r'Parser key "(?P<key>[^"]+)":.* Expected a dot import path string: (?P<name>\S+)')


def tidy_parse_message(message: str, prog: str = "run.py fit") -> tuple[str, str | None]:
    """jsonargparse's message for a class-valued option (``init.method``, ``snapshot.classifier``)
    lists every Union member it tried and nests another parser's hint; keep what the user got wrong.

    Returns the message and a hint (None: the generic ``--help`` one)."""
    union = _UNION.match(message)
    if union:
        key, cls = union["key"], union["cls"].rsplit(".", 1)[-1]
        inner = _INNER_HINT.sub("", union["inner"]).strip()
        option = _OPTION.match(inner)
        where = f"--{key}.{option['option']}" if option else f"--{key}"
        return f"{where} ({cls}): {option['rest'] if option else inner}", (
            f"run `python {prog} --{key}.help {cls}` for its options"
        )
    unknown = _UNKNOWN_CLASS.match(message)
    classes = _registered_classes(unknown["key"]) if unknown else {}
    if classes:
        key, name = unknown["key"], unknown["name"]
        choices = list(classes.values())
        close = [classes[name]] if name in classes else difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
        mean = f"did you mean {close[0]}? " if close else ""
        return f"--{key}: unknown class {name!r}; {mean}choose one of {', '.join(choices)}", (
            f"run `python {prog} --{key}.help CLASS` for a class's options"
        )
    return message, None


class NeuralEchosCLI(LightningCLI):
    def init_parser(self, **kwargs) -> LightningArgumentParser:
        # LightningCLI's, with --config files that may extend a `base:` and merge dicts (cli_configs.py)
        parser = self.parser_class(**{"dump_header": [f"lightning.pytorch=={pl.__version__}"], **kwargs})
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
        checkpoint = load_checkpoint_for(subcommand, ckpt_path, weights_only=config.get("weights_only") is not False)
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
        defaults = [FiniteLossGuard(), RNGStateCheckpoint(), latest_checkpoint()]
        if config.get("logger") is not False:
            defaults += [LearningRateLogger(), ScalarsLayout(), HParamsSession()]
        if config.get("enable_progress_bar") is not False:
            defaults.append(RichProgressBar(refresh_rate=PROGRESS_REFRESH_STEPS))
        if config.get("enable_model_summary") is not False:
            defaults.append(RichModelSummary(max_depth=2))
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


class RunConfig(SaveConfigCallback):
    """Save the run's config without ever overwriting one (LightningCLI's callback, rank zero).

    ``config.yaml`` is created exclusively (``open(..., "x")``), so two processes cannot both
    write it; a resume writes ``config.resume-N.yaml``, validate/test/predict in a folder that
    holds a run ``config.<subcommand>-N.yaml``. Without a logger nothing is saved (there is no
    run folder; Lightning would write config.yaml into the working directory).
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        log_dir = trainer.log_dir if trainer.loggers else None  # a collective call: on every rank
        if trainer.is_global_zero and log_dir is not None:
            folder = Path(log_dir)
            folder.mkdir(parents=True, exist_ok=True)
            resuming = self.config.get("ckpt_path") is not None or hpc_resume_path(trainer) is not None
            text = self.parser.dump(self.config, skip_none=False)
            stage = str(getattr(stage, "value", stage))  # a TrainerFn: "fit", "validate", ...
            name = self.config_filename
            if (folder / name).exists() and (stage != "fit" or resuming):
                kind = "resume" if stage == "fit" else stage
                n = 1
                while (folder / f"config.{kind}-{n}.yaml").exists():
                    n += 1
                name = f"config.{kind}-{n}.yaml"
            try:
                with open(folder / name, "x", encoding="utf-8") as f:
                    f.write(text)
            except FileExistsError:
                raise ResumeError(
                    f"{str(folder / name)!r} was written by another process that started the same run folder at the "
                    "same moment; this run stops so as not to mix into it. Choose another "
                    "--trainer.logger.init_args.version (or leave it unset for a new version_N)"
                ) from None
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


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


def with_atomic_checkpoints(plugins: Any, accelerator: Any) -> list:
    """The trainer's plugins plus :class:`AtomicCheckpointIO`, unless they name a CheckpointIO
    already or the accelerator is a TPU (XLA saves through its own CheckpointIO)."""
    plugins = [] if plugins is None else list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
    if any(isinstance(p, CheckpointIO) for p in plugins) or str(accelerator).lower() in ("tpu", "xla"):
        return plugins
    return [*plugins, AtomicCheckpointIO()]


# -------------------------------------------------------------------- run folders


def run_folder(trainer: Trainer) -> Path | None:
    """``<save_dir>/<name>/<version>`` of the first logger (where Lightning puts ``checkpoints/``),
    or None without a logger that has a save_dir."""
    if not trainer.loggers or getattr(trainer.loggers[0], "save_dir", None) is None:
        return None
    logger = trainer.loggers[0]
    version = logger.version  # a new logger picks its next free version here
    version = version if isinstance(version, str) else f"version_{version}"
    return Path(logger.save_dir) / str(logger.name or "") / version


def folder_from_config(config: Namespace) -> Path | None:
    """The run folder the logger settings of a parsed config name, when they name a fixed one.

    Raises:
        ConfigError: the logger's version is not fixed, or the logger is not one whose folder
            layout is known (TensorBoardLogger, CSVLogger).
    """
    trainer = config.get("trainer") or Namespace()
    if trainer.get("logger") is False:
        return Path(trainer.get("default_root_dir") or ".")  # checkpoints/ straight below it
    found = _logger_layout(config)
    if found is None:
        raise ConfigError(
            "--ckpt_path last needs a TensorBoardLogger or CSVLogger with a fixed version to find the run; "
            "pass the checkpoint file instead"
        )
    init_args, runs = found
    version = init_args.get("version")
    if version is None:
        raise ConfigError(
            "--ckpt_path last resumes the run of a fixed logger version, but --trainer.logger.init_args.version is "
            "not set (a new run would get a new version_N folder, with no checkpoint in it). Add "
            "--trainer.logger.init_args.version VERSION of the run to resume, or pass its checkpoint file"
        )
    return runs / (version if isinstance(version, str) else f"version_{version}")


def _logger_layout(config: Namespace) -> tuple[Namespace, Path] | None:
    """The first logger's ``init_args`` and the folder its runs go in (``<save_dir>/<name>``), for
    the loggers whose layout is known (TensorBoardLogger, CSVLogger); None for any other."""
    trainer = config.get("trainer") or Namespace()
    logger = trainer.get("logger")
    if isinstance(logger, list) and logger:
        logger = logger[0]
    if not (isinstance(logger, Namespace) and str(logger.get("class_path", "")).endswith(("TensorBoardLogger", "CSVLogger"))):
        return None
    init_args = logger.get("init_args") or Namespace()
    save_dir = init_args.get("save_dir") or trainer.get("default_root_dir") or "."
    return init_args, Path(save_dir) / str(init_args.get("name", "lightning_logs") or "")


def adopt_run_folder_of(config: Namespace, ckpt_path: str, subcommand: str = "fit") -> None:
    """A checkpoint of a run folder (``<save_dir>/<name>/<version>/checkpoints/FILE.ckpt``, the folder
    holding the run's ``config.yaml``, ``hparams.yaml`` or event files) continues in that folder: with
    no fixed logger version the logger's name (and, outside its save_dir, the save_dir) and version
    become the folder's, whatever the recipe's run name or the init label, so a resume continues its
    run (``config.resume-N.yaml``, the same TensorBoard run) and a validate/test/predict of it logs
    beside it, instead of starting a new ``version_N``. A checkpoint anywhere else leaves the
    settings as they are (a new run).

    Raises:
        ResumeError: a fit whose fixed logger version names another, empty folder (a folder that
            holds a run is refused by :func:`check_run_folder`).
    """
    found = _logger_layout(config)
    if found is None:
        return
    init_args, runs = found
    ckpt = Path(ckpt_path).resolve()
    run = ckpt.parent.parent
    if ckpt.parent.name != "checkpoints" or not _holds_a_run(run):
        return
    version = init_args.get("version")
    if version is not None:
        named = runs / (version if isinstance(version, str) else f"version_{version}")
        if subcommand == "fit" and named.resolve() != run and not _holds_a_run(named):
            raise ResumeError(
                f"--ckpt_path {ckpt_path!r} belongs to run folder {str(run)!r}, but the logger settings name "
                f"{str(named)!r}: a resume continues in its checkpoint's run folder. Drop "
                "--trainer.logger.init_args.version (the checkpoint's folder is then used), or start a new run "
                "without --ckpt_path"
            )
        return
    if run.parent == runs.resolve():
        init_args.version = run.name
        return
    save_dir = Path(init_args.get("save_dir") or ".").resolve()
    if save_dir in run.parents:
        init_args.name = str(run.parent.relative_to(save_dir))
    else:
        init_args.save_dir, init_args.name = str(run.parent), ""
    init_args.version = run.name
    if rank_zero_only.rank == 0:
        print(f"--ckpt_path {ckpt_path}: continuing in the checkpoint's run folder {str(run)!r} "
              f"(not {str(runs)!r}, which the recipe names)", file=sys.stderr)


def _holds_a_run(folder: Path) -> bool:
    """A run folder written by run.py fit: its config, Lightning's hparams.yaml or event files."""
    return folder.is_dir() and any(
        (folder / name).is_file() for name in ("config.yaml", "hparams.yaml")
    ) or any(folder.glob("events.out.tfevents.*"))


def find_last_checkpoint(config: Namespace, required: bool) -> str | None:
    """The newest ``last*.ckpt`` of the run folder the config names (as Lightning picks 'last').

    Raises:
        ResumeError: none there and ``required``.
    """
    folder = folder_from_config(config)
    checkpoints = folder / "checkpoints"
    candidates = [p for p in checkpoints.glob("last*.ckpt") if p.is_file()] if checkpoints.is_dir() else []
    if candidates:
        return str(max(candidates, key=lambda p: p.stat().st_mtime))
    if not required:
        return None
    others = sorted(p.name for p in checkpoints.glob("*.ckpt")) if checkpoints.is_dir() else []
    if others:
        hint = f"it holds {', '.join(others[:3])}: pass one of them as --ckpt_path {checkpoints}/FILE"
    elif folder.exists():
        hint = "the run there stopped before its first checkpoint: delete the folder to start it again"
    else:
        hint = ("that run does not exist: check --trainer.logger.init_args.name/version/save_dir, or drop "
                "--ckpt_path to start it")
    raise ResumeError(f"--ckpt_path last: no last checkpoint in {str(checkpoints)!r}; {hint}")


def hpc_resume_path(trainer: Trainer) -> Path | None:
    """The ``hpc_ckpt_N.ckpt`` Lightning resumes from by itself when SLURM requeued the job."""
    if not SLURMEnvironment.detect():
        return None
    candidates = list(Path(str(trainer.default_root_dir)).glob("hpc_ckpt_*.ckpt"))
    numbered = [(int(p.stem.rsplit("_", 1)[1]), p) for p in candidates if p.stem.rsplit("_", 1)[1].isdigit()]
    return max(numbered)[1] if numbered else None


def slurm_root_dir(config: Namespace) -> str | None:
    """Under SLURM, the run folder of a fixed logger version, as the trainer's ``default_root_dir``.

    Lightning saves ``hpc_ckpt_N.ckpt`` there on SIGUSR1, and a fit started under SLURM resumes
    from the newest one there. By default it is the working directory, the submit directory every
    job from it shares, so a new job, another run, would resume from an earlier run's checkpoint.
    In the run folder it belongs to its run (a requeued job keeps its id, hence
    scripts/slurm.sbatch's version). None (Lightning's default) outside SLURM or without a fixed version.
    """
    if not SLURMEnvironment.detect() or (config.get("trainer") or Namespace()).get("logger") is False:
        return None
    try:
        return str(folder_from_config(config))
    except ConfigError:
        return None


def check_run_folder(folder: Path, ckpt_path: str | None, trainer: Trainer) -> None:
    """Refuse a fit that would write into a folder holding another run (module docstring).

    Raises:
        ResumeError: the folder holds a run and this fit is not resuming from one of its checkpoints.
    """
    entries = sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME) if folder.is_dir() else []
    if not entries:
        return
    if ckpt_path is None and hpc_resume_path(trainer) is not None:
        return  # a SLURM requeue: Lightning restores the run's hpc checkpoint
    if ckpt_path is not None:
        ckpt = Path(ckpt_path).resolve()
        if folder.resolve() in ckpt.parents or ckpt.name.startswith("hpc_ckpt_"):
            return
    checkpoints = sorted((folder / "checkpoints").glob("*.ckpt")) if (folder / "checkpoints").is_dir() else []
    holds = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
    if ckpt_path is not None:
        raise ResumeError(
            f"run folder {str(folder)!r} already holds a run ({holds}) and --ckpt_path {ckpt_path!r} is not one of its "
            "checkpoints: resuming another run into it would mix the two. Leave --trainer.logger.init_args.version "
            f"unset (a new version_N) or pass a checkpoint from {str(folder / 'checkpoints')!r}"
        )
    if checkpoints:
        what = "resume it with --ckpt_path last"
    else:
        what = ("it has no checkpoint to resume (it stopped before its first checkpoint): delete the folder to "
                "start it again")
    raise ResumeError(
        f"run folder {str(folder)!r} already holds a run ({holds}); a new fit would mix into it. "
        f"{what[0].upper()}{what[1:]}, "
        "or choose another --trainer.logger.init_args.version (or leave it unset for a new version_N)"
    )


def check_checkpoint_dirs(trainer: Trainer, ckpt_path: str | None) -> None:
    """Without a logger (no run folder), a fit never writes over another run's checkpoints: every
    checkpoint folder (``dirpath``, by default ``<default_root_dir>/checkpoints``) must hold no
    ``.ckpt`` unless this fit resumes from one of them.

    Raises:
        ResumeError: a checkpoint folder holds checkpoints of another run.
    """
    resumed = Path(ckpt_path).resolve() if ckpt_path else None
    for callback in trainer.checkpoint_callbacks:
        dirpath = Path(callback.dirpath or Path(trainer.default_root_dir) / "checkpoints")
        found = sorted(dirpath.glob("*.ckpt"), key=lambda p: (not p.name.startswith("last"), p.name)) if dirpath.is_dir() else []
        if found and (resumed is None or resumed.parent != dirpath.resolve()):
            raise ResumeError(
                f"the logger is off and {str(found[0])!r} already exists: this fit would overwrite that run's "
                f"checkpoints. Resume it with --ckpt_path {found[0]!s}, or give this run another folder "
                "(--trainer.default_root_dir DIR)"
            )


def lock_run_folder(folder: Path):
    """Hold an exclusive lock on ``folder/.lock`` for the life of this process (None where the
    file system has no locks).

    Raises:
        ResumeError: another process holds it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / LOCK_NAME, "a+")  # noqa: SIM115  (held open until the process ends)
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ResumeError(
            f"another process is training into {str(folder)!r} right now; wait for it, or choose another "
            "--trainer.logger.init_args.version (or leave it unset for a new version_N)"
        ) from None
    except OSError:  # no locks on this file system (some network mounts)
        lock.close()
        return None
    return lock


def remove_failed_run_folder(folder: Path | None, lock, save_dir: Path | None = None) -> None:
    """Remove the folder a fit created when it failed before training a step and wrote no checkpoint,
    and the folders above it up to ``save_dir`` that this leaves empty (``<name>/<init method>``)."""
    if folder is None or not folder.is_dir() or any((folder / "checkpoints").glob("*.ckpt")):
        return
    if lock is not None:
        lock.close()
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if save_dir is None or parent == save_dir or save_dir not in parent.parents:
            break
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
    print(f"removed {str(folder)!r}: the run failed before its first training step", file=sys.stderr)


# -------------------------------------------------------------------- checkpoints


def load_checkpoint_for(subcommand: str, path: str, weights_only: bool = True) -> dict:
    """Read ``--ckpt_path`` (memory-mapped: tensors stay on disk) and check it can serve ``subcommand``.

    Raises:
        ResumeError: missing, a folder, unreadable, not a Lightning checkpoint, or (for fit)
            without the optimizer and loop states.
    """
    import torch

    file = Path(path)
    if not file.exists():
        raise ResumeError(f"--ckpt_path {path!r} does not exist; pass a .ckpt written by run.py fit "
                          "(logs/<name>/<version>/checkpoints/last.ckpt), or 'last' with the run's --trainer.logger.init_args.version")
    if file.is_dir():
        inside = sorted(file.glob("*.ckpt")) or sorted(file.glob("checkpoints/*.ckpt"))
        hint = f" (e.g. {str(inside[0])!r})" if inside else ""
        raise ResumeError(f"--ckpt_path {path!r} is a folder; pass a .ckpt file{hint}")
    if file.stat().st_size == 0:
        raise ResumeError(f"--ckpt_path {path!r} is empty (0 bytes): its write was interrupted. Pass another "
                          f"checkpoint of that run (e.g. a best-*.ckpt beside it)")
    if not zipfile.is_zipfile(file):
        raise ResumeError(
            f"cannot read --ckpt_path {path!r}: it is not a zip archive as torch.save writes them, so it is truncated "
            "or not a checkpoint. Pass a .ckpt written by run.py fit"
        )
    if is_torchscript_archive(file):  # torch.load(weights_only=False) would run its code via torch.jit.load
        raise ResumeError(
            f"--ckpt_path {path!r} is a TorchScript archive (torch.jit.save), whose loading runs the code inside it, "
            "so it is not read: pass a .ckpt written by run.py fit"
        )
    try:
        with no_torchscript(file, "--ckpt_path"):
            checkpoint = torch.load(file, map_location="cpu", weights_only=weights_only, mmap=True)
    except NeuralEchosError as err:
        raise ResumeError(str(err)) from err
    except Exception as err:  # EOFError, UnpicklingError, RuntimeError (zip) ...
        if str(err).startswith("Weights only load failed"):
            reason = ("it holds Python objects that torch's safe loader refuses; if you trust the file, "
                      "pass --weights_only false")
        else:
            reason = f"{type(err).__name__}: {one_line(str(err), 200)}; it is truncated or not a torch checkpoint"
        raise ResumeError(f"cannot read --ckpt_path {path!r}: {reason}") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "pytorch-lightning_version" not in checkpoint:
        raise ResumeError(
            f"--ckpt_path {path!r} is not a Lightning checkpoint (no state_dict and pytorch-lightning_version): "
            "pass a .ckpt written by run.py fit; for a plain state dict use `run.py analyze --checkpoint`"
        )
    if subcommand == "fit" and not checkpoint.get("optimizer_states") and "loops" not in checkpoint:
        raise ResumeError(
            f"--ckpt_path {path!r} holds weights only (saved with save_weights_only), so a fit cannot resume from "
            "it; use it with validate/test/predict"
        )
    return checkpoint


def reconcile_with_checkpoint(
    cli: NeuralEchosCLI, subcommand: str, config: Namespace, checkpoint: dict, path: str
) -> list[str]:
    """Take unset settings from the checkpoint; refuse set ones that differ (module docstring).

    Returns notes on what was taken from the checkpoint. Raises :class:`ResumeError` listing
    every conflict.
    """
    conflicts: list[str] = []
    adopted: list[str] = []
    hparams = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if k not in INTERNAL_KEYS}
    model_config = config.get("model")
    if hparams and isinstance(model_config, Namespace):
        defaults = _signature_defaults(cli.model_class)
        for key, saved in hparams.items():
            if key in LINKED_MODEL_KEYS or key not in model_config:
                continue
            given = model_config.get(key)
            if _same(given, saved):
                continue
            if key in defaults and _same(given, defaults[key]):
                adopted.append(f"model.{key}")  # LightningCLI then sets it from the checkpoint
            else:
                conflicts.append(f"model.{key} {_show(given)} (given) vs {_show(saved)} (checkpoint)")
    if subcommand == "fit":
        conflicts += _reconcile_data(config, checkpoint, adopted, path)
        conflicts += _reconcile_seed(config, checkpoint, adopted)
        conflicts += _reconcile_init(config, checkpoint)
    if conflicts:
        run_config = Path(path).resolve().parent.parent / "config.yaml"
        own = f", e.g. resume with the run's own --config {run_config}" if run_config.is_file() else ""
        raise ResumeError(
            f"--ckpt_path {path!r}: these settings differ from the run the checkpoint continues: {'; '.join(conflicts)}. "
            f"A resume continues the run as it was trained: drop them or give the checkpoint's values{own}; to train "
            "with other settings, start a new run without --ckpt_path"
        )
    return [f"{', '.join(adopted)}"] if adopted else []


def _loaded_datamodule(class_path: str) -> Any:
    """The LightningDataModule class ``class_path`` names if its module is this project's
    ``datamodules`` package or already imported; ``None`` otherwise. Imports nothing else."""
    import datamodules  # noqa: F401  (ours: CIFAR10DataModule, ImageNetDataModule)

    module_name, _, name = class_path.rpartition(".")
    module = sys.modules.get(module_name)
    cls = getattr(module, name, None) if module is not None else None
    return cls if isinstance(cls, type) and issubclass(cls, pl.LightningDataModule) else None


def _reconcile_data(config: Namespace, checkpoint: dict, adopted: list[str], path: str = "") -> list[str]:
    saved = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    saved_class = saved.pop("_class_path", None)
    saved = {k: v for k, v in saved.items() if k not in INTERNAL_KEYS}
    if not saved_class:
        return []
    data = config.get("data")
    if data is None:  # no data config given: the checkpoint's DataModule, as it was
        if _loaded_datamodule(str(saved_class)) is None:  # a name from the file is never imported
            raise ResumeError(
                f"--ckpt_path {path!r} names the DataModule {str(saved_class)[:200]!r}, which is not one of this "
                "project's (datamodules.*) nor already loaded, and a module named in a checkpoint is never imported: "
                f"if you trust it, pass --data {str(saved_class)[:200]} with its settings yourself"
            )
        config.data = Namespace(class_path=saved_class, init_args=Namespace(**saved))
        adopted.append("data")
        return []
    if not isinstance(data, Namespace) or "class_path" not in data:
        return []
    if data.class_path != saved_class:
        return [f"data {data.class_path} (given) vs {saved_class} (checkpoint)"]
    init_args = data.get("init_args") or Namespace()
    defaults = _signature_defaults(_import(saved_class))
    conflicts = []
    for key, value in saved.items():
        if key not in init_args or _same(init_args.get(key), value):
            continue
        if key in defaults and _same(init_args.get(key), defaults[key]):
            init_args[key] = value
            adopted.append(f"data.{key}")
        elif key not in FREE_DATA_KEYS:
            conflicts.append(f"data.{key} {_show(init_args.get(key))} (given) vs {_show(value)} (checkpoint)")
    return conflicts


def _reconcile_seed(config: Namespace, checkpoint: dict, adopted: list[str]) -> list[str]:
    callbacks = checkpoint.get("callbacks") or {}
    state = next((v for k, v in callbacks.items() if str(k).startswith("RNGStateCheckpoint")), None)
    saved = state.get("seed") if isinstance(state, dict) else None
    if saved is None:
        return []  # a checkpoint from before the seed was stored
    given = config.get("seed_everything")
    if given is False or _same(given, saved):
        return []
    if given is True or _same(given, SEED_DEFAULT):
        config.seed_everything = int(saved)
        adopted.append(f"seed_everything {int(saved)}")
        return []
    return [f"seed_everything {given} (given) vs {saved} (checkpoint)"]


def _reconcile_init(config: Namespace, checkpoint: dict) -> list[str]:
    """The init section against the checkpoint's record (``DepthwiseInit.state_dict``): a resume that
    names another init method, other settings, filter or seed would relabel the run (its logs and
    ``report`` would file it under the other method), so every difference is a conflict."""
    from callbacks.depthwise_init import init_record

    callbacks = checkpoint.get("callbacks") or {}
    saved = next((v for k, v in callbacks.items() if str(k).startswith("DepthwiseInit")), None)
    if not isinstance(saved, dict) or "method" not in saved:
        return []  # a checkpoint from before the init was recorded
    init = config.get("init") or Namespace()
    method = init.get("method")
    instance = None
    if isinstance(method, Namespace) and method.get("class_path"):
        cls = _import(str(method.class_path))
        try:
            instance = cls(**_plain(method.get("init_args") or Namespace()))
        except Exception:  # noqa: BLE001  (then only the method's name is compared)
            given_name = method_name(str(method.class_path)) or str(method.class_path)
            return [] if given_name == saved["method"] else [
                f"init.method {given_name} (given) vs {saved['method']} (checkpoint)"]
    given = init_record(instance, init.get("name_filter"), init.get("seed"))
    conflicts = []
    if given["method"] != saved["method"]:
        conflicts.append(f"init.method {given['method']} (given) vs {saved['method']} (checkpoint)")
    else:
        for key in sorted(set(given["settings"]) | set(saved.get("settings") or {})):
            a, b = given["settings"].get(key), (saved.get("settings") or {}).get(key)
            if not _same(a, b):
                conflicts.append(f"init.method.{key} {_show(a)} (given) vs {_show(b)} (checkpoint)")
    for key in ("name_filter", "seed"):
        if not _same(given[key], saved.get(key)):
            conflicts.append(f"init.{key} {_show(given[key])} (given) vs {_show(saved.get(key))} (checkpoint)")
    return conflicts


def _signature_defaults(cls: Any) -> dict[str, Any]:
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    return {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}


def _import(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal as plain values; None and an empty dict count as the same (model_kwargs)."""
    a, b = _plain(a), _plain(b)
    return (a in (None, {}) and b in (None, {})) or a == b


def _show(value: Any) -> str:
    return one_line(repr(_plain(value)), 80)


# -------------------------------------------------------------------- entry point


def check_config_files(args: list[str]) -> None:
    """Name the file when a ``--config`` is not valid YAML (jsonargparse's message does not) or is
    over the bounds of :mod:`neural_echos.safe_yaml` (size, nesting, alias expansion).

    Raises:
        ConfigError: a given config file does not parse as YAML or is over a bound.
    """
    import yaml

    given = [value for flag, value in zip(args, args[1:]) if flag in ("--config", "-c")]
    given += [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]
    for value in given:
        if not os.path.isfile(value):
            continue  # a missing file is jsonargparse's error, with the path
        try:
            safe_yaml.check_size(value)
            with open(value, encoding="utf-8") as f:
                list(yaml.compose_all(f, Loader=safe_yaml.BoundedSafeLoader))  # syntax and bounds; tags are jsonargparse's
        except safe_yaml.YAMLBoundError as err:
            raise ConfigError(f"config file {value!r} is refused: {err}; fix the file") from None
        except yaml.MarkedYAMLError as err:
            where = f" at line {err.problem_mark.line + 1}, column {err.problem_mark.column + 1}" if err.problem_mark else ""
            raise ConfigError(f"config file {value!r} is not valid YAML{where}: {err.problem or err}; fix the file") from None
        except (yaml.YAMLError, UnicodeDecodeError) as err:
            raise ConfigError(f"config file {value!r} is not valid YAML ({one_line(str(err), 200)}); fix the file") from None


TRAINER_DEFAULTS = {
    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "logs", "name": "default", "default_hp_metric": False}},
}


def main(args: list[str] | None = None) -> NeuralEchosCLI:
    """``run.py fit|validate|test|predict ...``: the CLI with this project's defaults (returned, for tests)."""
    from lightning_modules import ImageClassifier

    safe_yaml.bound_jsonargparse()  # command-line values and config files, as jsonargparse reads them
    check_config_files(sys.argv[1:] if args is None else args)
    return NeuralEchosCLI(
        ImageClassifier,
        datamodule_class=None,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        seed_everything_default=SEED_DEFAULT,
        parser_class=NeuralEchosParser,
        save_config_callback=RunConfig,
        parser_kwargs={"prog": "run.py", "description": "neural-echos: train and evaluate (LightningCLI). Three more subcommands: "
                                      "`run.py analyze --help` (kernels of a checkpoint), `run.py survey --help` (several) and `run.py report --help` "
                                      "(compare runs)."},
        args=args,  # None: read sys.argv
    )
