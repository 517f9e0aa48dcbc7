"""ImageNet (or any ImageFolder-style subset of it) with timm's training and evaluation transforms.

Layout: ``root/train/<wnid>/*.JPEG`` and ``root/val/<wnid>/*.JPEG`` (docs/imagenet.md says
how to get there from the official archives, including the val re-layout into wnid folders;
WebDataset shards: :mod:`datamodules.imagenet_shards`).

Two pipelines (``pipeline``). ``device``: the workers only read the files, and the batch is
decoded and augmented on the training device (:mod:`datamodules.device_augment`): for GPUs,
where CPU workers cannot keep up. ``workers`` (the default) splits the work between the
DataLoader workers and the training device as follows:

* workers decode each JPEG and run timm's PIL transforms (RandomResizedCrop, flip, RandAugment
  for training; resize + centre crop for evaluation), then hand over **uint8** images. A batch
  is collated as one ``[N, H, W, 3]`` shared-memory block and returned as an ``[N, 3, H, W]``
  view, i.e. already channels-last, without a per-image transpose;
* :meth:`ImageNetDataModule.on_after_batch_transfer` normalises the batch on the device and,
  in training, applies random erasing there (timm erases *normalised* pixels, so it has to come
  after normalisation: this is what timm's own ``PrefetchLoader`` does, with the same box
  distribution, but drawn for the whole batch at once: one mask on a GPU, no host sync).

uint8 batches are 4x smaller than float32 ones through the worker queue and host-to-device copy,
and the per-pixel float work moves off the CPU workers. Mixup/CutMix is done by the
LightningModule (``ImageClassifier``).
"""

from __future__ import annotations

import io
import math
import os
import random
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform
from timm.data import auto_augment as timm_auto_augment
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision import transforms as T

from callbacks.rng_state import run_seed
from datamodules.cifar10 import EpochShuffle
from datamodules.device_augment import JPEG_MAGIC, DeviceEvalTransform, DeviceTrainTransform, decode_batch
from neural_echos.errors import ConfigError, NeuralEchosError

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".webp", ".bmp", ".ppm", ".pgm", ".tif", ".tiff")
SPLITS = ("train", "val")
PIPELINES = ("workers", "device")
BAD_IMAGE_POLICIES = ("fail", "skip")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming", "random")
RE_MODES = ("const", "rand", "pixel")
MAX_CONSECUTIVE_BAD = 64  # "skip" gives up after this many unreadable files in a row
DOCS = "docs/imagenet.md"


class ImageNetFormatError(NeuralEchosError, RuntimeError):
    """The ImageNet folder tree is missing, laid out wrongly, or holds an unreadable image."""


class UnreadableImageWarning(UserWarning):
    """An unreadable image was skipped (``on_bad_image="skip"``)."""


# --------------------------------------------------------------------------- folder scanning


def list_class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the sub-folders of ``split_dir`` (hidden ones excluded)."""
    with os.scandir(split_dir) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def list_images(class_dir: Path) -> list[str]:
    """Sorted paths of the image files directly inside ``class_dir`` (by extension, any case)."""
    with os.scandir(class_dir) as entries:
        names = [
            e.name
            for e in entries
            if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file()
        ]
    return [str(class_dir / name) for name in sorted(names)]


def read_class_list(classes: Sequence[str] | str | os.PathLike) -> list[str]:
    """The wnids of a class subset: a list, or a text file with one wnid per line (``#`` comments)."""
    if isinstance(classes, (str, os.PathLike)):
        path = Path(classes).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"classes={str(classes)!r} is neither a list of wnids nor an existing text file. "
                "Pass a list (YAML `classes: [n01440764, ...]`) or the path of a file with one wnid per line."
            )
        names = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        names = [name for name in names if name]
        source = f"class file {str(path)!r}"
    else:
        names = [str(name).strip() for name in classes]
        source = "classes"
    if not names:
        raise ConfigError(
            f"{source} is empty: list at least one wnid, or leave classes unset for all classes"
        )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"{source} names some wnids more than once: {', '.join(duplicates[:5])}")
    return names


