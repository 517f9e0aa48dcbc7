"""ImageNet decoding and timm's augmentation on the training device, for whole batches.

The DataLoader workers only read the files (bytes); the device decodes them
(``torchvision.io.decode_jpeg``, on a GPU with nvJPEG, batched) and runs the training transform
that :func:`timm.data.create_transform` builds, *taking every random parameter from timm's own
transform objects*:

* RandomResizedCrop: the box from timm's ``RandomResizedCropAndInterpolation.get_params`` (the
  same 10-attempt draw and centre-crop fallback), then one antialiased resize per image;
* horizontal flip: one mask for the batch, with timm's probability;
* RandAugment (``rand-...`` policies): per image and layer, the op, whether it fires, its
  magnitude and its arguments are drawn exactly as timm's ``RandAugment``/``AugmentOp`` draw them
  (``np.random.choice`` of the ops, ``random`` for probability, magnitude noise and sign, timm's
  own ``level_fn``); the pixel work is ours, batch-wise in torch, one launch group per op;
* ColorJitter (when there is no auto-augment): torchvision's, per image (it takes tensors).

Why ours: timm's RandAugment ops are PIL-only, and torchvision's tensor ``RandAugment`` is a
different policy (other ops, ranges and no per-op probability). The torch ops reproduce the PIL
ones (``PIL.ImageOps``/``ImageEnhance``/affine transforms) to within rounding for the point ops
and to within interpolation differences for the geometric ones; ``tests/datamodules/
test_device_augment.py`` measures both against timm's PIL ops. Images stay in 0..255 and are
rounded after every op, as a uint8 PIL image is.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import auto_augment as timm_aa
from timm.data.transforms import RandomResizedCropAndInterpolation
from torch import Tensor
from torchvision import transforms as T
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from neural_echos.errors import ConfigError

_PIL_TO_MODE = {
    Image.Resampling.NEAREST: "nearest",
    Image.Resampling.BILINEAR: "bilinear",
    Image.Resampling.BICUBIC: "bicubic",
}
_PIL_TO_TV = {
    Image.Resampling.NEAREST: InterpolationMode.NEAREST,
    Image.Resampling.BILINEAR: InterpolationMode.BILINEAR,
    Image.Resampling.BICUBIC: InterpolationMode.BICUBIC,
    Image.Resampling.LANCZOS: InterpolationMode.LANCZOS,
    Image.Resampling.BOX: InterpolationMode.BOX,
    Image.Resampling.HAMMING: InterpolationMode.HAMMING,
}
JPEG_MAGIC = b"\xff\xd8\xff"


# --------------------------------------------------------------------------- decoding


def decode_batch(items: Sequence[Tensor], device: torch.device) -> tuple[list[Tensor], list[int]]:
    """Decode a batch to RGB uint8 ``[3, H, W]`` tensors on ``device``.

    ``items`` are 1-D uint8 tensors of JPEG bytes (on the CPU, as nvJPEG wants them) or images
    the worker decoded already (3-D: non-JPEG files). JPEGs are decoded in one batched call; if
    that fails, one by one, each falling back to the CPU (e.g. a CMYK JPEG nvJPEG refuses).
    Returns the images and the positions of the items that could not be decoded at all."""
    images: list[Tensor | None] = [None] * len(items)
    jpegs = [i for i, item in enumerate(items) if item.dim() == 1]
    for i, item in enumerate(items):
        if item.dim() == 3:
            images[i] = item.to(device, non_blocking=True)
    if jpegs:
        try:
            decoded = decode_jpeg([items[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
            for i, image in zip(jpegs, decoded):
                images[i] = image
        except RuntimeError:
            for i in jpegs:
                images[i] = _decode_one(items[i], device)
    failed = [i for i, image in enumerate(images) if image is None]
    return images, failed  # type: ignore[return-value]


def _decode_one(data: Tensor, device: torch.device) -> Tensor | None:
    for target in dict.fromkeys([device, torch.device("cpu")]):
        try:
            if target.type == "cpu":
                return decode_image(data, mode=ImageReadMode.RGB).to(device)
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=target)
        except RuntimeError:
            continue
    return None


# --------------------------------------------------------------------------- torch versions of timm's PIL ops


def _blend(degenerate: Tensor, images: Tensor, factor: Tensor) -> Tensor:
    """PIL ``Image.blend(degenerate, image, factor)``: degenerate + factor (image - degenerate)."""
    return (degenerate + factor.view(-1, 1, 1, 1) * (images - degenerate)).floor_().clamp_(0, 255)


def _luma(images: Tensor) -> Tensor:
    """PIL ``convert("L")``: ITU-R 601-2 luma, rounded (``[n, 1, H, W]``)."""
    r, g, b = images[:, 0:1], images[:, 1:2], images[:, 2:3]
    return (r * 0.299 + g * 0.587 + b * 0.114).round_()


def _identity_args(images: Tensor, args: Tensor) -> Tensor:
    return images


def op_invert(images: Tensor, args: Tensor) -> Tensor:
    return 255.0 - images


def op_auto_contrast(images: Tensor, args: Tensor) -> Tensor:
    """``ImageOps.autocontrast``: each channel stretched to 0..255 (lut ``int((v - lo) * 255 / (hi - lo))``)."""
    lo = images.amin(dim=(2, 3), keepdim=True)
    hi = images.amax(dim=(2, 3), keepdim=True)
    scale = 255.0 / (hi - lo).clamp_min(1)
    stretched = ((images - lo) * scale).floor_().clamp_(0, 255)
    return torch.where(hi > lo, stretched, images)


def op_equalize(images: Tensor, args: Tensor) -> Tensor:
    """``ImageOps.equalize``: per channel, lut[i] = (step // 2 + #pixels below i) // step with
    step = (#pixels - #pixels in the last non-empty bin) // 255 (identity when step is 0)."""
    n, c, h, w = images.shape
    levels = images.reshape(n * c, h * w).long()
    hist = torch.zeros(n * c, 256, device=images.device, dtype=torch.long).scatter_add_(
        1, levels, torch.ones_like(levels)
    )
    last = 255 - (hist.flip(1) > 0).long().argmax(dim=1)  # highest non-empty bin
    step = (h * w - hist.gather(1, last.unsqueeze(1)).squeeze(1)) // 255
    below = hist.cumsum(1) - hist  # pixels strictly below each level
    lut = (step.unsqueeze(1) // 2 + below) // step.clamp_min(1).unsqueeze(1)
    lut = torch.where((step > 0).unsqueeze(1), lut.clamp_(0, 255), torch.arange(256, device=images.device))
    return lut.gather(1, levels).to(images.dtype).view(n, c, h, w)


def op_posterize(images: Tensor, bits: Tensor) -> Tensor:
    """``ImageOps.posterize``: keep the top ``bits`` bits (0 bits: black, our fix; >= 8: unchanged)."""
    bits = bits.clamp(0, 8).view(-1, 1, 1, 1)
    step = torch.pow(2.0, 8 - bits)
    return torch.where(bits <= 0, torch.zeros_like(images), (images / step).floor_() * step)


def op_solarize(images: Tensor, thresh: Tensor) -> Tensor:
    return torch.where(images < thresh.view(-1, 1, 1, 1), images, 255.0 - images)


def op_solarize_add(images: Tensor, add: Tensor, thresh: float = 128) -> Tensor:
    return torch.where(images < thresh, (images + add.view(-1, 1, 1, 1)).clamp_(max=255), images)


def op_color(images: Tensor, factor: Tensor) -> Tensor:
    return _blend(_luma(images).expand_as(images), images, factor)


def op_contrast(images: Tensor, factor: Tensor) -> Tensor:
    mean = (_luma(images).mean(dim=(1, 2, 3), keepdim=True) + 0.5).floor_()  # int(mean + 0.5)
    return _blend(mean.expand_as(images), images, factor)


def op_brightness(images: Tensor, factor: Tensor) -> Tensor:
    return _blend(torch.zeros_like(images), images, factor)


def op_sharpness(images: Tensor, factor: Tensor) -> Tensor:
    """``ImageEnhance.Sharpness``: blend with ``ImageFilter.SMOOTH`` (3x3, centre 5, others 1,
    /13); PIL leaves the one-pixel border unfiltered."""
    c = images.shape[1]
    kernel = torch.ones(3, 3, device=images.device, dtype=images.dtype)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    smooth = F.conv2d(images, kernel, padding=1, groups=c).round_()
    degenerate = images.clone()
    degenerate[:, :, 1:-1, 1:-1] = smooth[:, :, 1:-1, 1:-1]
    return _blend(degenerate, images, factor)


def _affine(images: Tensor, matrix: Tensor, fill: Sequence[float], mode: str) -> Tensor:
    """PIL ``Image.transform(AFFINE, (a, b, c, d, e, f))``: output pixel centre (x, y) samples the
    input at (a x + b y + c, d x + e y + f); points outside the input get ``fill``."""
    n, _, h, w = images.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, device=images.device, dtype=images.dtype) + 0.5,
        torch.arange(w, device=images.device, dtype=images.dtype) + 0.5,
        indexing="ij",
    )
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, h * w, 3)
    source = points @ matrix.to(images.dtype).view(n, 2, 3).transpose(1, 2)  # [n, h*w, 2] in pixels
    inside = (
        (source[..., 0] >= 0) & (source[..., 0] < w) & (source[..., 1] >= 0) & (source[..., 1] < h)
    ).view(n, 1, h, w)
    grid = torch.stack([source[..., 0] / w * 2 - 1, source[..., 1] / h * 2 - 1], dim=-1).view(n, h, w, 2)
    sampled = F.grid_sample(images, grid, mode=mode, padding_mode="border", align_corners=False)
    fill_t = torch.tensor(fill, device=images.device, dtype=images.dtype).view(1, -1, 1, 1)
    return torch.where(inside, sampled.clamp_(0, 255), fill_t)


