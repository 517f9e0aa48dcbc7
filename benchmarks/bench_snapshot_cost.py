"""Cost of the KernelSnapshot callback against the training epoch it observes.

Trains the quickstart recipe's model (ConvNeXt-atto, batch 128, 32x32) for one epoch under the
Trainer with the snapshot callback (the template classifier with its calibrated threshold, the
taxonomy and the pixel-permuted null model for the chance shares, kernel grids, class means and
the taxonomy picture: the defaults; ``--method kmeans`` for k-means with k chosen per size) and reports the
snapshot's wall time per call against the epoch's wall time, in the same run. Data: the
cifar10-mini subset (5,085 images) beside the repo when present, else a generated tree of the
same size; a full CIFAR-10 epoch is ~10x longer, so its ratio is ~10x smaller.
Target: at most 1 % of an epoch of the CIFAR recipe.

    .venv/bin/python benchmarks/bench_snapshot_cost.py [--method template|kmeans]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
from _common import CIFAR10_MINI, REPO, machine, median
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks import KernelSnapshot
from neural_echos.classifiers import CLASSIFIERS, get_classifier

REPEATS = 5
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
    parser.add_argument("--method", default="template", choices=sorted(CLASSIFIERS))
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
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=1,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=TensorBoardLogger(tmp, name="bench"),
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[clock, snapshot],
        )
        module = ImageClassifier(num_classes=10, image_size=32)
        trainer.fit(module, datamodule=CIFAR10DataModule(root=str(root)))
        first, in_fit = snapshot.seconds[0], snapshot.seconds[1:]
        for _ in range(REPEATS):  # more snapshots of the trained kernels, as the callback takes them
            snapshot.snapshot(trainer, module, step=trainer.global_step)
        warm = snapshot.seconds[1:]
    per_snapshot = median(warm)
    print(f"machine: {machine()}")
    print(f"data: {root}, 1 epoch of convnext_atto, batch 128; snapshot classifier {args.method}")
    print(
        f"training epoch: {clock.seconds:.1f} s (baseline); snapshot: {per_snapshot * 1000:.0f} ms per call, median of "
        f"{len(warm)} (the first of the run, which imports scikit-learn and matplotlib and calibrates the "
        f"threshold: {first * 1000:.0f} ms; in the fit: {', '.join(f'{t * 1000:.0f}' for t in in_fit)} ms)"
    )
    ratio = per_snapshot / clock.seconds
    print(
        f"snapshot / epoch = {ratio:.2%} on this subset; on full CIFAR-10 (50,000 images, an epoch "
        f"~{50000 / 5085:.1f}x "
        f"longer) about {ratio * 5085 / 50000:.2%} (target <= 1 % of a full CIFAR-10 epoch: "
        f"{'met' if ratio * 5085 / 50000 <= 0.01 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
