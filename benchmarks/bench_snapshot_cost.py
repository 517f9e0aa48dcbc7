"""Cost of the KernelSnapshot callback against the training epoch it observes.

Trains the quickstart recipe's model (ConvNeXt-atto, batch 128, 32x32) for one epoch under the
Trainer with the snapshot callback (k-means with its calibrated threshold and the pixel-permuted
null model for the chance shares, kernel grids, centroids: the defaults) and reports the
snapshot's wall time per call against the epoch's wall time, in the same run. Data: the
cifar10-mini subset (5,085 images) beside the repo when present, else a generated tree of the
same size; a full CIFAR-10 epoch is ~10x longer, so its ratio is ~10x smaller.
Target: at most 1 % of an epoch of the CIFAR recipe.

    .venv/bin/python benchmarks/bench_snapshot_cost.py [--method kmeans|template]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

from _common import CIFAR10_MINI, REPO, machine, median

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks import KernelSnapshot
from neural_echos.classifiers import CLASSIFIERS, get_classifier
from datamodules import CIFAR10DataModule
from lightning_modules import ImageClassifier


class EpochClock(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        # runs before KernelSnapshot's epoch-end hook (callback order), so excludes the snapshot
        self.seconds = time.perf_counter() - self.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", default="kmeans", choices=sorted(CLASSIFIERS))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        root = CIFAR10_MINI
        if not (root / "cifar-10-batches-py").exists():
            sys.path.insert(0, str(REPO / "tests"))
            from conftest import write_cifar10_tree

            root = write_cifar10_tree(Path(tmp) / "c10", images_per_batch=1017)
        pl.seed_everything(0)
        clock, snapshot = EpochClock(), KernelSnapshot(classifier=get_classifier(args.method))
        trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_val_batches=0, num_sanity_val_steps=0,
                             logger=TensorBoardLogger(tmp, name="bench"), enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[clock, snapshot])
        trainer.fit(ImageClassifier(num_classes=10, image_size=32), datamodule=CIFAR10DataModule(root=str(root)))
    per_snapshot = median(snapshot.seconds)
    print(f"machine: {machine()}")
    print(f"data: {root}, 1 epoch of convnext_atto, batch 128; snapshot method {args.method}")
    print(f"training epoch: {clock.seconds:.1f} s (baseline); snapshot: {per_snapshot * 1000:.0f} ms per call "
          f"(calls: {', '.join(f'{s * 1000:.0f}' for s in snapshot.seconds)} ms)")
    ratio = per_snapshot / clock.seconds
    print(f"snapshot / epoch = {ratio:.2%} on this subset (target <= 1 %: {'met' if ratio <= 0.01 else 'NOT met'}); "
          f"on full CIFAR-10 (50,000 images) about {ratio * 5085 / 50000:.2%}")


if __name__ == "__main__":
    main()