def _matrices(rows: list[tuple[float, ...]], device) -> Tensor:
    return torch.tensor(rows, dtype=torch.float32, device=device)


def op_shear_x(images: Tensor, factor: Tensor, fill, mode) -> Tensor:
    rows = [(1, f, 0, 0, 1, 0) for f in factor.tolist()]
    return _affine(images, _matrices(rows, images.device), fill, mode)


def op_shear_y(images: Tensor, factor: Tensor, fill, mode) -> Tensor:
    rows = [(1, 0, 0, f, 1, 0) for f in factor.tolist()]
    return _affine(images, _matrices(rows, images.device), fill, mode)


def op_translate_x_rel(images: Tensor, pct: Tensor, fill, mode) -> Tensor:
    w = images.shape[-1]
    rows = [(1, 0, p * w, 0, 1, 0) for p in pct.tolist()]
    return _affine(images, _matrices(rows, images.device), fill, mode)


def op_translate_y_rel(images: Tensor, pct: Tensor, fill, mode) -> Tensor:
    h = images.shape[-2]
    rows = [(1, 0, 0, 0, 1, p * h) for p in pct.tolist()]
    return _affine(images, _matrices(rows, images.device), fill, mode)


def op_rotate(images: Tensor, degrees: Tensor, fill, mode) -> Tensor:
    """``Image.rotate(degrees)``: counter-clockwise about the centre (w/2, h/2), size kept."""
    h, w = images.shape[-2:]
    cx, cy = w / 2.0, h / 2.0
    rows = []
    for deg in degrees.tolist():
        angle = -math.radians(deg)
        a, b, d, e = math.cos(angle), math.sin(angle), -math.sin(angle), math.cos(angle)
        rows.append((a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy))
    return _affine(images, _matrices(rows, images.device), fill, mode)


