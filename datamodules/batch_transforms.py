"""Batch-wise image augmentation in torch, run on whole uint8 batches on the training device.

torchvision's per-image PIL transforms cost more CPU time than a small CNN's training step
on 32x32 images; these run as a handful of tensor ops per batch, on the GPU when there is one.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_crop_flip(
    images: Tensor, padding: int, flip: bool = True, generator: torch.Generator | None = None
) -> Tensor:
    """Random crop after zero padding, and random horizontal flip, per image, in one gather.

    ``images`` is ``[N, C, H, W]`` (any dtype). Each image gets its own offset in
    ``[0, 2 * padding]`` on each axis (as torchvision's ``RandomCrop(H, padding)``) and is
    mirrored with probability 1/2 (``RandomHorizontalFlip``).
    """
    n, c, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding)) if padding else images
    padded_w = w + 2 * padding
    top = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=device, generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n, 1, 1), device=device, generator=generator)
    cols = torch.arange(w, device=device).view(1, 1, w)
    if flip:
        mirrored = torch.rand(n, 1, 1, device=device, generator=generator) < 0.5
        cols = torch.where(mirrored, w - 1 - cols, cols)
    # flat position in the padded image of every output pixel: [N, H, W]
    source = (top + torch.arange(h, device=device).view(1, h, 1)) * padded_w + left + cols
    # one gather over the flattened images (3-4x faster on CPUs than 3-D advanced indexing)
    flat = padded.reshape(n, c, -1)
    return flat.gather(2, source.view(n, 1, h * w).expand(n, c, h * w)).view(n, c, h, w)


def normalize(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """uint8 ``[N, C, H, W]`` in 0..255 to float32 ``(x / 255 - mean) / std``, memory format kept."""
    mean_t = torch.tensor(mean, device=images.device, dtype=torch.float32).view(1, -1, 1, 1) * 255
    inv_std = 1.0 / (torch.tensor(std, device=images.device, dtype=torch.float32).view(1, -1, 1, 1) * 255)
    return (images.float() - mean_t) * inv_std
