"""Cost of the KernelTracking and KernelProjector callbacks against the training epoch they observe.

Trains the quickstart recipe's model (ConvNeXt-atto, 1,840 7x7 depthwise kernels, batch 128,
32x32) for one epoch under the Trainer with the kernel snapshot (its classifier gives the
classes), the tracking callback (classification, transitions since init and since the previous
snapshot, drift, the population signal with 8 permuted nulls per kernel size and per layer, the
transition and per-layer pictures) and the projector (classification, 1,840 thumbnails,
add_embedding), and reports each callback's wall time per call against the epoch's wall time, in
the same process. Data: the cifar10-mini subset (5,085 images) beside the repo when present,
else a generated tree of the same size; a full CIFAR-10 epoch is ~10x longer, so its ratio is
~10x smaller. Target: tracking at most 1 % of a full CIFAR-10 epoch (the snapshot budget); the
projector logs twice per run (first and last), so its cost is per run, not per epoch.

    .venv/bin/python benchmarks/bench_tracking_cost.py
"""

from __future__ import annotations

import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
from _common import CIFAR10_MINI, REPO, machine, median
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks import KernelProjector, KernelSnapshot, KernelTracking
from datamodules import CIFAR10DataModule
from lightning_modules import ImageClassifier

REPEATS = 5


class EpochClock(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        # runs before the kernel callbacks' epoch-end hooks (callback order), so excludes them
        self.seconds = time.perf_counter() - self.start


def main() -> None:
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = CIFAR10_MINI
        if not (root / "cifar-10-batches-py").exists():
            sys.path.insert(0, str(REPO / "tests"))
            from conftest import write_cifar10_tree

            root = write_cifar10_tree(Path(tmp) / "c10", images_per_batch=1017)
        pl.seed_everything(0)
        clock, snapshot = EpochClock(), KernelSnapshot(images=False)
        tracking, projector = KernelTracking(), KernelProjector()
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=1,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=TensorBoardLogger(tmp, name="bench"),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[clock, snapshot, tracking, projector],
        )
        module = ImageClassifier(num_classes=10, image_size=32)
        trainer.fit(module, datamodule=CIFAR10DataModule(root=str(root)))
        in_fit = list(tracking.seconds)
        for _ in range(REPEATS):  # more tracking snapshots of the trained kernels, as the callback takes them
            tracking.track(trainer, module, step=trainer.global_step)
        for step in range(REPEATS):
            projector.project(trainer, module, step=trainer.global_step + 1 + step)
        per_tracking, per_projection = median(tracking.seconds[len(in_fit) :]), median(projector.seconds[2:])
    print(f"machine: {machine()}")
    print(f"data: {root}, 1 epoch of convnext_atto (1,840 7x7 depthwise kernels), batch 128")
    print(f"training epoch: {clock.seconds:.1f} s (baseline)")
    full = 5085 / 50000
    for name, seconds, first in (
        ("tracking", per_tracking, in_fit),
        ("projector", per_projection, projector.seconds[:2]),
    ):
        ratio = seconds / clock.seconds
        in_the_fit = ", ".join(f"{t * 1000:.0f}" for t in first)
        print(
            f"{name}: {seconds * 1000:.0f} ms per call, median of {REPEATS} (in the fit: {in_the_fit} ms); "
            f"/ epoch = {ratio:.2%} on this subset, about {ratio * full:.2%} of a full CIFAR-10 epoch"
        )
    verdict = "met" if per_tracking / clock.seconds * full <= 0.01 else "NOT met"
    print(f"tracking target <= 1 % of a full CIFAR-10 epoch: {verdict}")


if __name__ == "__main__":
    main()