# timm's PIL op (the function its AugmentOp calls) -> ours; geometric ops take fill and interpolation
POINT_OPS = {
    timm_aa.auto_contrast: op_auto_contrast,
    timm_aa.equalize: op_equalize,
    timm_aa.invert: op_invert,
    timm_aa.posterize: op_posterize,
    timm_aa.solarize: op_solarize,
    timm_aa.solarize_add: op_solarize_add,
    timm_aa.color: op_color,
    timm_aa.contrast: op_contrast,
    timm_aa.brightness: op_brightness,
    timm_aa.sharpness: op_sharpness,
}
GEOMETRIC_OPS = {
    timm_aa.rotate: op_rotate,
    timm_aa.shear_x: op_shear_x,
    timm_aa.shear_y: op_shear_y,
    timm_aa.translate_x_rel: op_translate_x_rel,
    timm_aa.translate_y_rel: op_translate_y_rel,
}


def _base_fn(aug_fn):
    """timm's op function behind an AugmentOp, seeing through our posterize fix."""
    return timm_aa.posterize if getattr(aug_fn, "__name__", "") == "_posterize_zero_bits" else aug_fn


def sample_op(op: timm_aa.AugmentOp) -> tuple[float, ...] | None:
    """The random part of timm's ``AugmentOp.__call__``, without the image: ``None`` when the op
    does not fire, else its level arguments (and, for geometric ops, the interpolation last)."""
    if op.prob < 1.0 and random.random() > op.prob:
        return None
    magnitude = op.magnitude
    if op.magnitude_std == float("inf"):
        magnitude = random.uniform(0, magnitude)
    elif op.magnitude_std > 0:
        magnitude = random.gauss(magnitude, op.magnitude_std)
    magnitude = max(0.0, min(magnitude, op.magnitude_max or timm_aa._LEVEL_DENOM))
    args = tuple(op.level_fn(magnitude, op.hparams)) if op.level_fn is not None else ()
    if _base_fn(op.aug_fn) in GEOMETRIC_OPS:
        resample = op.kwargs.get("resample", Image.Resampling.BICUBIC)
        args = args + ((random.choice(resample) if isinstance(resample, (list, tuple)) else resample),)
    return args


