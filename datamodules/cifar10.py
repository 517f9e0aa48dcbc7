"""CIFAR-10 in memory: the official python batches read once into uint8 tensors.

Training augmentation (random crop with 4-pixel zero padding, horizontal flip) and
normalisation run batch-wise on the device after the batch arrives there
(:meth:`CIFAR10DataModule.on_after_batch_transfer`), so loading is a tensor index per batch
and never the bottleneck. Validation and test batches are only normalised.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from callbacks.rng_state import run_seed
from datamodules.batch_transforms import normalize, random_crop_flip
from neural_echos.errors import ConfigError, NeuralEchosError, one_line

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES_DIR = "cifar-10-batches-py"
# official MD5 sums of the extracted files (as published with the archive)
OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_FILE = "test_batch"
META_FILE = "batches.meta"


class CIFAR10FormatError(NeuralEchosError, RuntimeError):
    """The CIFAR-10 files are missing, in the wrong layout, truncated or corrupt."""


@dataclass
class CIFAR10Arrays:
    train_images: Tensor  # uint8 [N, 3, 32, 32]
    train_labels: Tensor  # int64 [N]
    test_images: Tensor
    test_labels: Tensor
    classes: list[str]


def find_batches_dir(root: str | Path) -> Path:
    """The folder holding the batch files: ``root/cifar-10-batches-py`` or ``root`` itself."""
    root = Path(root).expanduser()
    for candidate in (root / BATCHES_DIR, root):
        if (candidate / META_FILE).exists() or (candidate / TEST_FILE).exists():
            return candidate
    return root / BATCHES_DIR


def check_not_one_level_too_high(root: str | Path) -> None:
    """Refuse a root whose CIFAR-10 lies one folder further down (``--data.root ../shared/data``
    for ``../shared/data/cifar10-mini``), naming that folder, instead of downloading next to it.

    Raises:
        CIFAR10FormatError: ``root`` holds no CIFAR-10 files but a subfolder does.
    """
    root = Path(root).expanduser()
    if not root.is_dir() or not missing_files(root):
        return
    found = sorted(
        child
        for child in root.iterdir()
        if child.is_dir() and child.name != BATCHES_DIR and not missing_files(child)
    )
    if found:
        names = " or ".join(repr(str(child)) for child in found[:3])
        raise CIFAR10FormatError(
            f"no CIFAR-10 in {str(root)!r}, but {names} one level down holds it: pass --data.root {found[0]}"
        )


def missing_files(root: str | Path) -> list[str]:
    folder = find_batches_dir(root)
    return [name for name in (*TRAIN_FILES, TEST_FILE, META_FILE) if not (folder / name).is_file()]


def load_cifar10(root: str | Path, check_md5: bool = True) -> CIFAR10Arrays:
    """Read the official ``cifar-10-batches-py`` layout under ``root`` into uint8 tensors.

    Files whose MD5 differs from the official one (reduced or local copies) are read with
    a warning. Raises :class:`CIFAR10FormatError` naming the file and the fix when files are
    missing, truncated, corrupt or not CIFAR-10 batches.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise CIFAR10FormatError(
            f"CIFAR-10 root {str(root)!r} does not exist. Point --data.root at the folder that "
            f"holds {BATCHES_DIR}/ (the extracted {CIFAR10_URL.rsplit('/', 1)[-1]}), or set "
            "--data.download true to fetch it."
        )
    check_not_one_level_too_high(root)
    missing = missing_files(root)
    folder = find_batches_dir(root)
    if missing:
        raise CIFAR10FormatError(
            f"CIFAR-10 files missing in {str(folder)!r}: {', '.join(missing)}. Expected the official "
            f"python layout {BATCHES_DIR}/{{data_batch_1..5, test_batch, batches.meta}}: extract "
            f"{CIFAR10_URL} into {str(root)!r}, or set --data.download true."
        )
    if check_md5:
        differing = [name for name, md5 in OFFICIAL_MD5.items() if _md5(folder / name) != md5]
        if differing:
            warnings.warn(
                f"CIFAR-10 files in {str(folder)!r} differ from the official release "
                f"({', '.join(differing)}): reading them anyway (a reduced or local copy?). "
                "Accuracy figures on them are not comparable with full CIFAR-10 results.",
                stacklevel=2,
            )
    meta = _unpickle(folder / META_FILE)
    classes = meta.get("label_names") if isinstance(meta, dict) else None
    if not isinstance(classes, list) or len(classes) != 10:
        raise CIFAR10FormatError(
            f"{str(folder / META_FILE)!r} has no list of 10 'label_names': not a CIFAR-10 meta file. Replace it "
            "with the file from the official archive."
        )
    train = [_read_batch(folder / name) for name in TRAIN_FILES]
    test_images, test_labels = _read_batch(folder / TEST_FILE)
    return CIFAR10Arrays(
        train_images=torch.cat([images for images, _ in train]),
        train_labels=torch.cat([labels for _, labels in train]),
        test_images=test_images,
        test_labels=test_labels,
        classes=[str(c) for c in classes],
    )


