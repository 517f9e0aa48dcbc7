"""Image classification with any timm model: the LightningModule every recipe trains."""

from __future__ import annotations

import difflib
from typing import Any

import lightning.pytorch as pl
import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2, list_optimizers
from timm.scheduler import CosineLRScheduler
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from neural_echos.errors import ConfigError
from neural_echos.models.build import build_timm_model


class ImageClassifier(pl.LightningModule):
    """Train a timm classifier from scratch.

    Args:
        model_name: any name in ``timm.list_models()`` (ours included: ``convmixer``, ``hornet_*``).
        model_kwargs: extra arguments for the model, e.g. ``{kernel_sizes: 9, drop_path_rate: 0.1}``.
        num_classes: classes; linked from the DataModule by ``run.py``.
        image_size: input side; linked from the DataModule (passed to timm where the model takes it).
        in_chans: input channels.
        optimizer: a timm optimizer name: ``adamw`` (default), ``sgd`` (SGD with Nesterov
            momentum), ``momentum`` (plain SGD with momentum), or any of
            ``timm.optim.list_optimizers()``. Norm weights and biases get no weight decay.
        lr: peak learning rate, reached after the warm-up.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        momentum: momentum for SGD-type optimizers.
        warmup_epochs: linear warm-up length in epochs (fractions allowed); the cosine
            schedule then decays per step to ``min_lr`` at the end of training.
        warmup_lr: learning rate at step 0.
        min_lr: learning rate at the last step.
        label_smoothing: label smoothing of the cross-entropy (also used by Mixup's targets).
        mixup_alpha, cutmix_alpha: timm Mixup/CutMix strengths; both 0 disables them.
        mixup_prob: probability of applying Mixup/CutMix to a batch.
        mixup_switch_prob: probability of CutMix instead of Mixup when both are on.
        channels_last: NHWC memory layout for model and inputs (faster for depthwise convs).
        compile: ``torch.compile`` the timm model (off by default). It is compiled in place
            (``nn.Module.compile``): ``self.model`` stays the same module with the same
            parameters, so the DoG init's in-place writes, the kernel snapshots and the
            checkpoint keys are exactly those of an uncompiled run (no ``_orig_mod.`` prefix),
            and checkpoints load with or without compile. Compilation happens at the first
            training and first validation batch (one graph each: train and eval modes differ).
        compile_mode: torch.compile ``mode``: ``default``, ``reduce-overhead`` (CUDA graphs),
            ``max-autotune`` or ``max-autotune-no-cudagraphs``.
        compile_backend: torch.compile ``backend``: ``inductor`` (the default, generates
            kernels), or e.g. ``aot_eager`` (graph capture and AOT autograd without code
            generation: to tell a compiler problem from a model problem).
    """

    def __init__(
        self,
        model_name: str = "convnext_atto",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 1000,
        image_size: int | None = None,
        in_chans: int = 3,
        optimizer: str = "adamw",
        lr: float = 2e-3,
        weight_decay: float = 0.05,
        momentum: float = 0.9,
        warmup_epochs: float = 1.0,
        warmup_lr: float = 1e-6,
        min_lr: float = 1e-5,
        label_smoothing: float = 0.1,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mixup_prob: float = 1.0,
        mixup_switch_prob: float = 0.5,
        channels_last: bool = True,
        compile: bool = False,
        compile_mode: str = "default",
        compile_backend: str = "inductor",
    ):
        super().__init__()
        _check_hparams(
            optimizer,
            lr,
            weight_decay,
            warmup_epochs,
            label_smoothing,
            mixup_alpha,
            cutmix_alpha,
            mixup_prob,
            num_classes,
        )
        _check_more_hparams(
            momentum=momentum,
            warmup_lr=warmup_lr,
            min_lr=min_lr,
            mixup_switch_prob=mixup_switch_prob,
            in_chans=in_chans,
        )
        _check_compile(compile_mode, compile_backend)
        self.save_hyperparameters()
        self.model = build_timm_model(model_name, num_classes, in_chans, image_size, model_kwargs)
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        if compile:
            # lazily: the graphs are built at the first call, after the DoG init has written
            # the kernels; parameters stay graph inputs (inductor does not freeze them in training)
            self.model.compile(mode=compile_mode, backend=compile_backend)
        if image_size is not None and not compile:
            # (with compile, the model summary's batch-1 forward would compile a third graph, used nowhere else)
            self.example_input_array = torch.zeros(1, in_chans, image_size, image_size)

        self.mixup = None
        if mixup_alpha > 0 or cutmix_alpha > 0:
            self.mixup = Mixup(
                mixup_alpha=mixup_alpha,
                cutmix_alpha=cutmix_alpha,
                prob=mixup_prob,
                switch_prob=mixup_switch_prob,
                label_smoothing=label_smoothing,
                num_classes=num_classes,
            )
            self.train_criterion: nn.Module = SoftTargetCrossEntropy()
        else:
            self.train_criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.eval_criterion = nn.CrossEntropyLoss()

        top5 = min(5, num_classes)
        self.train_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.val_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")
        self.test_acc1 = MulticlassAccuracy(num_classes, top_k=1, average="micro")
        self.test_acc5 = MulticlassAccuracy(num_classes, top_k=top5, average="micro")

    def setup(self, stage: str) -> None:
        """Check the model against the data before the first batch (each mismatch was a traceback
        from inside the first forward or Mixup)."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        channels = getattr(datamodule, "channels", 3)  # the project's DataModules yield RGB
        if self.hparams.in_chans != channels:
            raise ConfigError(
                f"--model.in_chans {self.hparams.in_chans}, but {type(datamodule).__name__} yields {channels}-channel "
                f"images: set --model.in_chans {channels} (or leave it at its default)"
            )
        batch_size = getattr(datamodule, "batch_size", None)
        if stage == "fit" and self.mixup is not None and isinstance(batch_size, int) and batch_size % 2:
            raise ConfigError(
                f"Mixup/CutMix pairs the images of a batch, so the batch size must be even; got --data.batch_size "
                f"{batch_size}: use {batch_size + 1} or {batch_size - 1}, or switch Mixup off "
                "(--model.mixup_alpha 0 --model.cutmix_alpha 0)"
            )

    def forward(self, images: Tensor) -> Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.model(images)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, targets = batch
        if self.mixup is not None:
            images, soft_targets = self.mixup(images, targets)
            loss = self.train_criterion(self(images), soft_targets)
        else:
            logits = self(images)
            loss = self.train_criterion(logits, targets)
            # accuracy on mixed images has no clear meaning, so it is only logged without Mixup
            self.train_acc1.update(logits.detach(), targets)
            self.log("train/acc1", self.train_acc1, on_step=False, on_epoch=True)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def _evaluate(
        self, batch: tuple[Tensor, Tensor], stage: str, acc1: MulticlassAccuracy, acc5: MulticlassAccuracy
    ) -> None:
        images, targets = batch
        logits = self(images)
        acc1.update(logits, targets)
        acc5.update(logits, targets)
        self.log(f"{stage}/loss", self.eval_criterion(logits, targets), sync_dist=True)
        self.log(f"{stage}/acc1", acc1, prog_bar=True)
        self.log(f"{stage}/acc5", acc5)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc1, self.val_acc5)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc1, self.test_acc5)

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        images, _ = batch
        probs = self(images).softmax(dim=-1)
        return {"probs": probs, "preds": probs.argmax(dim=-1)}

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        # timm's parameter groups leave out parameters with requires_grad False: depthwise weights
        # frozen by `init.freeze` (callbacks/depthwise_init.py) get no optimizer entry, state or decay
        optimizer = create_optimizer_v2(
            self.model,
            opt=hp.optimizer,
            lr=hp.lr,
            weight_decay=hp.weight_decay,
            momentum=hp.momentum,
            filter_bias_and_bn=True,  # no weight decay on norm weights and biases
        )
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        max_epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        warmup_steps = min(round(hp.warmup_epochs * total_steps / max_epochs), total_steps - 1)
        # linear warm-up for warmup_steps, then a cosine from lr to min_lr over the remaining steps
        scheduler = CosineLRScheduler(
            optimizer,
            t_initial=total_steps - warmup_steps,
            lr_min=hp.min_lr,
            warmup_t=warmup_steps,
            warmup_lr_init=hp.warmup_lr,
            warmup_prefix=True,
            t_in_epochs=False,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints of a module wrapped by torch.compile(...) (not ours: we compile in place)
        # carry an `_orig_mod.` in every key; strip it so that they load with or without compile.
        state = checkpoint.get("state_dict", {})
        if any("_orig_mod." in key for key in state):
            checkpoint["state_dict"] = {key.replace("_orig_mod.", ""): value for key, value in state.items()}

    def lr_scheduler_step(self, scheduler: CosineLRScheduler, metric: Any) -> None:
        # timm schedulers are stepped by update count, not by torch's scheduler.step()
        scheduler.step_update(num_updates=self.global_step)


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _check_compile(mode: str, backend: str) -> None:
    if mode not in COMPILE_MODES:
        raise ConfigError(f"unknown compile_mode {mode!r}; use one of {', '.join(COMPILE_MODES)}")
    backends = torch.compiler.list_backends(exclude_tags=())
    if backend not in backends:
        raise ConfigError(f"unknown compile_backend {backend!r}; use one of {', '.join(sorted(backends))}")


def _check_more_hparams(
    momentum: float, warmup_lr: float, min_lr: float, mixup_switch_prob: float, in_chans: int
) -> None:
    checks = [
        (momentum >= 0, f"momentum must be >= 0, got {momentum}"),
        (
            warmup_lr >= 0,
            f"warmup_lr (the learning rate the warmup starts from) must be >= 0, got {warmup_lr}",
        ),
        (min_lr >= 0, f"min_lr must be >= 0, got {min_lr}"),
        (0 <= mixup_switch_prob <= 1, f"mixup_switch_prob must be in [0, 1], got {mixup_switch_prob}"),
        (in_chans >= 1, f"in_chans must be at least 1, got {in_chans}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def _check_hparams(
    optimizer,
    lr,
    weight_decay,
    warmup_epochs,
    label_smoothing,
    mixup_alpha,
    cutmix_alpha,
    mixup_prob,
    num_classes,
) -> None:
    if optimizer.lower() not in list_optimizers():
        close = difflib.get_close_matches(optimizer.lower(), list_optimizers(), n=3)
        raise ConfigError(
            f"unknown optimizer {optimizer!r}; use adamw or sgd (or a timm optimizer "
            f"name{': ' + ', '.join(close) if close else ''})"
        )
    checks = [
        (lr > 0, f"lr must be > 0, got {lr}"),
        (weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}"),
        (warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {warmup_epochs}"),
        (0 <= label_smoothing < 1, f"label_smoothing must be in [0, 1), got {label_smoothing}"),
        (
            mixup_alpha >= 0 and cutmix_alpha >= 0,
            f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}",
        ),
        (0 <= mixup_prob <= 1, f"mixup_prob must be in [0, 1], got {mixup_prob}"),
        (num_classes >= 2, f"num_classes must be at least 2, got {num_classes}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
