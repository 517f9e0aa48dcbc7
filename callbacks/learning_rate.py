"""The learning rate as one curve, ``train/lr``."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


class LearningRateLogger(Callback):
    """Log the learning rate every ``log_every_n_steps`` optimizer steps as ``train/lr``.

    Lightning's ``LearningRateMonitor`` logs one curve per parameter group (``lr-AdamW/pg1``,
    ``lr-AdamW/pg2``), and our optimisers have two groups (with and without weight decay) at the
    same rate: two identical curves. Here groups that share a rate give one curve; groups with
    different rates give ``train/lr/pg<i>``.
    """

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        every = trainer.log_every_n_steps
        if not trainer.loggers or not trainer.optimizers or not every or trainer.global_step % every:
            return
        rates = [group["lr"] for optimizer in trainer.optimizers for group in optimizer.param_groups]
        if len(set(rates)) == 1:
            metrics = {"train/lr": rates[0]}
        else:
            metrics = {f"train/lr/pg{i}": rate for i, rate in enumerate(rates)}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