def download_cifar10(root: str | Path) -> None:
    """Fetch and check the official archive into ``root``; a clear error when offline."""
    from torchvision.datasets.utils import download_and_extract_archive

    try:
        download_and_extract_archive(CIFAR10_URL, download_root=str(root), md5=CIFAR10_ARCHIVE_MD5)
    except Exception as err:  # any network or checksum failure: say where the files go instead
        raise CIFAR10FormatError(
            f"could not download CIFAR-10 from {CIFAR10_URL} ({type(err).__name__}: {err}). "
            f"Without network, copy the extracted {BATCHES_DIR}/ folder into {str(Path(root))!r} "
            "(or point --data.root at a folder that holds it) and run again."
        ) from err


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# The only globals the official batches (pickled by Python 2 with NumPy) and re-pickles of them
# by NumPy 2 refer to: the ndarray rebuild path, and (Python 3 at protocol 2) the latin-1
# encoding of bytes and bytes() for b"" (both restricted to exactly that use). Everything else
# (dicts, lists, strings, numbers) is built by pickle opcodes that run no code.
CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class UnsafePickleError(CIFAR10FormatError):
    """A batch file refers to a Python object that a CIFAR-10 batch never holds."""


class _CIFARUnpickler(pickle.Unpickler):
    """Pickle's documented way to restrict what a file may build: ``find_class`` is the only
    door to code, and it opens only for :data:`CIFAR_PICKLE_GLOBALS`. torchvision's CIFAR10
    uses plain ``pickle.load``; data folders are shared, so a batch file must not run code."""

    def find_class(self, module: str, name: str):
        if (module, name) in CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) in (("__builtin__", "bytes"), ("builtins", "bytes")):
            return _empty_bytes
        raise UnsafePickleError(f"refers to {module}.{name}, which a CIFAR-10 batch never holds")


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it for bytes, and for nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"calls _codecs.encode with {encoding!r}, which a CIFAR-10 batch never does")
    return text.encode("latin1")


def _empty_bytes(*args) -> bytes:
    """``bytes()`` as pickle protocol 2 uses it for ``b""``, and for nothing else (``bytes(n)``
    would allocate n bytes)."""
    if args:
        raise UnsafePickleError("calls bytes() with arguments, which a CIFAR-10 batch never does")
    return b""


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _CIFARUnpickler(f, encoding="latin1").load()
    except UnsafePickleError as err:
        raise UnsafePickleError(
            f"refusing to load {str(path)!r}: it {err}, so it could run code. Replace it with the file from the "
            f"official archive ({CIFAR10_URL})."
        ) from None
    except Exception as err:  # truncated pickles raise EOFError, garbage raises UnpicklingError, ...
        raise CIFAR10FormatError(
            f"cannot read {str(path)!r} ({type(err).__name__}: {err}): the file is truncated or corrupt. "
            "Replace it with the file from the official archive."
        ) from err


def _read_batch(path: Path) -> tuple[Tensor, Tensor]:
    batch = _unpickle(path)
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise CIFAR10FormatError(f"{str(path)!r} is not a CIFAR-10 batch (no 'data' and 'labels' entries)")
    try:
        data, labels = np.asarray(batch["data"]), np.asarray(batch["labels"])
    except (ValueError, TypeError) as err:  # a ragged list
        raise CIFAR10FormatError(
            f"{str(path)!r} is not a CIFAR-10 batch ('data' or 'labels' is not an array: {one_line(str(err), 120)}); "
            "replace it with the file from the official archive"
        ) from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise CIFAR10FormatError(
            f"{str(path)!r}: 'data' should be an N x 3072 uint8 array, got {data.shape} {data.dtype}"
        )
    integers = labels.dtype.kind in "iu" or labels.size == 0  # not strings, objects, floats (NaN), booleans
    if (
        labels.shape != (data.shape[0],)
        or not integers
        or labels.min(initial=0) < 0
        or labels.max(initial=0) > 9
    ):
        raise CIFAR10FormatError(
            f"{str(path)!r}: 'labels' should be {data.shape[0]} integers in 0..9, got {labels.shape} {labels.dtype}; "
            "replace the file with the one from the official archive"
        )
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


