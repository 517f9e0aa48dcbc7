"""The DoG-init callback: initialise the depthwise convolutions when a fresh ``fit`` starts."""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

from neural_echos.errors import ConfigError
from neural_echos.init import METHODS, InitSummary, initialize_depthwise


class DepthwiseInit(Callback):
    """Apply :func:`neural_echos.init.initialize_depthwise` to ``pl_module.model`` once per run.

    It runs in ``on_fit_start``: only for ``fit`` (never for validate/test/predict), and not
    when the fit resumes from a checkpoint (``trainer.ckpt_path`` set), whose weights stay. It
    runs there rather than in ``setup`` because Lightning restores a checkpoint, and only then
    tells which one, after ``setup``. Weights are written in place (the optimizer keeps the same
    parameters) from a private generator seeded with ``seed``, so every DDP rank writes the same
    weights. The settings and the summary go to the logger as hyper-parameters (``init/*``),
    and the per-layer table to TensorBoard as text (``init/summary``) and to the console.

    Args:
        method: ``none`` (keep the model's own initialisation; still logged), ``dog``,
            ``kaiming_normal``, ``kaiming_uniform`` or ``covariance``.
        gamma_range, on_center_prob, dog_share, scale, radius, name_filter: see
            :func:`neural_echos.init.initialize_depthwise`.
        seed: seed of the initialiser; ``None`` takes the run's ``seed_everything`` seed.
        sigma, tau, eps: options of the covariance method (``None`` = its defaults).
    """

    def __init__(
        self,
        method: str = "none",
        gamma_range: tuple[float, float] = (0.0, 1.0),
        on_center_prob: float = 0.5,
        dog_share: float = 1.0,
        scale: str | None = None,
        radius: float | None = None,
        name_filter: str | None = None,
        seed: int | None = None,
        sigma: float | tuple[float, float] | None = None,
        tau: float | tuple[float, float] | None = None,
        eps: float | None = None,
    ):
        if method not in ("none", *METHODS):
            raise ConfigError(f"unknown init method {method!r}; choose one of: none, {', '.join(METHODS)}")
        self.method = method
        self.options: dict[str, Any] = dict(
            gamma_range=tuple(gamma_range), on_center_prob=on_center_prob, dog_share=dog_share, scale=scale,
            radius=radius, name_filter=name_filter,
        )
        # passed only when set, so that setting one for another method is an error, not ignored
        self.covariance_options = {k: v for k, v in dict(sigma=sigma, tau=tau, eps=eps).items() if v is not None}
        self.seed = seed
        self.summary: InitSummary | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.method == "none":
            self._log(trainer, {"init/method": "none (model default)"}, None)
            return
        if trainer.ckpt_path is not None:
            rank_zero_info(f"DepthwiseInit: resuming from {trainer.ckpt_path}: the checkpoint's weights are kept")
            return
        seed = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        model = getattr(pl_module, "model", pl_module)
        model_name = pl_module.hparams.get("model_name") if hasattr(pl_module, "hparams") else None
        self.summary = initialize_depthwise(
            model, self.method, seed=seed, model_name=model_name, **self.options, **self.covariance_options
        )
        rank_zero_info(str(self.summary))
        flat = {f"init/{key}": value for key, value in self.summary.to_dict(per_layer=False).items()}
        self._log(trainer, flat, str(self.summary))

    @staticmethod
    def _log(trainer: pl.Trainer, params: dict[str, Any], text: str | None) -> None:
        params = {key: (str(value) if isinstance(value, (tuple, list)) or value is None else value) for key, value in params.items()}
        for logger in trainer.loggers:  # loggers write on rank zero only
            logger.log_hyperparams(params)
            if text is not None and isinstance(logger, TensorBoardLogger) and trainer.is_global_zero:
                logger.experiment.add_text("init/summary", "```\n" + text + "\n```", global_step=0)