class DeviceRandAugment:
    """timm's ``RandAugment`` for a batch: timm's draws per image, our torch ops per op group."""

    def __init__(self, rand_augment: timm_aa.RandAugment):
        for op in rand_augment.ops:
            if _base_fn(op.aug_fn) not in POINT_OPS and _base_fn(op.aug_fn) not in GEOMETRIC_OPS:
                raise ConfigError(
                    f"the device pipeline has no version of timm's augment op {op.name!r}; use a RandAugment "
                    "policy of the standard ops (e.g. 'rand-m9-mstd0.5-inc1') or --data.pipeline workers"
                )
        self.policy = rand_augment

    def sample(self, n: int) -> list[list[tuple[timm_aa.AugmentOp, tuple] | None]]:
        """Per layer, per image: (op, args) or None, drawn in timm's order for each image."""
        policy = self.policy
        draws: list[list] = [[None] * n for _ in range(policy.num_layers)]
        for i in range(n):
            ops = np.random.choice(
                policy.ops, policy.num_layers, replace=policy.choice_weights is None, p=policy.choice_weights
            )
            for layer, op in enumerate(ops):
                args = sample_op(op)
                draws[layer][i] = None if args is None else (op, args)
        return draws

    def __call__(self, images: Tensor) -> Tensor:
        """``images``: float ``[N, 3, H, W]`` in 0..255; returns the same, augmented."""
        for layer in self.sample(len(images)):
            groups: dict[tuple, list[int]] = {}
            for i, draw in enumerate(layer):
                if draw is not None:
                    op, args = draw
                    fn = _base_fn(op.aug_fn)
                    key = (fn, args[-1]) if fn in GEOMETRIC_OPS else (fn, None)
                    groups.setdefault(key, []).append(i)
            if not groups:
                continue
            images = images.clone()
            for (fn, resample), index in groups.items():
                values = [layer[i][1] for i in index]
                idx = torch.tensor(index, device=images.device)
                subset = images.index_select(0, idx)
                first = torch.tensor(
                    [v[0] if v else 0.0 for v in values], device=images.device, dtype=images.dtype
                )
                if fn in GEOMETRIC_OPS:
                    op = next(layer[i][0] for i in index)
                    fill = op.kwargs.get("fillcolor", timm_aa._FILL)
                    out = GEOMETRIC_OPS[fn](subset, first, fill, _PIL_TO_MODE.get(resample, "bicubic"))
                else:
                    out = POINT_OPS[fn](subset, first)
                images.index_copy_(0, idx, out.round_())
        return images