def _few(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def scan_classes(root: str | os.PathLike, classes: Sequence[str] | str | None = None) -> list[str]:
    """Check the ``train``/``val`` class folders under ``root`` and return the sorted class list.

    Only folder names are read (fast even for 1,000 classes); image files are listed later.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ImageNetFormatError(
            f"ImageNet root {str(root)!r} {'is a file, not a folder' if root.exists() else 'does not exist'}. "
            "Point --data.root at the folder holding "
            f"train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (see {DOCS} for the layout)."
        )
    found: dict[str, list[str]] = {}
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            present = sorted(p.name for p in root.iterdir())[:10]
            raise ImageNetFormatError(
                f"no {split}/ folder in ImageNet root {str(root)!r} (it holds: {', '.join(present) or 'nothing'}). "
                f"Expected {split}/<wnid>/*.JPEG; see {DOCS} for extracting the official archives."
            )
        found[split] = list_class_folders(split_dir)
        if not found[split]:
            loose = [p.name for p in split_dir.iterdir() if p.name.lower().endswith(IMAGE_EXTENSIONS)]
            hint = (
                f" It holds {len(loose)}+ loose image files: the official val archive is flat, re-lay it "
                f"out into one folder per wnid ({DOCS})."
                if loose
                else ""
            )
            raise ImageNetFormatError(
                f"{str(split_dir)!r} has no class folders (expected {split}/<wnid>/).{hint}"
            )
    train, val = set(found["train"]), set(found["val"])
    if classes is None:
        if train != val:
            only_train, only_val = sorted(train - val), sorted(val - train)
            parts = []
            if only_train:
                parts.append(f"{len(only_train)} only in train/ ({_few(only_train)})")
            if only_val:
                parts.append(f"{len(only_val)} only in val/ ({_few(only_val)})")
            raise ImageNetFormatError(
                f"the class folders of train/ and val/ under {str(root)!r} differ: {'; '.join(parts)}. "
                "Both splits need the same wnid folders (an incomplete extraction or val re-layout?); "
                "or pick a common subset with --data.classes."
            )
        return found["train"]
    names = read_class_list(classes)
    missing = {split: [n for n in names if n not in set(found[split])] for split in SPLITS}
    if missing["train"] or missing["val"]:
        parts = [f"{len(m)} not in {split}/ ({_few(m)})" for split, m in missing.items() if m]
        raise ImageNetFormatError(
            f"the class subset names wnids that have no folder under {str(root)!r}: {'; '.join(parts)}. "
            f"Available e.g.: {_few(found['train'], 3)}. Fix the list or the root."
        )
    return sorted(names)


def select_fraction(files: list[str], fraction: float, seed: int, key: str) -> list[str]:
    """A seeded, deterministic ``fraction`` of ``files`` (at least one), in their original order.

    The draw depends only on ``seed``, ``key`` (split and wnid) and the file list, not on which
    other classes are selected, so a class keeps the same images across class subsets.
    """
    if fraction >= 1.0:
        return files
    count = max(1, round(fraction * len(files)))
    chosen = random.Random(f"{seed}:{key}").sample(range(len(files)), count)
    return [files[i] for i in sorted(chosen)]


# --------------------------------------------------------------------------- decoding


def decode_pil(source: str | bytes) -> Image.Image:
    """Decode a file (path) or its bytes with PIL now; RGB images are not copied again by ``convert``."""
    with open(source, "rb") if isinstance(source, str) else io.BytesIO(source) as f:
        image = Image.open(f)
        image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


_DECODE_ERRORS = (OSError, ValueError, SyntaxError, RuntimeError, EOFError, Image.DecompressionBombError)


def _posterize_zero_bits(img: Image.Image, bits_to_keep: int, **kwargs) -> Image.Image:
    """timm's posterize, but 0 bits gives a black image (the old Pillow result) instead of the
    ValueError recent Pillow raises (13.0 here, with timm 1.0.31: still needed, checked; older
    Pillow returned black). With ``mstd``
    RandAugment draws magnitude 10, i.e. 0 bits kept, for ~0.17% of images: a crash within the
    first few batches of 128."""
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return timm_auto_augment.posterize(img, bits_to_keep, **kwargs)


def patch_posterize(transform: Callable) -> Callable:
    """Swap timm's posterize for :func:`_posterize_zero_bits` in the augment ops of ``transform``
    (in place, on this transform's ops only; timm itself is left alone)."""
    steps = transform.transforms if isinstance(transform, T.Compose) else [transform]
    for step in steps:
        ops = list(getattr(step, "ops", []) or [])
        for sub_policy in getattr(step, "policy", []) or []:
            ops.extend(sub_policy)
        for op in ops:
            if getattr(op, "aug_fn", None) is timm_auto_augment.posterize:
                op.aug_fn = _posterize_zero_bits
    return transform


class PILToHWCTensor:
    """PIL RGB image -> uint8 tensor ``[3, H, W]`` viewing ``[H, W, 3]`` memory (no transpose copy)."""

    def __call__(self, image: Image.Image) -> Tensor:
        return torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def collate_uint8(batch: list[tuple[Tensor, int]]) -> tuple[Tensor, Tensor]:
    """Stack ``[3, H, W]`` channels-last views into one ``[N, H, W, 3]`` block (in shared memory in
    a worker) and return it as an ``[N, 3, H, W]`` channels-last view, with int64 labels."""
    images = default_collate([image.permute(1, 2, 0) for image, _ in batch])
    labels = torch.tensor([label for _, label in batch], dtype=torch.int64)
    return images.permute(0, 3, 1, 2), labels


def encode_for_device(data: bytes) -> Tensor:
    """A sample for the ``device`` pipeline: a JPEG's bytes as a 1-D uint8 tensor (decoded on the
    device), any other format (PNG, ...) decoded here to a uint8 ``[3, H, W]`` image."""
    if data[:3] == JPEG_MAGIC:
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return torch.from_numpy(np.array(decode_pil(data), dtype=np.uint8)).permute(2, 0, 1).contiguous()


class EncodedBatch(list):
    """A ``device``-pipeline batch as the workers hand it over: ``[items, labels, paths]`` (items:
    1-D JPEG byte tensors or decoded images; paths name the files in error messages). A list
    subclass so that :meth:`ImageNetDataModule.transfer_batch_to_device` can tell it apart."""


def collate_encoded(batch: list[tuple[Tensor, int, str]]) -> EncodedBatch:
    return EncodedBatch(
        [
            [item for item, _, _ in batch],
            torch.tensor([label for _, label, _ in batch]),
            [path for _, _, path in batch],
        ]
    )


# --------------------------------------------------------------------------- dataset


class ImageFolderSamples(Dataset):
    """``(path, label)`` samples, decoded and transformed on access (``pipeline="workers"``) or
    read as bytes for the device (``"device"``: items ``(encoded, label, path)``).

    An unreadable file raises :class:`ImageNetFormatError` naming it (``on_bad_image="fail"``),
    or (``"skip"``) is replaced by the next readable sample in list order, with an
    :class:`UnreadableImageWarning` naming the file (from the process that read it, a worker
    as a rule) and counted in :attr:`skipped` (of this process: the main process's count with
    ``num_workers=0``, a worker's own otherwise).
    """

    def __init__(
        self,
        samples: list[tuple[str, int]],
        transform: Callable,
        on_bad_image: str = "fail",
        split: str = "",
        pipeline: str = "workers",
    ):
        self.samples = samples
        self.transform = transform
        self.on_bad_image = on_bad_image
        self.split = split
        self.pipeline = pipeline
        self.skipped = 0
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, path: str) -> Any:
        """The worker's share of the work for one file (raises a decode error on a bad file)."""
        if self.pipeline == "device":
            return encode_for_device(read_bytes(path))
        return self.transform(decode_pil(path))

    def __getitem__(self, index: int) -> tuple:
        n = len(self.samples)
        for offset in range(min(n, MAX_CONSECUTIVE_BAD)):
            path, label = self.samples[(index + offset) % n]
            try:
                item = self.load(path)
            except _DECODE_ERRORS as err:
                if self.on_bad_image == "fail":
                    raise bad_image_error(path, err) from err
                self.record_skip(path, err)
                continue
            return (item, label, path) if self.pipeline == "device" else (item, label)
        raise ImageNetFormatError(
            f"{min(n, MAX_CONSECUTIVE_BAD)} consecutive unreadable images in the {self.split} split from "
            f"{self.samples[index % n][0]!r} on: the tree looks damaged, not a stray bad file. Re-extract it."
        )

    def record_skip(self, path: str, err: Exception | str) -> None:
        self.skipped += 1
        if path not in self._warned:
            self._warned.add(path)
            warn_skipped(path, err)


def bad_image_error(path: str, err: Exception | str) -> ImageNetFormatError:
    reason = f"{type(err).__name__}: {err}" if isinstance(err, Exception) else err
    return ImageNetFormatError(
        f"cannot read image {path!r} ({reason}). Replace or delete the file (a truncated download or a "
        "non-image?), or set --data.on_bad_image skip to train on without it."
    )


def warn_skipped(path: str, err: Exception | str) -> None:
    reason = f"{type(err).__name__}: {err}" if isinstance(err, Exception) else err
    warnings.warn(
        f"skipped unreadable image {path!r} ({reason}); another readable sample is used in its place "
        "(on_bad_image='skip')",
        UnreadableImageWarning,
        stacklevel=3,
    )


# --------------------------------------------------------------------------- batch-wise erasing


def normalize_uint8(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """uint8 ``[N, C, H, W]`` in 0..255 to float32 ``(x / 255 - mean) / std``, memory format kept.

    For a channels-last batch (ours) the pixels are normalised as ``[N, H, W * C]`` rows against
    mean/std tiled ``W`` times: broadcasting ``[1, C, 1, 1]`` over NHWC memory would make C (3) the
    innermost loop, which runs ~1.5x slower on a CPU."""
    n, c, h, w = images.shape
    mean_t = torch.tensor(mean, device=images.device, dtype=torch.float32) * 255
    inv_std = 1.0 / (torch.tensor(std, device=images.device, dtype=torch.float32) * 255)
    nhwc = images.permute(0, 2, 3, 1)
    if nhwc.is_contiguous():
        rows = nhwc.reshape(n, h, w * c).float().sub_(mean_t.repeat(w)).mul_(inv_std.repeat(w))
        return rows.view(n, h, w, c).permute(0, 3, 1, 2)
    return images.float().sub_(mean_t.view(1, -1, 1, 1)).mul_(inv_std.view(1, -1, 1, 1))


def sample_erasing_boxes(
    n: int,
    h: int,
    w: int,
    probability: float,
    device: torch.device | str = "cpu",
    min_area: float = 0.02,
    max_area: float = 1 / 3,
    min_aspect: float = 0.3,
    attempts: int = 10,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """timm ``RandomErasing``'s box draw (one box per image), for ``n`` images at once on ``device``.

    Each image is erased with ``probability``; the box's area fraction is uniform in
    ``[min_area, max_area]``, its log aspect uniform in ``±log(min_aspect)``, and the first of
    ``attempts`` draws that fits inside the image is used (none fitting: no erasing), at a
    uniform position. Returns ``erase`` (bool) and ``top, left, height, width`` (int64), each ``[n]``.
    """
    area = torch.empty(n, attempts, device=device).uniform_(min_area, max_area) * (h * w)
    log_aspect = torch.empty(n, attempts, device=device).uniform_(math.log(min_aspect), -math.log(min_aspect))
    aspect = log_aspect.exp()
    box_h = (area * aspect).sqrt().round()
    box_w = (area / aspect).sqrt().round()
    fits = (box_h < h) & (box_w < w)
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)  # index of the first fitting draw
    box_h = box_h.gather(1, first).squeeze(1).clamp_(max=h)
    box_w = box_w.gather(1, first).squeeze(1).clamp_(max=w)
    erase = (torch.rand(n, device=device) < probability) & fits.any(dim=1)
    top = (torch.rand(n, device=device) * (h - box_h + 1)).floor()
    left = (torch.rand(n, device=device) * (w - box_w + 1)).floor()
    return erase, top.long(), left.long(), box_h.long(), box_w.long()


def erase_boxes(
    images: Tensor,
    erase: Tensor,
    top: Tensor,
    left: Tensor,
    box_h: Tensor,
    box_w: Tensor,
    mode: str = "const",
    vectorised: bool | None = None,
) -> Tensor:
    """Fill the boxes of the images marked in ``erase``, in place; returns ``images``.

    Fill: 0 (``const``: the mean colour once normalised), one normal colour per box (``rand``)
    or normal noise per pixel (``pixel``). ``vectorised`` (default: on any device but the CPU)
    builds one mask for the batch, with no host sync; otherwise a slice per erased image, which
    is cheaper on the CPU where reading the box coordinates costs nothing.
    """
    n, c, h, w = images.shape
    if vectorised is None:
        vectorised = images.device.type != "cpu"
    if mode == "const":
        fill = None
    elif mode == "rand":
        fill = torch.randn(n, c, 1, 1, device=images.device, dtype=images.dtype)
    else:
        fill = torch.randn_like(images)
    if not vectorised:
        index = erase.nonzero().squeeze(1).tolist()
        for i, t, l, bh, bw in zip(
            index, top[index].tolist(), left[index].tolist(), box_h[index].tolist(), box_w[index].tolist()
        ):
            if fill is None:
                images[i, :, t : t + bh, l : l + bw] = 0.0
            else:
                images[i, :, t : t + bh, l : l + bw] = (
                    fill[i, :, t : t + bh, l : l + bw] if mode == "pixel" else fill[i]
                )
        return images
    rows = torch.arange(h, device=images.device).view(1, h, 1)
    cols = torch.arange(w, device=images.device).view(1, 1, w)
    in_rows = (rows >= top.view(n, 1, 1)) & (rows < (top + box_h).view(n, 1, 1)) & erase.view(n, 1, 1)
    in_cols = (cols >= left.view(n, 1, 1)) & (cols < (left + box_w).view(n, 1, 1))
    inside = (in_rows & in_cols).unsqueeze(1)  # [n, 1, h, w]
    if fill is None:
        return images.masked_fill_(inside, 0.0)
    return images.copy_(torch.where(inside, fill, images))


def random_erasing(images: Tensor, probability: float, mode: str = "const") -> Tensor:
    """timm's ``RandomErasing(probability, mode, max_count=1)`` on a normalised ``[N, C, H, W]``
    batch, in place (as timm's): boxes from :func:`sample_erasing_boxes`, filled by :func:`erase_boxes`."""
    n, _, h, w = images.shape
    boxes = sample_erasing_boxes(n, h, w, probability, images.device)
    return erase_boxes(images, *boxes, mode=mode)


# --------------------------------------------------------------------------- DataModule


class ImageNetDataModule(pl.LightningDataModule):
    """ImageNet-1k, or a class subset of it, from ``root/{train,val}/<wnid>/*.JPEG`` with timm's transforms.

    Args:
        root: folder holding ``train/`` and ``val/``, each with one folder per class (wnid).
        batch_size: images per batch **per device**. Under DDP the global batch is
            ``batch_size * devices * num_nodes`` (e.g. 128 on 8 GPUs is a global 1024): scale
            the learning rate to the global batch.
        num_workers: DataLoader worker processes per device (decoding and augmentation run there).
        image_size: side of the square training crop and evaluation centre crop.
        crop_pct: evaluation resize: the shorter side goes to ``image_size / crop_pct`` (256 for
            224 at 0.875), then the centre ``image_size`` square is cropped.
        interpolation: resize filter of the random-resized crop, resize and RandAugment
            (``bicubic``, ``bilinear``, ... ; ``random`` picks bilinear or bicubic per training
            image and bicubic for evaluation).
        auto_augment: timm augment policy string, e.g. ``rand-m9-mstd0.5-inc1`` (RandAugment),
            ``augmix-m5-w4-d2``, ``original``; ``null`` disables it.
        re_prob: random-erasing probability per training image (applied batch-wise on the device).
        re_mode: random-erasing fill: ``const`` (zeros after normalisation), ``rand``, ``pixel``.
        hflip: horizontal-flip probability.
        color_jitter: colour-jitter strength; as in timm it is **ignored when auto_augment is set**.
        classes: a class subset: a list of wnids or the path of a text file with one wnid per
            line (e.g. ImageNet-100). Labels follow the sorted wnids. ``null``: all classes.
        fraction: seeded fraction of the training images of each class (at least one per class).
        val_fraction: the same for validation (default: all validation images).
        fraction_seed: seed of those selections (independent of the training seed).
        pipeline: ``workers`` (PIL decoding and timm's transforms in the DataLoader workers) or
            ``device`` (the workers only read the files; decoding with ``torchvision.io.decode_jpeg``
            and timm's augmentation batch-wise on the training device: for GPUs, see
            docs/imagenet.md for what it supports and how its augmentations compare).
        on_bad_image: ``fail`` raises an error naming an unreadable file; ``skip`` uses another
            readable sample instead and warns with the file name.
        pin_memory: pinned host memory for faster copies to the GPU (only used when CUDA is available).
        persistent_workers: keep worker processes alive between epochs.

    ``image_size`` is set on construction and ``num_classes`` is a property that scans the class
    folders on first access (both linked to the model by ``run.py``); ``classes`` holds the wnids
    in label order. Files are listed in :meth:`setup`.
    """

    mean = IMAGENET_DEFAULT_MEAN
    std = IMAGENET_DEFAULT_STD

    def __init__(
        self,
        root: str = "data/imagenet",
        batch_size: int = 128,
        num_workers: int = 8,
        image_size: int = 224,
        crop_pct: float = 0.875,
        interpolation: str = "bicubic",
        auto_augment: str | None = "rand-m9-mstd0.5-inc1",
        re_prob: float = 0.25,
        re_mode: str = "const",
        hflip: float = 0.5,
        color_jitter: float = 0.4,
        classes: list[str] | str | None = None,
        fraction: float = 1.0,
        val_fraction: float = 1.0,
        fraction_seed: int = 0,
        pipeline: str = "workers",
        on_bad_image: str = "fail",
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ):
        super().__init__()
        _check_args(
            batch_size,
            num_workers,
            image_size,
            crop_pct,
            interpolation,
            re_prob,
            re_mode,
            hflip,
            color_jitter,
            fraction,
            val_fraction,
            pipeline,
            on_bad_image,
        )
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.image_size = image_size
        self.crop_pct = crop_pct
        self.interpolation = interpolation
        self.auto_augment = auto_augment or None
        self.re_prob = re_prob
        self.re_mode = re_mode
        self.hflip = hflip
        self.color_jitter = color_jitter
        self.fraction = fraction
        self.val_fraction = val_fraction
        self.fraction_seed = fraction_seed
        self.pipeline = pipeline
        self.on_bad_image = on_bad_image
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.train_transform = self.build_transform(train=True)
        self.eval_transform = self.build_transform(train=False)
        self.device_train_transform = self.device_eval_transform = None
        if pipeline == "device":  # the same timm transform objects, run on the device
            self.device_train_transform = DeviceTrainTransform(self.train_transform.transforms)
            self.device_eval_transform = DeviceEvalTransform(self.eval_transform.transforms)
        self._subset = None if classes is None else read_class_list(classes)
        self._classes: list[str] | None = None  # scanned on first use (see `classes`)
        self.train_set: ImageFolderSamples | None = None
        self.val_set: ImageFolderSamples | None = None

    # ---------------------------------------------------------------- classes

    @property
    def classes(self) -> list[str]:
        """The wnids in label order (sorted), after subsetting; the class folders are scanned on
        first use. run.py reads ``num_classes`` right after construction to link it to the model,
        and a layout error raised from there reaches the user as one clear line (errors raised
        inside ``__init__`` come out wrapped in jsonargparse's "Does not validate" ValueError)."""
        if self._classes is None:
            self._classes = scan_classes(self.root, self._subset)
        return self._classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_to_idx(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.classes)}

    # ---------------------------------------------------------------- transforms

    def build_transform(self, train: bool) -> T.Compose:
        """timm's transform up to (not including) tensor conversion, then a uint8 HWC tensor."""
        try:
            if train:
                # use_prefetcher: no ToTensor/Normalize/RandomErasing here (done batch-wise on the device)
                primary, secondary, _ = create_transform(
                    self.image_size,
                    is_training=True,
                    interpolation=self.interpolation,
                    auto_augment=self.auto_augment,
                    hflip=self.hflip,
                    color_jitter=self.color_jitter,
                    mean=self.mean,
                    std=self.std,
                    re_prob=0.0,
                    use_prefetcher=True,
                    separate=True,
                )
                steps = [*primary.transforms, *secondary.transforms]
            else:
                interpolation = "bicubic" if self.interpolation == "random" else self.interpolation
                full = create_transform(
                    self.image_size,
                    is_training=False,
                    interpolation=interpolation,
                    crop_pct=self.crop_pct,
                    mean=self.mean,
                    std=self.std,
                    use_prefetcher=True,
                )
                steps = [t for t in full.transforms if "ToTensor" not in type(t).__name__]
        except (AssertionError, ValueError, KeyError, IndexError) as err:
            raise ConfigError(
                f"timm could not build the {'training' if train else 'evaluation'} transform "
                f"(auto_augment={self.auto_augment!r}, interpolation={self.interpolation!r}): "
                f"{type(err).__name__}: {err}. Use an auto_augment string such as 'rand-m9-mstd0.5-inc1', "
                "'augmix-m5-w4-d2' or 'original', or null to disable it."
            ) from err
        return patch_posterize(T.Compose([*steps, PILToHWCTensor()]))

    # ---------------------------------------------------------------- datasets

    def _samples(self, split: str, fraction: float) -> list[tuple[str, int]]:
        samples = []
        for label, wnid in enumerate(self.classes):
            class_dir = self.root / split / wnid
            files = list_images(class_dir)
            if not files:
                raise ImageNetFormatError(
                    f"class folder {str(class_dir)!r} has no images ({', '.join(IMAGE_EXTENSIONS[:2])}, ... files). "
                    "Re-extract the class archive, or leave the class out with --data.classes."
                )
            files = select_fraction(files, fraction, self.fraction_seed, f"{split}:{wnid}")
            samples.extend((path, label) for path in files)
        return samples

    def setup(self, stage: str | None = None) -> None:
        if self.val_set is None:
            self.val_set = ImageFolderSamples(
                self._samples("val", self.val_fraction),
                self.eval_transform,
                self.on_bad_image,
                "val",
                self.pipeline,
            )
        if self.train_set is None and stage in (None, "fit"):
            self.train_set = ImageFolderSamples(
                self._samples("train", self.fraction),
                self.train_transform,
                self.on_bad_image,
                "train",
                self.pipeline,
            )

    # ---------------------------------------------------------------- loaders

    def _loader(self, dataset: ImageFolderSamples | None, train: bool) -> DataLoader:
        if dataset is None:
            self.setup("fit" if train else "validate")
            dataset = self.train_set if train else self.val_set
        workers = self.num_workers
        seed = run_seed(self.trainer, default=0)  # the run's seed_everything seed
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            # the order depends only on (seed, epoch); under DDP Lightning swaps in a
            # DistributedSampler, whose order depends only on (seed, epoch) as well
            sampler=EpochShuffle(len(dataset), seed) if train else None,
            generator=torch.Generator().manual_seed(seed),  # the workers' base seed
            drop_last=train and len(dataset) > self.batch_size,  # even, full batches for Mixup/CutMix
            num_workers=workers,
            collate_fn=collate_encoded if self.pipeline == "device" else collate_uint8,
            # (device pipeline: pinning hundreds of small byte tensors buys nothing; nvJPEG reads host memory)
            pin_memory=self.pin_memory and torch.cuda.is_available() and self.pipeline == "workers",
            persistent_workers=self.persistent_workers and workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        """The validation split (ImageNet's test labels are not public)."""
        return self._loader(self.val_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    # ---------------------------------------------------------------- on the device

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, EncodedBatch):  # device pipeline: decode straight onto the device
            return self.decode_on_device(batch, device)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def decode_on_device(self, batch: EncodedBatch, device: torch.device) -> EncodedBatch:
        """Decode an encoded batch to a list of RGB uint8 images on ``device``; a file no decoder
        reads is an error naming it (``fail``) or is replaced by another image of the batch with
        its label (``skip``)."""
        items, labels, paths = batch
        images, failed = decode_batch(items, device)
        if failed:
            if self.on_bad_image == "fail" or len(failed) == len(images):
                raise bad_image_error(paths[failed[0]], "no JPEG decoder could read it")
            good = [i for i in range(len(images)) if i not in set(failed)]
            labels = labels.clone()
            for k, i in enumerate(failed):
                warn_skipped(paths[i], "no JPEG decoder could read it")
                images[i], labels[i] = images[good[k % len(good)]], labels[good[k % len(good)]]
        return EncodedBatch([images, labels.to(device), paths])

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> tuple[Tensor, Tensor]:
        if isinstance(batch, Tensor):  # the model summary's example input, already float
            return batch
        training = self.trainer is not None and self.trainer.training
        if isinstance(batch, EncodedBatch):
            images, labels, _ = batch
            transform = self.device_train_transform if training else self.device_eval_transform
            images = transform(images).contiguous(memory_format=torch.channels_last)
            images = images.sub_(torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1) * 255)
            images = images.div_(torch.tensor(self.std, device=images.device).view(1, -1, 1, 1) * 255)
        else:
            images, labels = batch
            images = normalize_uint8(images, self.mean, self.std)
        if self.re_prob > 0 and training:
            images = random_erasing(images, self.re_prob, self.re_mode)
        return images, labels


