"""ImageNetDataModule on a small generated JPEG tree (4 classes x 6 train / 2 val images)."""

from __future__ import annotations

import random
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import timm.data
import torch
import yaml
from PIL import Image

from datamodules.imagenet import (
    ImageFolderSamples,
    ImageNetDataModule,
    ImageNetFormatError,
    UnreadableImageWarning,
    _posterize_zero_bits,
    decode_pil,
    erase_boxes,
    normalize_uint8,
    random_erasing,
    read_class_list,
    sample_erasing_boxes,
    scan_classes,
)
from neural_echos.errors import ConfigError, NeuralEchosError

# torchvision 0.29 deprecates its image decoders (TorchCodec replaces them); the device pipeline uses them
pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)

REPO = Path(__file__).resolve().parents[2]
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
SIZES = [(300, 200), (180, 240), (256, 256), (320, 180), (200, 300), (240, 240)]


def write_jpeg(path: Path, size: tuple[int, int], seed: int, mode: str = "RGB", fmt: str = "JPEG") -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.integers(0, 256, (max(2, h // 20), max(2, w // 20), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return path


def write_tree(root: Path, wnids=WNIDS, train: int = 6, val: int = 2) -> Path:
    for split, count in (("train", train), ("val", val)):
        for c, wnid in enumerate(wnids):
            for i in range(count):
                write_jpeg(
                    root / split / wnid / f"{wnid}_{i}.JPEG",
                    SIZES[(i + c) % len(SIZES)],
                    seed=1000 * (split == "val") + 10 * c + i,
                )
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "imagenet")


def make(root, **kwargs) -> ImageNetDataModule:
    kwargs = {"image_size": 64, "batch_size": 4, "num_workers": 0, **kwargs}
    return ImageNetDataModule(str(root), **kwargs)


def files_of(dataset: ImageFolderSamples) -> list[str]:
    return [Path(p).name for p, _ in dataset.samples]


# --------------------------------------------------------------------------- batches


def test_num_classes_and_image_size_right_after_init(tree):
    dm = make(tree, image_size=96)
    assert dm.num_classes == 4 and dm.image_size == 96
    assert dm.classes == sorted(WNIDS) and dm.class_to_idx[WNIDS[2]] == 2
    assert dm.train_set is None  # files are listed in setup, not __init__


def test_train_and_val_batches(tree):
    dm = make(tree)
    dm.setup("fit")
    assert len(dm.train_set) == 24 and len(dm.val_set) == 8
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.uint8
    assert images.is_contiguous(memory_format=torch.channels_last)
    assert labels.dtype == torch.int64 and 0 <= int(labels.min()) and int(labels.max()) <= 3
    val = list(make(tree, batch_size=3).val_dataloader())
    assert [len(y) for _, y in val] == [3, 3, 2]  # every validation image, no drop_last
    assert all(x.shape[1:] == (3, 64, 64) and x.dtype == torch.uint8 for x, _ in val)
    assert sorted(torch.cat([y for _, y in val]).tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_train_loader_drops_the_last_partial_batch(tree):
    loader = make(tree, batch_size=5).train_dataloader()
    assert loader.drop_last and len(loader) == 24 // 5
    assert all(len(y) == 5 for _, y in loader)


def test_batch_is_normalised_on_the_device_and_erased_only_in_training(tree):
    dm = make(tree, re_prob=1.0)
    images, labels = next(iter(dm.val_dataloader()))
    out, out_labels = dm.on_after_batch_transfer((images, labels), 0)
    assert out.dtype == torch.float32 and out.shape == images.shape and out_labels is labels
    expected = (images.float() / 255 - torch.tensor(dm.mean).view(1, 3, 1, 1)) / torch.tensor(dm.std).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)  # no trainer attached: no erasing
    dm.trainer = SimpleNamespace(training=True)
    erased, _ = dm.on_after_batch_transfer((images, labels), 0)
    assert ((erased == 0).all(dim=1).flatten(1).sum(1) > 0).all()  # a zero (mean-colour) box in each image
    example = torch.zeros(1, 3, 64, 64)
    assert dm.on_after_batch_transfer(example, 0) is example  # the model summary's example input


@pytest.mark.parametrize("channels_last", [True, False])
def test_normalize_uint8_matches_the_formula_in_both_layouts(channels_last):
    images = torch.randint(0, 256, (3, 3, 5, 7), dtype=torch.uint8)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = normalize_uint8(images, mean, std)
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert out.is_contiguous(memory_format=torch.channels_last) == channels_last


def test_train_transform_is_timms_with_a_uint8_tail(tree):
    dm = make(tree)
    names = [type(t).__name__ for t in dm.train_transform.transforms]
    assert names == [
        "RandomResizedCropAndInterpolation",
        "RandomHorizontalFlip",
        "RandAugment",
        "PILToHWCTensor",
    ]
    assert [type(t).__name__ for t in dm.eval_transform.transforms] == [
        "Resize",
        "CenterCrop",
        "PILToHWCTensor",
    ]
    assert dm.eval_transform.transforms[0].size == int(64 / 0.875)
    no_aa = make(tree, auto_augment=None)
    assert "ColorJitter" in [
        type(t).__name__ for t in no_aa.train_transform.transforms
    ]  # jitter only without AA


def test_posterize_zero_bits_does_not_crash():
    # timm's rand-*-mstd RandAugment draws magnitude 10 (0 bits kept) now and then; Pillow 13 rejects 0 bits
    image = Image.new("RGB", (8, 8), (200, 100, 50))
    assert np.asarray(_posterize_zero_bits(image, 0)).max() == 0
    assert (
        np.asarray(_posterize_zero_bits(image, 4)).tolist()
        == np.asarray(timm.data.auto_augment.posterize(image, 4)).tolist()
    )


def test_patched_randaugment_survives_magnitude_ten(tree):
    dm = make(tree)
    ops = dm.train_transform.transforms[2].ops
    posterize = next(op for op in ops if op.name == "PosterizeIncreasing")
    assert posterize.aug_fn is _posterize_zero_bits
    posterize.prob, posterize.magnitude, posterize.magnitude_std = 1.0, 10, 0
    assert np.asarray(posterize(Image.new("RGB", (8, 8), (200, 100, 50)))).max() == 0


# --------------------------------------------------------------------------- subsets and fractions


def test_class_subset_from_list(tree):
    dm = make(tree, classes=[WNIDS[3], WNIDS[1]])
    assert dm.num_classes == 2 and dm.classes == [WNIDS[1], WNIDS[3]]  # labels follow sorted wnids
    dm.setup("fit")
    assert len(dm.train_set) == 12 and len(dm.val_set) == 4
    assert {Path(p).parent.name for p, _ in dm.train_set.samples} == {WNIDS[1], WNIDS[3]}
    assert {label for _, label in dm.train_set.samples} == {0, 1}


def test_class_subset_from_text_file(tree, tmp_path):
    listing = tmp_path / "subset.txt"
    listing.write_text(f"# two classes\n{WNIDS[0]}\n\n{WNIDS[2]}  # tench's neighbour\n")
    dm = make(tree, classes=str(listing))
    assert dm.classes == [WNIDS[0], WNIDS[2]] and dm.num_classes == 2


def test_fraction_keeps_a_seeded_share_per_class(tree):
    dm = make(tree, fraction=0.5)
    dm.setup("fit")
    counts = np.bincount([label for _, label in dm.train_set.samples])
    assert counts.tolist() == [3, 3, 3, 3] and len(dm.val_set) == 8  # val untouched by default
    tiny = make(tree, fraction=0.01, val_fraction=0.01)
    tiny.setup("fit")
    assert len(tiny.train_set) == 4 and len(tiny.val_set) == 4  # at least one image per class


def test_fraction_is_deterministic_by_seed_and_independent_of_the_subset(tree):
    def chosen(**kwargs):
        dm = make(tree, fraction=0.5, **kwargs)
        dm.setup("fit")
        return files_of(dm.train_set)

    assert chosen(fraction_seed=3) == chosen(fraction_seed=3)
    assert chosen(fraction_seed=3) != chosen(fraction_seed=4)
    subset = chosen(fraction_seed=3, classes=[WNIDS[2]])
    assert subset == [name for name in chosen(fraction_seed=3) if name.startswith(WNIDS[2])]


# --------------------------------------------------------------------------- layout errors


def test_missing_root(tmp_path):
    with pytest.raises(ImageNetFormatError, match=r"does not exist.*--data.root.*train/<wnid>"):
        _ = make(tmp_path / "nowhere").num_classes


def test_a_file_as_root(tmp_path):
    (tmp_path / "imagenet.tar").write_bytes(b"an archive, not the folder")
    with pytest.raises(ImageNetFormatError, match=r"is a file, not a folder.*--data.root.*train/<wnid>"):
        _ = make(tmp_path / "imagenet.tar").num_classes


def test_missing_split(tree):
    (tree / "val").rename(tree / "validation")
    with pytest.raises(ImageNetFormatError, match=r"no val/ folder.*validation"):
        _ = make(tree).num_classes


def test_empty_class_set(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(ImageNetFormatError, match=r"train.*has no class folders"):
        _ = make(tmp_path).num_classes


def test_flat_val_folder_gets_the_relayout_hint(tree):
    for wnid in WNIDS:
        for f in (tree / "val" / wnid).iterdir():
            f.rename(tree / "val" / f.name)
        (tree / "val" / wnid).rmdir()
    with pytest.raises(ImageNetFormatError, match=r"val.*no class folders.*loose image files.*re-lay"):
        _ = make(tree).num_classes


def test_subset_naming_unknown_wnids(tree):
    with pytest.raises(ImageNetFormatError, match=r"2 not in train/ \(n09999999, n09999998\)"):
        _ = make(tree, classes=[WNIDS[0], "n09999999", "n09999998"]).num_classes


def test_mismatched_class_sets_are_listed(tree):
    (tree / "val" / WNIDS[1]).rename(tree / "val" / "n07777777")
    with pytest.raises(
        ImageNetFormatError, match=rf"differ: 1 only in train/ \({WNIDS[1]}\); 1 only in val/ \(n07777777\)"
    ):
        _ = make(tree).num_classes
    assert make(tree, classes=[WNIDS[0], WNIDS[2]]).num_classes == 2  # a common subset still works


def test_class_folder_without_images(tree):
    for f in (tree / "train" / WNIDS[2]).iterdir():
        f.unlink()
    (tree / "train" / WNIDS[2] / "notes.txt").write_text("not an image")
    dm = make(tree)
    with pytest.raises(ImageNetFormatError, match=rf"{WNIDS[2]}.*has no images"):
        dm.setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fraction": 0.0}, r"fraction.*\(0, 1\]"),
        ({"fraction": 1.5}, r"fraction.*\(0, 1\]"),
        ({"val_fraction": -0.1}, r"val_fraction.*\(0, 1\]"),
        ({"pipeline": "gpu"}, r"unknown pipeline 'gpu'.*'workers'.*'device'"),
        ({"on_bad_image": "ignore"}, r"unknown on_bad_image 'ignore'.*fail.*skip"),
        ({"interpolation": "cubic"}, r"unknown interpolation 'cubic'"),
        ({"crop_pct": 1.2}, r"crop_pct"),
        ({"batch_size": 0}, r"batch_size"),
        ({"auto_augment": "randomly-m9"}, r"timm could not build the training transform.*auto_augment"),
        ({"classes": []}, r"classes is empty"),
        ({"classes": [WNIDS[0], WNIDS[0]]}, rf"more than once: {WNIDS[0]}"),
        ({"classes": "no/such/list.txt"}, r"neither a list of wnids nor an existing text file"),
    ],
)
def test_bad_parameters(tree, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make(tree, **kwargs)


def test_errors_are_neural_echos_errors():
    assert issubclass(ImageNetFormatError, NeuralEchosError)


def test_read_class_list_and_scan_helpers(tree, tmp_path):
    assert read_class_list(["a ", "b"]) == ["a", "b"]
    assert scan_classes(tree) == sorted(WNIDS)


# --------------------------------------------------------------------------- unreadable images


def break_two_images(root: Path) -> tuple[Path, Path]:
    truncated = root / "train" / WNIDS[1] / f"{WNIDS[1]}_2.JPEG"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    garbage = root / "train" / WNIDS[3] / f"{WNIDS[3]}_0.JPEG"
    garbage.write_bytes(random.Random(0).randbytes(3000))
    return truncated, garbage


def test_unreadable_image_fails_naming_the_file(tree):
    truncated, garbage = break_two_images(tree)
    dm = make(tree)
    dm.setup("fit")
    for bad in (truncated, garbage):
        index = [p for p, _ in dm.train_set.samples].index(str(bad))
        with pytest.raises(ImageNetFormatError, match=rf"cannot read image '{bad}'.*on_bad_image skip"):
            dm.train_set[index]


def test_skip_uses_the_next_readable_image_and_counts(tree):
    truncated, garbage = break_two_images(tree)
    dm = make(tree, on_bad_image="skip")
    dm.setup("fit")
    paths = [p for p, _ in dm.train_set.samples]
    index = paths.index(str(truncated))
    with pytest.warns(UnreadableImageWarning, match=rf"skipped unreadable image '{truncated}'"):
        image, label = dm.train_set[index]
    assert image.shape == (3, 64, 64) and label == dm.train_set.samples[index + 1][1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = list(dm.train_dataloader())
    assert sum(len(y) for _, y in batches) == 24  # every sample still delivered
    assert dm.train_set.skipped == 3  # once above, twice in the epoch (this process: num_workers=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, UnreadableImageWarning)]
    assert any(str(garbage) in m for m in messages)


def test_skip_in_worker_processes_delivers_every_sample(tree):
    break_two_images(tree)
    dm = make(tree, on_bad_image="skip", num_workers=2, persistent_workers=False)
    dm.setup("fit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert sum(len(y) for _, y in dm.train_dataloader()) == 24


def test_fail_in_a_worker_process_keeps_the_error_type_and_file(tree):
    truncated, _ = break_two_images(tree)
    dm = make(tree, num_workers=1, persistent_workers=False)
    with pytest.raises(ImageNetFormatError, match=rf"cannot read image '({truncated}|.*{WNIDS[3]}_0.JPEG)'"):
        list(dm.train_dataloader())


# --------------------------------------------------------------------------- decoding


def test_decoders_agree_and_handle_grey_cmyk_and_png(tmp_path):
    """PIL (workers pipeline) and the device pipeline's decode (torchvision, here on the CPU)."""
    from datamodules.device_augment import decode_batch
    from datamodules.imagenet import encode_for_device, read_bytes

    rgb = write_jpeg(tmp_path / "rgb.JPEG", (300, 200), seed=1)
    a = np.asarray(decode_pil(str(rgb)), np.int16)
    (b,), failed = decode_batch([encode_for_device(read_bytes(str(rgb)))], torch.device("cpu"))
    assert not failed and a.shape == tuple(b.permute(1, 2, 0).shape) == (200, 300, 3)
    assert np.abs(a - b.permute(1, 2, 0).numpy()).mean() < 1.0
    for mode, fmt in (("L", "JPEG"), ("CMYK", "JPEG"), ("RGB", "PNG")):  # ImageNet has all three
        path = write_jpeg(tmp_path / f"{mode}_{fmt}.JPEG", (64, 48), seed=2, mode=mode, fmt=fmt)
        image = decode_pil(str(path))
        assert image.mode == "RGB" and image.size == (64, 48), (mode, fmt)
        (tensor,), failed = decode_batch([encode_for_device(read_bytes(str(path)))], torch.device("cpu"))
        assert not failed and tensor.shape == (3, 48, 64), (mode, fmt)


# --------------------------------------------------------------------------- random erasing


def test_random_erasing_probability_and_box_sizes():
    torch.manual_seed(0)
    images = torch.randn(400, 3, 40, 50) + 10  # nothing is 0 before erasing
    out = random_erasing(images.clone(), probability=0.25)
    erased = (out == 0).all(dim=1)  # [N, H, W]
    share = erased.flatten(1).float().mean(1)
    hit = share > 0
    assert 0.17 < hit.float().mean() < 0.33
    assert (share[hit] >= 0.015).all() and (share[hit] <= 0.34).all()
    for mask in erased[hit][:20]:  # each erased region is one axis-aligned rectangle
        rows, cols = mask.any(1).nonzero().squeeze(1), mask.any(0).nonzero().squeeze(1)
        assert mask[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        assert int(mask.sum()) == len(rows) * len(cols)
    assert torch.equal(random_erasing(images.clone(), probability=0.0), images)


@pytest.mark.parametrize("mode", ["const", "rand", "pixel"])
def test_random_erasing_vectorised_and_sliced_paths_agree(mode):
    torch.manual_seed(1)
    images = torch.randn(16, 3, 24, 20)
    boxes = sample_erasing_boxes(16, 24, 20, probability=0.7)
    torch.manual_seed(2)
    sliced = erase_boxes(images.clone(), *boxes, mode=mode, vectorised=False)
    torch.manual_seed(2)
    masked = erase_boxes(images.clone(), *boxes, mode=mode, vectorised=True)
    assert torch.equal(sliced, masked) and not torch.equal(sliced, images)


# --------------------------------------------------------------------------- CLI and configs


@pytest.mark.slow
def test_fast_dev_run_through_run_py(tree, tmp_path, monkeypatch):
    import run
    from lightning_modules import classifier

    built = []
    original = classifier.build_timm_model
    monkeypatch.setattr(
        classifier, "build_timm_model", lambda *a, **k: built.append(a[1:4]) or original(*a, **k)
    )
    monkeypatch.chdir(tmp_path)
    (tmp_path / "subset.txt").write_text("\n".join(WNIDS[:3]))  # a class file given on the command line
    run.main(
        [
            "fit",
            "--trainer.fast_dev_run",
            "true",
            "--data",
            "datamodules.imagenet.ImageNetDataModule",
            "--data.root",
            str(tree),
            "--data.image_size",
            "64",
            "--data.batch_size",
            "4",
            "--data.num_workers",
            "0",
            "--data.classes",
            "subset.txt",
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
    assert built == [(3, 3, 64)]  # num_classes and image_size linked from the DataModule


def test_run_py_reports_a_missing_root_as_one_line(tmp_path, monkeypatch, capsys):
    import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEURAL_ECHOS_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run.main(
            [
                "fit",
                "--data",
                "datamodules.imagenet.ImageNetDataModule",
                "--data.root",
                str(tmp_path / "none"),
                "--trainer.accelerator",
                "cpu",
                "--trainer.logger",
                "false",
            ]
        )
    assert exit_info.value.code == 2
    assert "error: ImageNet root" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["imagenet.yaml", "imagenet100.yaml"])
def test_data_configs(name):
    config = yaml.safe_load((REPO / "configs" / "data" / name).read_text())["data"]
    assert config["class_path"] == "datamodules.imagenet.ImageNetDataModule"
    args = config["init_args"]
    assert args["root"] == "data/imagenet"
    if name == "imagenet100.yaml":
        synsets = (Path(timm.data.__file__).parent / "_info" / "imagenet_synsets.txt").read_text().split()
        assert len(args["classes"]) == len(set(args["classes"])) == 100 and set(args["classes"]) <= set(
            synsets
        )
        assert args["classes"][:3] == ["n02869837", "n01749939", "n02488291"]  # CMC's imagenet100.txt order


def test_data_config_builds_the_datamodule(tree):
    args = yaml.safe_load((REPO / "configs" / "data" / "imagenet.yaml").read_text())["data"]["init_args"]
    dm = ImageNetDataModule(**{**args, "root": str(tree), "num_workers": 0})
    assert dm.num_classes == 4 and dm.pipeline == "workers"


def test_a_bad_image_in_a_worker_process_is_one_line_naming_the_file_and_the_fix(tree):
    """torch re-raises a worker's error with the worker's whole traceback as its message; the
    error line is the original message (it was cut at 600 characters, before the file)."""
    from neural_echos.errors import user_error_message

    for name in sorted((tree / "train").glob("*/*.JPEG")):
        name.write_bytes(b"")  # every image empty: whichever the worker reads first fails
    dm = make(tree, num_workers=1, persistent_workers=False)
    with pytest.raises(ImageNetFormatError) as caught:
        list(dm.train_dataloader())
    assert "Original Traceback" in str(caught.value)  # the worker's traceback, as torch re-raises it
    line = user_error_message(caught.value)
    assert re.fullmatch(
        rf"cannot read image '{tree}/train/.*\.JPEG' \(.*\)\. Replace or delete the file .*"
        r"or set --data.on_bad_image skip to train on without it\.",
        line,
    ), line
