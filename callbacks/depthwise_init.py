"""The depthwise-init callback: initialise the depthwise convolutions when a fresh ``fit`` starts."""

from __future__ import annotations

import textwrap
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from tensorboard.plugins.text.summary_v2 import text_pb

from callbacks.rng_state import run_seed
from neural_echos import logged_names as names
from neural_echos.depthwise import find_depthwise_convs
from neural_echos.errors import ConfigError
from neural_echos.init import InitMethod, InitSummary

NONE = "none"  # the logged method name when the model keeps its own initialisation
TEXT_WIDTH = 100  # characters per line of the init summary in TensorBoard's Text dashboard


class DepthwiseInit(Callback):
    """Apply an init method (:mod:`neural_echos.init`) to ``pl_module.model`` once per run.

    It runs in ``on_fit_start``: only for ``fit`` (never for validate/test/predict), and not
    when the fit resumes from a checkpoint (``trainer.ckpt_path`` set), whose weights stay. It
    runs there rather than in ``setup`` because Lightning restores a checkpoint, and only then
    tells which one, after ``setup``. Weights are written in place (the optimizer keeps the same
    parameters) from a private generator seeded with ``seed``, so every DDP rank writes the same
    weights. The settings and the summary go to the logger as hyper-parameters (``init/*``,
    ``init/method`` the registry name), and the per-layer table to TensorBoard as text
    (``init/summary``) and to the console.

    With ``freeze: true`` the depthwise weights it initialises (all depthwise weights with no
    method; those matching ``name_filter`` if given) keep their initial values for the whole
    run: in ``setup`` (before Lightning builds the optimizer and wraps the model for DDP) their
    ``requires_grad`` is switched off, so they get no gradient, no optimizer entry (timm's
    parameter groups skip them, :meth:`ImageClassifier.configure_optimizers`), no weight decay
    and no DDP gradient sync; biases still train. A resumed fit freezes them again (the
    checkpoint records ``freeze`` and a resume with another value is refused).

    In a config (jsonargparse subclass mode; ``--init.method.help DoGInit`` lists a method's
    options, and an option the method does not take is a parse error)::

        init:
          method:
            class_path: DoGInit       # or neural_echos.init.dog.DoGInit
            init_args: {gamma_range: [0.0, 0.5]}

    Args:
        method: the init method; ``None`` keeps the model's own initialisation (logged as
            ``init/method: none``).
        name_filter: regular expression searched in the qualified layer names; only matching
            depthwise layers are initialised.
        seed: seed of the initialiser; ``None`` takes the run's ``seed_everything`` seed.
        freeze: keep the depthwise weights fixed at their initial values (the control of the
            master-key-filter and "untrained filters" studies; docs/controls.md).
    """

    def __init__(
        self,
        method: InitMethod | None = None,
        name_filter: str | None = None,
        seed: int | None = None,
        freeze: bool = False,
    ):
        if method is not None and not isinstance(method, InitMethod):
            raise ConfigError(
                f"DepthwiseInit takes an init method such as neural_echos.init.dog.DoGInit() (or None for "
                f"the model's own init); got {method!r}. By name: neural_echos.init.create_init('dog')"
            )
        if not isinstance(freeze, bool):
            raise ConfigError(f"init.freeze must be true or false; got {freeze!r}")
        self.method = method
        self.name_filter = name_filter
        self.seed = seed
        self.freeze = freeze
        self.frozen: list[str] = []  # qualified names of the frozen depthwise layers (set in setup)
        self.summary: InitSummary | None = None

    def state_dict(self) -> dict[str, Any]:
        """The init record of the run, kept in its checkpoints (a resume with another init is refused,
        neural_echos/cli): the method's registry name (``none`` for the model's own), its settings,
        the filter and seed."""
        return init_record(self.method, self.name_filter, self.seed, self.freeze)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Freeze (``freeze: true``) before ``configure_optimizers`` and the DDP wrapper see the weights."""
        if stage != "fit" or not self.freeze:
            return
        model = getattr(pl_module, "model", pl_module)
        model_name = pl_module.hparams.get("model_name") if hasattr(pl_module, "hparams") else None
        layers = find_depthwise_convs(model, self.name_filter, model_name, "--init.name_filter")
        for _, conv in layers:
            conv.weight.requires_grad_(False)
        self.frozen = [name for name, _ in layers]
        rank_zero_info(f"DepthwiseInit: freeze: the weights of {len(layers)} depthwise layers stay fixed")

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.method is None:
            model_name = pl_module.hparams.get("model_name") if hasattr(pl_module, "hparams") else None
            text = (
                f"none: {model_name or type(pl_module).__name__} keeps its own initialisation "
                "(no depthwise layer was rewritten)"
            )
            self._log(trainer, {names.INIT_METHOD: NONE, **self._freeze_params()}, text)
            return
        if trainer.ckpt_path is not None:
            rank_zero_info(
                f"DepthwiseInit: resuming from {trainer.ckpt_path}: the checkpoint's weights are kept"
            )
            if self.freeze:  # hparams.yaml is rewritten on resume: keep the run marked frozen there
                self._log(trainer, self._freeze_params(), None)
            return
        seed = self.seed if self.seed is not None else run_seed(trainer, default=0)
        model = getattr(pl_module, "model", pl_module)
        model_name = pl_module.hparams.get("model_name") if hasattr(pl_module, "hparams") else None
        self.summary = self.method.initialize(
            model,
            seed=seed,
            name_filter=self.name_filter,
            model_name=model_name,
            filter_option="--init.name_filter",
        )
        rank_zero_info(str(self.summary))
        flat = {f"init/{key}": value for key, value in self.summary.to_dict(per_layer=False).items()}
        self._log(trainer, {**flat, **self._freeze_params()}, str(self.summary))

    def _freeze_params(self) -> dict[str, Any]:
        """``init/freeze`` for the logged hyper-parameters (only when on: trained runs log as before)."""
        return {names.INIT_FREEZE: True, names.INIT_FROZEN_LAYERS: len(self.frozen)} if self.freeze else {}

    @staticmethod
    def _log(trainer: pl.Trainer, params: dict[str, Any], text: str | None) -> None:
        params = {
            key: (str(value) if isinstance(value, (tuple, list)) or value is None else value)
            for key, value in params.items()
        }
        for logger in trainer.loggers:  # loggers write on rank zero only
            logger.log_hyperparams(params)
            if text is not None and isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
                # SummaryWriter.add_text would name the tag "init/summary/text_summary"; the same
                # text summary goes through the writer's public FileWriter
                # a code block does not wrap: prose lines past TEXT_WIDTH (the summary's first) are
                # wrapped here; table rows (columns apart by two spaces or more) stay whole
                wrapped = "\n".join(
                    textwrap.fill(line, TEXT_WIDTH, subsequent_indent="  ")
                    if len(line) > TEXT_WIDTH and "  " not in line.strip()
                    else line
                    for line in text.splitlines()
                )
                summary = text_pb(names.INIT_SUMMARY_TEXT, "```\n" + wrapped + "\n```")
                logger.experiment.file_writer.add_summary(summary, global_step=0)


def init_record(
    method: InitMethod | None, name_filter: str | None, seed: int | None, freeze: bool = False
) -> dict[str, Any]:
    """What a checkpoint records of the run's ``init.*`` (plain values, for a ``weights_only`` load)."""
    return {
        "method": NONE if method is None else method.name,
        "settings": {} if method is None else {str(k): v for k, v in method.settings().items()},
        "name_filter": name_filter,
        "seed": seed,
        "freeze": bool(freeze),
    }
