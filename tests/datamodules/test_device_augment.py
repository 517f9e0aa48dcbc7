"""The device pipeline against timm's CPU path: the same random draws, the same pixels within
documented tolerances, and the DataModule end to end (on the CPU device here)."""

from __future__ import annotations

import copy
import random
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import auto_augment as timm_aa
from timm.data import create_transform

from datamodules import device_augment as da
from datamodules.imagenet import ImageNetDataModule, ImageNetFormatError, UnreadableImageWarning

pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)
POLICY = "rand-m9-mstd0.5-inc1"
FILL = (124, 116, 104)


def natural(seed: int, w: int = 96, h: int = 80) -> Image.Image:
    """Smooth colour field with edges and noise (compresses and resamples like a photo)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC), np.float32)
    image[h // 3 : h // 2, w // 4 : w // 2] = rng.integers(0, 256, 3)
    image += rng.normal(0, 8, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def as_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)


POINT_CASES = [
    (timm_aa.auto_contrast, ()),
    (timm_aa.equalize, ()),
    (timm_aa.invert, ()),
    (timm_aa.posterize, (1,)),
    (timm_aa.posterize, (3,)),
    (timm_aa.solarize, (60,)),
    (timm_aa.solarize_add, (99,)),
    (timm_aa.color, (1.8,)),
    (timm_aa.color, (0.2,)),
    (timm_aa.contrast, (1.8,)),
    (timm_aa.contrast, (0.3,)),
    (timm_aa.brightness, (1.7,)),
    (timm_aa.sharpness, (1.9,)),
    (timm_aa.sharpness, (0.1,)),
]
GEOMETRIC_CASES = [
    (timm_aa.rotate, (27.0,)),
    (timm_aa.shear_x, (0.27,)),
    (timm_aa.shear_y, (-0.27,)),
    (timm_aa.translate_x_rel, (0.4,)),
    (timm_aa.translate_y_rel, (-0.4,)),
]


@pytest.mark.parametrize("fn, args", POINT_CASES, ids=[f"{f.__name__}{a}" for f, a in POINT_CASES])
def test_point_ops_match_timms_pil_ops(fn, args):
    """Within one grey level anywhere (rounding), on average exact."""
    image = natural(0)
    reference = as_tensor(fn(image, *args)).float()
    ours = da.POINT_OPS[fn](as_tensor(image)[None].float(), torch.tensor([float(args[0]) if args else 0.0]))[
        0
    ]
    difference = (ours - reference).abs()
    assert difference.max() <= 1 and difference.mean() < 0.01


@pytest.mark.parametrize("fn, args", GEOMETRIC_CASES, ids=[f.__name__ for f, _ in GEOMETRIC_CASES])
@pytest.mark.parametrize(
    "resample, mean_tol, max_tol", [(Image.Resampling.BILINEAR, 0.6, 1), (Image.Resampling.BICUBIC, 1.5, 16)]
)
def test_geometric_ops_match_timms_pil_ops(fn, args, resample, mean_tol, max_tol):
    """Same geometry and fill; bilinear within one level; bicubic differs by the kernel (PIL
    a = -0.5, torch's grid_sample a = -0.75): mean below 1.5 levels, a few pixels at edges more."""
    image = natural(1)
    reference = as_tensor(fn(image, *args, fillcolor=FILL, resample=resample)).float()
    mode = "bilinear" if resample == Image.Resampling.BILINEAR else "bicubic"
    ours = da.GEOMETRIC_OPS[fn](as_tensor(image)[None].float(), torch.tensor([args[0]]), FILL, mode)[
        0
    ].round()
    difference = (ours - reference).abs()
    assert difference.mean() < mean_tol and difference.max() <= max_tol


def _recorded_timm_draws(policy: timm_aa.RandAugment, n: int) -> list[list]:
    """Run timm's own RandAugment on n tiny images with every op replaced by a recorder."""
    policy = copy.deepcopy(policy)
    draws: list[list] = []

    def recorder(op):
        geometric = da._base_fn(op.aug_fn) in da.GEOMETRIC_OPS

        def record(img, *args, **kwargs):
            if geometric:
                args = args + (timm_aa._interpolation(dict(kwargs)),)  # what timm's op does with resample
            draws[-1].append((op.name, args))
            return img

        return record

    for op in policy.ops:
        op.aug_fn = recorder(op)
    tiny = Image.new("RGB", (4, 4))
    for _ in range(n):
        draws.append([])
        policy(tiny)
    return draws


@pytest.mark.parametrize("interpolation", ["bicubic", "random"])
def test_randaugment_draws_are_exactly_timms(interpolation):
    """Same seeds -> the same ops, magnitudes, signs and interpolations, image by image."""
    steps = create_transform(
        64,
        is_training=True,
        auto_augment=POLICY,
        interpolation=interpolation,
        use_prefetcher=True,
        separate=True,
    )[1].transforms
    policy = steps[0]
    n = 400
    random.seed(7), np.random.seed(7)
    expected = _recorded_timm_draws(policy, n)
    random.seed(7), np.random.seed(7)
    layers = da.DeviceRandAugment(policy).sample(n)
    ours = [[(d[0].name, d[1]) for d in (layers[0][i], layers[1][i]) if d is not None] for i in range(n)]
    assert ours == expected
    names = {name for image in ours for name, _ in image}
    assert len(names) == 15  # every op of the policy was drawn


def test_random_resized_crop_matches_timms_pil_crop():
    """timm's box draw, then our antialiased bicubic resize vs PIL's: the same crop within ~1 level."""
    primary = create_transform(
        64,
        is_training=True,
        auto_augment=None,
        interpolation="bicubic",
        hflip=0.0,
        use_prefetcher=True,
        separate=True,
    )[0]
    crop = primary.transforms[0]
    device = da.DeviceTrainTransform(primary.transforms)
    for seed in range(6):
        image = natural(seed, 160, 120)
        random.seed(seed)
        reference = as_tensor(crop(image)).float()
        random.seed(seed)
        ours = device([as_tensor(image)])[0]
        assert ours.shape == reference.shape == (3, 64, 64)
        assert (ours - reference).abs().mean() < 1.5


def test_crop_scale_and_ratio_statistics_are_timms():
    """Boxes drawn for a decoded tensor vs for the PIL image of the CPU path (independent seeds):
    the same distributions of area share, aspect, height, width and position (two-sample KS), so
    the tensor's [3, H, W] is read the right way round; all boxes inside the image."""
    from scipy.stats import ks_2samp

    crop = create_transform(64, is_training=True, use_prefetcher=True, separate=True)[0].transforms[0]
    device = da.DeviceTrainTransform([crop])
    n, h, w = 3000, 300, 500
    random.seed(0)
    ours = np.array(device.crop_boxes([torch.zeros(3, h, w, dtype=torch.uint8)] * n), dtype=np.float64)
    random.seed(1)
    pil = Image.new("RGB", (w, h))
    cpu = np.array([crop.get_params(pil, crop.scale, crop.ratio) for _ in range(n)], dtype=np.float64)
    for boxes in (ours, cpu):
        assert (boxes[:, 0] + boxes[:, 2] <= h).all() and (boxes[:, 1] + boxes[:, 3] <= w).all()
    features = {
        "share": lambda b: b[:, 2] * b[:, 3] / (h * w),
        "log aspect": lambda b: np.log(b[:, 3] / b[:, 2]),
        "height": lambda b: b[:, 2],
        "width": lambda b: b[:, 3],
        "top": lambda b: b[:, 0],
        "left": lambda b: b[:, 1],
    }
    for name, feature in features.items():
        assert ks_2samp(feature(ours), feature(cpu)).pvalue > 1e-3, name
    share = features["share"](ours)
    assert 0.08 <= share.min() + 1e-3 and share.max() <= 1.0


def test_flip_probability():
    primary = create_transform(32, is_training=True, hflip=0.5, use_prefetcher=True, separate=True)[0]
    transform = da.DeviceTrainTransform(primary.transforms)
    transform.crop.scale = (1.0, 1.0)
    transform.crop.ratio = (1.0, 1.0)
    ramp = torch.arange(32, dtype=torch.uint8).repeat(3, 32, 1) * 8  # increasing left to right
    torch.manual_seed(0)
    out = transform([ramp] * 2000)
    flipped = (out[:, 0, 0, 0] > out[:, 0, 0, -1]).float().mean()
    assert abs(flipped - 0.5) < 0.04


def test_unsupported_transforms_are_config_errors():
    from neural_echos.errors import ConfigError

    steps = create_transform(
        64, is_training=True, auto_augment="augmix-m5-w4-d2", use_prefetcher=True, separate=True
    )
    with pytest.raises(ConfigError, match="device pipeline"):
        da.DeviceTrainTransform([*steps[0].transforms, *steps[1].transforms])


# --------------------------------------------------------------------------- the DataModule, device pipeline


def write_tree(root: Path, classes: int = 2, per_class: int = 5) -> Path:
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"n0000000{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                natural(100 * c + i, 90 + 10 * i, 80).save(folder / f"{i}.JPEG", quality=90)
    natural(999).save(root / "train" / "n00000000" / "png_named.JPEG", "PNG")  # as in ImageNet
    return root


def _batches(dm: ImageNetDataModule, training: bool):
    dm.trainer = SimpleNamespace(training=training)
    loader = dm.train_dataloader() if training else dm.val_dataloader()
    for batch in loader:
        yield dm.on_after_batch_transfer(dm.transfer_batch_to_device(batch, torch.device("cpu"), 0), 0)


def test_device_pipeline_batches(tmp_path):
    dm = ImageNetDataModule(
        str(write_tree(tmp_path / "inet")), image_size=48, batch_size=4, num_workers=0, pipeline="device"
    )
    dm.setup("fit")
    train = list(_batches(dm, True))
    val = list(_batches(dm, False))
    assert [len(y) for _, y in train] == [4, 4] and [len(y) for _, y in val] == [4, 4, 2]
    for images, labels in train + val:
        assert (
            images.shape[1:] == (3, 48, 48) and images.dtype == torch.float32 and labels.dtype == torch.int64
        )
        assert images.is_contiguous(memory_format=torch.channels_last)
        assert -2.2 < images.min() and images.max() < 2.7  # normalised with the ImageNet mean/std
    workers = ImageNetDataModule(str(tmp_path / "inet"), image_size=48, batch_size=4, num_workers=0)
    workers.setup("fit")
    # evaluation: the same Resize + CenterCrop, in torch on tensors vs PIL in the workers
    cpu_val = [b for b in _batches(workers, False)]
    for (a, _), (b, _) in zip(val, cpu_val):
        assert (a - b).abs().mean() < 0.05  # ~1 grey level after normalisation


def test_device_pipeline_bad_file_fail_and_skip(tmp_path):
    root = write_tree(tmp_path / "inet")
    bad = root / "train" / "n00000001" / "2.JPEG"
    bad.write_bytes(bad.read_bytes()[:200])  # a truncated JPEG: only the decoder can tell
    dm = ImageNetDataModule(str(root), image_size=32, batch_size=11, num_workers=0, pipeline="device")
    dm.setup("fit")
    with pytest.raises(ImageNetFormatError, match=f"cannot read image '{bad}'"):
        list(_batches(dm, True))
    dm = ImageNetDataModule(
        str(root), image_size=32, batch_size=11, num_workers=0, pipeline="device", on_bad_image="skip"
    )
    dm.setup("fit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ((images, labels),) = list(_batches(dm, True))
    assert len(labels) == 11 and torch.isfinite(images).all()
    assert any(str(bad) in str(w.message) for w in caught if issubclass(w.category, UnreadableImageWarning))


@pytest.mark.slow
def test_device_pipeline_fast_dev_run(tmp_path, monkeypatch):
    import run

    root = write_tree(tmp_path / "inet")
    monkeypatch.chdir(tmp_path)
    run.main(
        [
            "fit",
            "--trainer.fast_dev_run",
            "true",
            "--data",
            "datamodules.imagenet.ImageNetDataModule",
            "--data.root",
            str(root),
            "--data.image_size",
            "32",
            "--data.batch_size",
            "4",
            "--data.num_workers",
            "1",
            "--data.pipeline",
            "device",
            "--model.model_name",
            "convnext_atto",
            "--trainer.accelerator",
            "cpu",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger",
            "false",
        ]
    )
