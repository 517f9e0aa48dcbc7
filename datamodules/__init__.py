"""LightningDataModules: CIFAR-10 (in memory, batch-wise augmentation on the device)."""

from datamodules.cifar10 import CIFAR10DataModule, CIFAR10FormatError, load_cifar10

__all__ = ["CIFAR10DataModule", "CIFAR10FormatError", "load_cifar10"]