class InMemoryImages(Dataset):
    """uint8 images and labels held in tensors; a whole batch is fetched with one index."""

    def __init__(self, images: Tensor, labels: Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.images[index], self.labels[index]

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        # the DataLoader's batched fetch: one gather instead of per-image collation
        index = torch.as_tensor(indices)
        return self.images[index], self.labels[index]


def _batch_as_is(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    return batch


class EpochShuffle(Sampler[int]):
    """A new random order every epoch, drawn from ``(seed, epoch)`` alone.

    torch's ``RandomSampler`` draws its order from the global RNG when the epoch's iterator
    starts, and Lightning creates that iterator at a different moment in a resumed run, so a
    resumed run would see another order. Lightning calls :meth:`set_epoch` before each epoch
    (as for ``DistributedSampler``, which replaces this one under DDP).
    """

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())


class CIFAR10DataModule(pl.LightningDataModule):
    """CIFAR-10 from the official python batches, held in memory.

    Args:
        root: folder holding ``cifar-10-batches-py/`` (or that folder itself).
        download: fetch the official archive into ``root`` when files are missing.
        batch_size: images per batch per device (under DDP the global batch is
            ``batch_size * devices * num_nodes``).
        val_split: fraction of the training images held out for validation with a seeded
            split; 0 validates on the test batch (then val and test metrics coincide).
        split_seed: seed of that split (independent of the training seed).
        padding: zero padding of the random crop; 0 turns the crop off.
        flip: random horizontal flip.
        num_workers: DataLoader workers (0 is fastest: a batch is one tensor index).
    """

    num_classes = 10
    image_size = 32
    mean = CIFAR10_MEAN
    std = CIFAR10_STD

    def __init__(
        self,
        root: str = "data/cifar10",
        download: bool = False,
        batch_size: int = 128,
        val_split: float = 0.0,
        split_seed: int = 0,
        padding: int = 4,
        flip: bool = True,
        num_workers: int = 0,
    ):
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if not 0.0 <= val_split < 1.0:
            raise ConfigError(f"val_split is a fraction of the training set in [0, 1), got {val_split}")
        if padding < 0 or num_workers < 0:
            raise ConfigError(f"padding and num_workers must be >= 0, got {padding} and {num_workers}")
        if Path(root).expanduser().exists() and not Path(root).expanduser().is_dir():
            raise ConfigError(
                f"data.root {str(root)!r} is a file, not a folder: point --data.root at the folder that holds "
                f"{BATCHES_DIR}/ (or at that folder itself)"
            )
        self.save_hyperparameters()
        self.root = root
        self.download = download
        self.batch_size = batch_size
        self.val_split = val_split
        self.split_seed = split_seed
        self.padding = padding
        self.flip = flip
        self.num_workers = num_workers
        self.classes: list[str] = []
        self.train_set = self.val_set = self.test_set = None

    def prepare_data(self) -> None:
        check_not_one_level_too_high(self.root)  # before any download next to it
        if self.download and missing_files(self.root):
            download_cifar10(self.root)

    def setup(self, stage: str | None = None) -> None:
        if self.test_set is not None:
            return
        arrays = load_cifar10(self.root)
        self.classes = arrays.classes
        train_images, train_labels = arrays.train_images, arrays.train_labels
        self.test_set = InMemoryImages(arrays.test_images, arrays.test_labels)
        if self.val_split > 0:
            order = torch.randperm(
                len(train_labels), generator=torch.Generator().manual_seed(self.split_seed)
            )
            n_val = max(1, round(self.val_split * len(train_labels)))
            val_index, train_index = order[:n_val], order[n_val:]
            self.val_set = InMemoryImages(train_images[val_index], train_labels[val_index])
            train_images, train_labels = train_images[train_index], train_labels[train_index]
        else:
            self.val_set = self.test_set
        if len(train_labels) == 0 and stage in (None, "fit"):
            held_out = (
                f" after holding out val_split={self.val_split} for validation" if self.val_split > 0 else ""
            )
            raise CIFAR10FormatError(
                f"the CIFAR-10 training set in {str(find_batches_dir(self.root))!r} is empty{held_out}: "
                f"{len(arrays.train_labels)} images in data_batch_1..5. Point --data.root at the full batches"
                + (" or lower --data.val_split" if self.val_split > 0 else "")
            )
        if len(arrays.test_labels) == 0:
            raise CIFAR10FormatError(
                f"{str(find_batches_dir(self.root) / TEST_FILE)!r} holds no images: validation (val_split 0) and "
                "test would run on nothing. Replace it with the file from the official archive"
            )
        self.train_set = InMemoryImages(train_images, train_labels)

    def _loader(self, dataset: InMemoryImages, train: bool) -> DataLoader:
        seed = run_seed(self.trainer, default=0)  # the run's seed_everything seed
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(dataset), seed) if train else None,
            # the iterator's worker seed comes from here, not from the global RNG
            generator=torch.Generator().manual_seed(seed),
            drop_last=train and len(dataset) > self.batch_size,  # even batches for Mixup
            num_workers=self.num_workers,
            collate_fn=_batch_as_is,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def on_after_batch_transfer(
        self, batch: tuple[Tensor, Tensor], dataloader_idx: int
    ) -> tuple[Tensor, Tensor]:
        if isinstance(batch, Tensor):  # the model summary's example input, already float
            return batch
        images, labels = batch
        if self.trainer is not None and self.trainer.training:
            images = random_crop_flip(images, self.padding, self.flip)
        return normalize(images, self.mean, self.std), labels
