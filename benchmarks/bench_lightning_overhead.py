"""Training images/s of ImageClassifier under the Lightning Trainer vs a plain PyTorch loop.

Both sides train the same timm model (same init), on the same in-memory CIFAR-sized batches
through the same DataLoader and batch-wise augmentation, with the same timm AdamW, per-step
cosine schedule, label-smoothed loss and channels_last layout. The Lightning side runs as a
user gets it from run.py: torchmetrics accuracy, logging every 10 steps to TensorBoard, the
learning-rate monitor and the Rich progress bar (redrawn every PROGRESS_REFRESH_STEPS steps).
Runs alternate (paired) and the ratio of the medians is reported. Target: Lightning / plain >= 0.97.

    .venv/bin/python benchmarks/bench_lightning_overhead.py [--model convnext_atto] [--steps 30] [--pairs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import lightning.pytorch as pl
import torch
from _common import machine, median
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks import LearningRateLogger
from datamodules.batch_transforms import normalize, random_crop_flip
from datamodules.cifar10 import CIFAR10_MEAN, CIFAR10_STD, CIFAR10DataModule, InMemoryImages
from lightning_modules import ImageClassifier
from neural_echos.cli.app import PROGRESS_REFRESH_STEPS


class StepClock(Callback):
    """Wall time from the start of batch `warmup` to the end of the last batch."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end, self.steps = warmup, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx >= self.warmup:
            self.end, self.steps = time.perf_counter(), self.steps + 1


class SyntheticCIFAR(CIFAR10DataModule):
    def __init__(self, images, labels, batch_size):
        super().__init__(batch_size=batch_size)
        self._images, self._labels = images, labels

    def setup(self, stage=None):
        self.train_set = self.val_set = self.test_set = InMemoryImages(self._images, self._labels)


def lightning_run(args, images, labels, logdir) -> float:
    torch.manual_seed(0)
    module = ImageClassifier(model_name=args.model, num_classes=10, image_size=32, warmup_epochs=0.1)
    clock = StepClock(args.warmup)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=args.warmup + args.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(logdir, name="bench"),
        log_every_n_steps=10,
        callbacks=[clock, LearningRateLogger(), RichProgressBar(refresh_rate=PROGRESS_REFRESH_STEPS)],
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=SyntheticCIFAR(images, labels, args.batch_size))
    return clock.steps * args.batch_size / (clock.end - clock.start)


def plain_run(args, images, labels) -> float:
    torch.manual_seed(0)
    module = ImageClassifier(model_name=args.model, num_classes=10, image_size=32, warmup_epochs=0.1)
    model, criterion = module.model, module.train_criterion
    total = args.warmup + args.steps
    module._trainer = type("T", (), {"estimated_stepping_batches": total, "max_epochs": 1})()
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    loader = torch.utils.data.DataLoader(
        InMemoryImages(images, labels),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        collate_fn=lambda b: b,
    )
    model.train()
    start = None
    for step, (x, y) in enumerate(loader, start=1):
        if step == args.warmup + 1:
            start = time.perf_counter()
        x = normalize(random_crop_flip(x, 4), CIFAR10_MEAN, CIFAR10_STD).contiguous(
            memory_format=torch.channels_last
        )
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step_update(num_updates=step)
        if step == total:
            break
    return args.steps * args.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="convnext_atto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per run")
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    n = args.batch_size * (args.warmup + args.steps + 1)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)

    print(f"machine: {machine()}")
    print(f"model {args.model}, batch {args.batch_size}, 32x32, {args.steps} timed steps, {args.pairs} pairs")
    plain, lightning = [], []
    with tempfile.TemporaryDirectory() as logdir:
        for pair in range(args.pairs):
            plain.append(plain_run(args, images, labels))
            lightning.append(lightning_run(args, images, labels, logdir))
            print(
                f"pair {pair}: plain {plain[-1]:7.1f} img/s   lightning {lightning[-1]:7.1f} img/s   "
                f"ratio {lightning[-1] / plain[-1]:.3f}"
            )
    ratio = median(lightning) / median(plain)
    paired = [b / a for a, b in zip(plain, lightning)]
    print(
        f"median: plain PyTorch loop {median(plain):.1f} img/s (baseline), "
        f"LightningModule under Trainer {median(lightning):.1f} img/s"
    )
    print(
        f"ratio lightning/plain = {ratio:.3f} of the medians, {median(paired):.3f} median of the pairs "
        f"(pairs {min(paired):.3f}..{max(paired):.3f}; target >= 0.97: {'met' if ratio >= 0.97 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
