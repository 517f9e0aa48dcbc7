"""Stop training at the first non-finite loss, before it reaches the weights."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from neural_echos.errors import NeuralEchosError


class NonFiniteLossError(NeuralEchosError, FloatingPointError):
    """The training loss became NaN or infinite."""


class FiniteLossGuard(Callback):
    """Raise :class:`NonFiniteLossError` when the loss is NaN or inf, before ``backward``.

    Checking before the backward pass means the bad step never updates the weights, and no
    checkpoint of the broken state is written: the last good checkpoint stays the newest.
    The check reads one scalar per step (the progress bar reads the loss anyway).
    """

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        if torch.isfinite(loss).all():
            return
        checkpoint = getattr(trainer.checkpoint_callback, "last_model_path", "") or getattr(
            trainer.checkpoint_callback, "best_model_path", ""
        )
        if checkpoint:
            kept = f"the last good checkpoint is {checkpoint}"
            then = f"then resume from that checkpoint with --ckpt_path {checkpoint}"
        else:
            kept = "no checkpoint had been written yet"
            then = "then start the run again"
        raise NonFiniteLossError(
            f"training loss is {loss.item()} at step {trainer.global_step} (epoch {trainer.current_epoch}); "
            f"stopped before the update, {kept}. Lower model.lr, set trainer.gradient_clip_val, "
            f"or check the data, {then}."
        )