def _check_args(
    batch_size,
    num_workers,
    image_size,
    crop_pct,
    interpolation,
    re_prob,
    re_mode,
    hflip,
    color_jitter,
    fraction,
    val_fraction,
    pipeline,
    on_bad_image,
) -> None:
    checks = [
        (batch_size >= 1, f"batch_size must be at least 1, got {batch_size}"),
        (num_workers >= 0, f"num_workers must be >= 0, got {num_workers}"),
        (image_size >= 1, f"image_size must be a positive number of pixels, got {image_size}"),
        (0 < crop_pct <= 1, f"crop_pct must be in (0, 1] (0.875: resize to 256, crop 224), got {crop_pct}"),
        (
            interpolation in INTERPOLATIONS,
            f"unknown interpolation {interpolation!r}; use one of {', '.join(INTERPOLATIONS)}",
        ),
        (0 <= re_prob <= 1, f"re_prob is a probability in [0, 1], got {re_prob}"),
        (re_mode in RE_MODES, f"unknown re_mode {re_mode!r}; use one of {', '.join(RE_MODES)}"),
        (0 <= hflip <= 1, f"hflip is a probability in [0, 1], got {hflip}"),
        (color_jitter >= 0, f"color_jitter must be >= 0, got {color_jitter}"),
        (
            0 < fraction <= 1,
            f"fraction is the share of training images kept per class, in (0, 1], got {fraction}",
        ),
        (
            0 < val_fraction <= 1,
            f"val_fraction is the share of validation images kept per class, in (0, 1], got {val_fraction}",
        ),
        (
            pipeline in PIPELINES,
            (
                f"unknown pipeline {pipeline!r}; use 'workers' (timm's transforms in the DataLoader "
                "workers) or 'device' (decoding and augmentation on the training device)"
            ),
        ),
        (
            on_bad_image in BAD_IMAGE_POLICIES,
            (
                f"unknown on_bad_image {on_bad_image!r}; use 'fail' (raise, naming the file) or 'skip' "
                "(use the next readable image and warn)"
            ),
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
