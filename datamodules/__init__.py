"""LightningDataModules: CIFAR-10 (in memory, batch-wise augmentation on the device) and
ImageNet (ImageFolder layout, timm transforms in workers)."""

from datamodules.cifar10 import CIFAR10DataModule, CIFAR10FormatError, load_cifar10
from datamodules.imagenet import ImageNetDataModule, ImageNetFormatError, UnreadableImageWarning

__all__ = [
    "CIFAR10DataModule",
    "CIFAR10FormatError",
    "ImageNetDataModule",
    "ImageNetFormatError",
    "UnreadableImageWarning",
    "load_cifar10",
]
