"""CIFAR-10 training-pipeline images/s: our in-memory DataModule vs torchvision's CIFAR10 + PIL.

Ours: a shuffled DataLoader over the uint8 tensors (one index per batch), then random crop
(padding 4), horizontal flip and normalisation batch-wise in torch, as
``CIFAR10DataModule.on_after_batch_transfer`` does on the training device (here the CPU).
Baseline: ``torchvision.datasets.CIFAR10`` with PIL transforms RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor, Normalize in a DataLoader with the same batch size and the
same number of workers (0 by default; --baseline-workers adds a second baseline).
Both read the same files: ../shared/data/cifar10-mini when present (torchvision's checksum
test is bypassed for it, since the subset's MD5s differ by design), else a generated tree.
Target: ours / baseline >= 15x.

    .venv/bin/python benchmarks/bench_cifar_pipeline.py [--epochs 3] [--baseline-workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torchvision
import torchvision.transforms as T
from _common import CIFAR10_MINI, REPO, machine, median

from datamodules.batch_transforms import normalize, random_crop_flip
from datamodules.cifar10 import CIFAR10_MEAN, CIFAR10_STD, CIFAR10DataModule


class UncheckedCIFAR10(torchvision.datasets.CIFAR10):
    def _check_integrity(self) -> bool:  # the subset's MD5s differ from the official ones
        return True


def images_per_second(loader, transform, epochs: int) -> float:
    times, count = [], 0
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for images, labels in loader:
            images = transform(images)
            count += len(labels)
        times.append(time.perf_counter() - start)
    return count / median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--baseline-workers", type=int, default=2, help="also time the baseline with this many workers"
    )
    args = parser.parse_args()

    tmp = None
    root = CIFAR10_MINI
    if not (root / "cifar-10-batches-py").exists():
        sys.path.insert(0, str(REPO / "tests"))
        from conftest import write_cifar10_tree

        tmp = tempfile.TemporaryDirectory()
        root = write_cifar10_tree(Path(tmp.name), images_per_batch=1000)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm = CIFAR10DataModule(root=str(root), batch_size=args.batch_size)
        dm.setup("fit")
    ours = images_per_second(
        dm.train_dataloader(),
        lambda x: normalize(random_crop_flip(x, 4), CIFAR10_MEAN, CIFAR10_STD),
        args.epochs,
    )

    pil = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )
    dataset = UncheckedCIFAR10(str(root), train=True, transform=pil)
    baselines = {}
    for workers in sorted({0, args.baseline_workers}):
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
        )
        baselines[workers] = images_per_second(loader, lambda x: x, args.epochs)

    print(f"machine: {machine()}")
    print(
        f"data: {root} ({len(dm.train_set)} training images), batch {args.batch_size}, median of {args.epochs} epochs"
    )
    print(f"torchvision CIFAR10 + PIL transforms, 0 workers (baseline): {baselines[0]:9.0f} img/s")
    for workers, rate in baselines.items():
        if workers:
            print(f"torchvision CIFAR10 + PIL transforms, {workers} workers:            {rate:9.0f} img/s")
    print(f"ours, in memory + batch-wise torch augmentation, 0 workers: {ours:9.0f} img/s")
    ratio = ours / baselines[0]
    print(f"ratio ours/baseline = {ratio:.1f}x (target >= 15x: {'met' if ratio >= 15 else 'NOT met'})")
    for workers, rate in baselines.items():
        if workers:
            print(f"ratio ours/baseline with {workers} workers = {ours / rate:.1f}x")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