# --------------------------------------------------------------------------- the whole training transform


class DeviceTrainTransform:
    """timm's training transform (``create_transform(..., separate=True)``: primary + secondary
    steps, no tensor conversion) applied batch-wise on the device: list of decoded images in,
    float ``[N, 3, S, S]`` in 0..255 out."""

    def __init__(self, steps: Sequence):
        self.crop: RandomResizedCropAndInterpolation | None = None
        self.hflip = self.vflip = 0.0
        self.rand_augment: DeviceRandAugment | None = None
        self.per_image: list = []  # torchvision transforms that take tensors (ColorJitter)
        for step in steps:
            if isinstance(step, RandomResizedCropAndInterpolation):
                self.crop = step
            elif isinstance(step, T.RandomHorizontalFlip):
                self.hflip = step.p
            elif isinstance(step, T.RandomVerticalFlip):
                self.vflip = step.p
            elif isinstance(step, timm_aa.RandAugment):
                self.rand_augment = DeviceRandAugment(step)
            elif isinstance(step, T.ColorJitter):
                self.per_image.append(step)
            elif (
                "ToTensor" in type(step).__name__
                or "ToNumpy" in type(step).__name__
                or type(step).__name__ == "PILToHWCTensor"
            ):
                continue
            else:
                raise ConfigError(
                    f"the device pipeline cannot run timm's {type(step).__name__} on tensors; use a RandAugment "
                    "auto_augment ('rand-...') or none, or --data.pipeline workers"
                )
        if self.crop is None:
            raise ConfigError("the device pipeline expects timm's RandomResizedCrop training transform")

    def crop_boxes(self, images: Sequence[Tensor]) -> list[tuple[int, int, int, int]]:
        """timm's own box draw per image (top, left, height, width)."""
        return [self.crop.get_params(image, self.crop.scale, self.crop.ratio) for image in images]

    def __call__(self, images: Sequence[Tensor]) -> Tensor:
        size = list(self.crop.size)
        interpolation = self.crop.interpolation
        crops = []
        for image, (top, left, h, w) in zip(images, self.crop_boxes(images)):
            mode = random.choice(interpolation) if isinstance(interpolation, (list, tuple)) else interpolation
            mode = mode if isinstance(mode, InterpolationMode) else _PIL_TO_TV[mode]
            crops.append(TF.resized_crop(image, top, left, h, w, size, interpolation=mode, antialias=True))
        batch = torch.stack(crops).float()
        n = len(batch)
        if self.hflip > 0:
            flip = (torch.rand(n) < self.hflip).to(batch.device).view(n, 1, 1, 1)
            batch = torch.where(flip, batch.flip(-1), batch)
        if self.vflip > 0:
            flip = (torch.rand(n) < self.vflip).to(batch.device).view(n, 1, 1, 1)
            batch = torch.where(flip, batch.flip(-2), batch)
        if self.rand_augment is not None:
            batch = self.rand_augment(batch)
        for step in self.per_image:
            batch = torch.stack([step(image.to(torch.uint8)) for image in batch]).float()
        return batch


class DeviceEvalTransform:
    """timm's evaluation transform (Resize of the shorter side, CenterCrop): torchvision's own
    transforms, which take tensors, per image on the device; float ``[N, 3, S, S]`` out."""

    def __init__(self, steps: Sequence):
        self.steps = [s for s in steps if isinstance(s, (T.Resize, T.CenterCrop))]

    def __call__(self, images: Sequence[Tensor]) -> Tensor:
        out = []
        for image in images:
            for step in self.steps:
                image = step(image)
            out.append(image)
        return torch.stack(out).float()
