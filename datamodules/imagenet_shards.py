"""ImageNet from WebDataset tar shards, for many nodes: each rank and worker reads whole shards.

``scripts/make_shards.py`` writes ``root/{train,val}-NNNNNN.tar`` from an ImageFolder tree, and
``root/_info.json`` in timm's WebDataset info layout (``splits.<split>.filenames`` and
``shard_lengths``; plus the wnids in label order under ``classes``), so timm's own ``wds/`` reader
reads the same shards. A sample is ``<key>.jpg`` (or ``.png`` etc.: the original bytes) and
``<key>.cls`` (the label). The webdataset package reads the tars; the split, the order and the
resume position are ours (timm's reader has no resume position and PIL-decodes in the reader):

* **Per epoch**, the shard list is permuted with ``(seed, epoch)``; global worker ``g`` of ``G``
  (``G`` = world size x ``num_workers``, ``g = rank * num_workers + worker``) takes shards
  ``g, g + G, ...`` of that permutation, reads them in turn (cycling through them again if they
  hold fewer samples than its share), passes the samples through a shuffle buffer seeded with
  ``(seed, epoch, g)``, and stops after ``b`` batches, the same ``b`` for every worker and rank:
  ``b = floor(N / (G * batch_size))`` (so DDP ranks never wait for each other). An epoch thus
  trains on ``G * b * batch_size`` of the ``N`` samples: up to ``G * batch_size - 1`` are left out
  (0.6 % of ImageNet with 8 GPUs x 8 workers x 128), a different set each epoch, and a worker
  whose shards hold fewer samples than its share sees some twice; with equal shards (the script
  writes them) and a shard count divisible by ``G``, nothing repeats.
* **Order**: the same ``(seed, epoch, world size, num_workers)`` gives the same batches.
* **Resume mid-epoch** (Lightning calls the loader's ``state_dict``/``load_state_dict``; the
  checkpoint holds the epoch and the batches done in it): with the same world size, workers and
  batch size, each worker regenerates its stream and drops the batches already trained on (read,
  not decoded), so nothing is repeated or skipped. With a different world size or worker count
  the epoch's remaining batches come from the new split: counts stay right, but samples of the
  interrupted epoch may repeat or be missed (a warning says so).
* **Validation** (and test/predict): every sample exactly once per rank group: the shards are
  split over ranks and workers without a quota, so ranks may get unequal batch counts; run
  validation on one device, or accept Lightning's DDP evaluation on uneven batches.
"""

from __future__ import annotations

import json
import math
import random
import tarfile
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from callbacks.rng_state import run_seed
from datamodules.imagenet import (
    _DECODE_ERRORS,
    ImageNetDataModule,
    ImageNetFormatError,
    bad_image_error,
    collate_encoded,
    collate_uint8,
    decode_pil,
    encode_for_device,
    warn_skipped,
)
from neural_echos.errors import ConfigError, one_line

INFO_FILE = "_info.json"
IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
DOCS = "docs/imagenet.md"


def read_info(root: Path) -> dict:
    path = root / INFO_FILE
    if not path.is_file():
        raise ImageNetFormatError(
            f"no {INFO_FILE} in shard folder {str(root)!r}: write the shards with scripts/make_shards.py "
            f"(see {DOCS}), or point --data.root at the folder holding them."
        )
    try:
        info = json.loads(path.read_text())
        for split in ("train", "val"):
            entry = info["splits"][split]
            if len(entry["filenames"]) != len(entry["shard_lengths"]) or not entry["filenames"]:
                raise ValueError(
                    f"split {split!r}: filenames and shard_lengths differ in length or are empty"
                )
        if not info.get("classes"):
            raise ValueError("no 'classes' list")
    except (ValueError, KeyError, TypeError) as err:
        raise ImageNetFormatError(
            f"{str(path)!r} is not a shard index written by scripts/make_shards.py ({err})"
        ) from err
    missing = [
        name
        for split in ("train", "val")
        for name in info["splits"][split]["filenames"]
        if not (root / name).is_file()
    ]
    if missing:
        raise ImageNetFormatError(
            f"{len(missing)} shard(s) listed in {INFO_FILE} are missing under {str(root)!r}, "
            f"e.g. {missing[0]!r}: copy them, or re-run scripts/make_shards.py"
        )
    return info


def _as_is(batch):
    return batch


class ShardStream(IterableDataset):
    """Batches from tar shards, split per rank and worker (see the module docstring)."""

    def __init__(
        self,
        shards: list[str],
        lengths: list[int],
        load: Callable[[bytes], Any],
        collate: Callable,
        batch_size: int,
        train: bool,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        device_items: bool = False,
        on_bad_image: str = "fail",
    ):
        self.shards, self.lengths = shards, lengths
        self.load, self.collate = load, collate
        self.batch_size, self.train, self.seed = batch_size, train, seed
        self.shuffle_buffer = shuffle_buffer
        self.device_items = device_items
        self.on_bad_image = on_bad_image
        self.epoch = 0
        self.rank, self.world, self.num_workers = 0, 1, 1
        self.skip_batches = 0  # batches of this epoch already trained on (resume)

    # ---------------------------------------------------------------- the split

    def batches_per_worker(self) -> int:
        """Training: ``b``, equal for every worker of every rank."""
        return sum(self.lengths) // (self.world * self.num_workers * self.batch_size)

    def __len__(self) -> int:
        """Batches this rank yields per epoch (Lightning's schedule needs it)."""
        if self.train:
            return self.batches_per_worker() * self.num_workers
        return sum(math.ceil(n / self.batch_size) for n in self._eval_lengths_of_rank())

    def _eval_lengths_of_rank(self) -> list[int]:
        g_all = self.world * self.num_workers
        return [
            sum(self.lengths[s] for s in range(g, len(self.shards), g_all))
            for g in range(self.rank * self.num_workers, (self.rank + 1) * self.num_workers)
        ]

    def shard_order(self) -> list[int]:
        order = list(range(len(self.shards)))
        if self.train:
            random.Random(f"{self.seed}:{self.epoch}").shuffle(order)
        return order

    def worker_shards(self, worker: int) -> list[int]:
        g, g_all = self.rank * self.num_workers + worker, self.world * self.num_workers
        order = self.shard_order()
        mine = order[g::g_all]
        # fewer shards than global workers: share them round-robin (samples repeat; warned at setup)
        return mine or [order[g % len(order)]]

    # ---------------------------------------------------------------- reading

    def raw_samples(self, shard_index: int):
        import webdataset as wds

        samples = iter(wds.tarfile_samples([{"url": self.shards[shard_index]}]))
        while True:
            try:
                sample = next(samples)
            except StopIteration:
                return
            except (
                tarfile.TarError,
                EOFError,
                OSError,
                zlib.error,
            ) as err:  # a truncated, empty or non-tar file
                raise ImageNetFormatError(
                    f"cannot read shard {self.shards[shard_index]!r} ({type(err).__name__}: "
                    f"{one_line(str(err), 160)}): "
                    "it is truncated, empty or not a tar file. Re-copy it, or re-write the shards "
                    "with scripts/make_shards.py"
                ) from None
            key = next((k for k in IMAGE_KEYS if k in sample), None)
            if key is None or "cls" not in sample:
                raise ImageNetFormatError(
                    f"shard {self.shards[shard_index]!r}: sample {sample.get('__key__')!r} has no image "
                    f"({'/'.join(IMAGE_KEYS)}) or no .cls entry; re-write the shards with scripts/make_shards.py"
                )
            yield (
                f"{Path(self.shards[shard_index]).name}/{sample['__key__']}",
                sample[key],
                int(sample["cls"]),
            )

    def worker_stream(self, worker: int):
        """``(name, bytes, label)`` in this worker's training order for the epoch (or eval order)."""
        shards = self.worker_shards(worker)
        if not self.train:
            for s in shards:
                yield from self.raw_samples(s)
            return
        quota = self.batches_per_worker() * self.batch_size
        rng = random.Random(f"{self.seed}:{self.epoch}:{self.rank * self.num_workers + worker}")
        buffer: list = []
        produced = 0

        def take():
            index = rng.randrange(len(buffer))
            buffer[index], buffer[-1] = buffer[-1], buffer[index]
            return buffer.pop()

        while True:  # passes over this worker's shards until the quota is met
            read = 0
            for s in shards:
                for sample in self.raw_samples(s):
                    read += 1
                    buffer.append(sample)
                    if len(buffer) >= self.shuffle_buffer:
                        yield take()
                        produced += 1
                        if produced == quota:
                            return
            if read == 0:  # a whole pass without a sample: another would spin forever
                raise ImageNetFormatError(
                    f"the shards {', '.join(repr(self.shards[i]) for i in shards[:3])}"
                    f"{', ...' if len(shards) > 3 else ''} "
                    f"hold no samples, though {INFO_FILE} counts {sum(self.lengths[i] for i in shards)}: re-write the "
                    "shards with scripts/make_shards.py"
                )
            while buffer:  # end of a pass: empty the buffer before any sample comes round again
                yield take()
                produced += 1
                if produced == quota:
                    return

    def __iter__(self):
        info = get_worker_info()
        worker = 0 if info is None else info.id
        if info is not None and info.num_workers != self.num_workers:
            raise RuntimeError(
                f"ShardStream was set up for {self.num_workers} workers, runs in {info.num_workers}"
            )
        # Logical worker l makes batches l, l + W, ... of the rank's epoch, and the DataLoader takes
        # its workers' batches in turn from worker 0; after k batches done, worker p plays logical
        # (p + k) % W, so that the batches continue at k in the same order.
        k, w_all = self.skip_batches, self.num_workers
        logical = (worker + k) % w_all
        skip = max(0, (k - logical + w_all - 1) // w_all)
        batch: list = []
        done = 0
        pending = 0  # unreadable samples to replace by the next readable one (batch counts stay exact)
        for name, data, label in self.worker_stream(logical):
            if done < skip:  # resume: drop what was trained on, without decoding it
                batch.append(None)
                if len(batch) == self.batch_size:
                    batch, done = [], done + 1
                continue
            try:
                item = self.load(data)
            except _DECODE_ERRORS as err:
                if self.on_bad_image == "fail":
                    raise bad_image_error(name, err) from err
                warn_skipped(name, err)
                pending += 1
                continue
            for _ in range(pending + 1):
                batch.append((item, label, name) if self.device_items else (item, label))
                if len(batch) == self.batch_size:
                    yield self.collate(batch)
                    batch, done = [], done + 1
            pending = 0
        if batch and not self.train:
            yield self.collate(batch)


class ShardLoader(DataLoader):
    """A DataLoader over a :class:`ShardStream` that Lightning checkpoints (``state_dict``) and
    that tells the stream the epoch (from the trainer) before each pass."""

    def __init__(
        self, stream: ShardStream, epoch_of: Callable[[], int], batches_done: Callable[[], int], **kwargs
    ):
        super().__init__(stream, batch_size=None, collate_fn=_as_is, **kwargs)
        self.epoch_of, self.batches_done = epoch_of, batches_done
        self.resume: dict | None = None

    def __iter__(self):
        stream: ShardStream = self.dataset
        stream.epoch = self.epoch_of()
        stream.skip_batches = 0
        if self.resume is not None and self.resume["epoch"] == stream.epoch:
            layout = (stream.world, stream.num_workers, stream.batch_size)
            if tuple(self.resume["layout"]) != layout:
                rank_zero_warn(
                    f"resuming the shard stream with (world size, workers, batch size) = {layout} instead of "
                    f"{tuple(self.resume['layout'])}: the rest of the epoch comes from the new split, and some of "
                    "its samples may repeat or be missed"
                )
            stream.skip_batches = min(self.resume["batches"], len(stream))
        self.resume = None
        return super().__iter__()

    def state_dict(self) -> dict:
        stream: ShardStream = self.dataset
        return {
            "epoch": stream.epoch,
            "batches": int(self.batches_done()),
            "layout": [stream.world, stream.num_workers, stream.batch_size],
        }

    def load_state_dict(self, state: dict) -> None:
        self.resume = dict(state)


class ImageNetShardsDataModule(ImageNetDataModule):
    """:class:`~datamodules.imagenet.ImageNetDataModule` reading WebDataset shards.

    Every option of the folder DataModule applies (transforms, both pipelines, ``classes`` is
    fixed by the shards). Extra:

    Args:
        root: folder holding the shards and ``_info.json`` (``scripts/make_shards.py``).
        shuffle_buffer: samples each training worker holds to shuffle within its shards (memory:
            about ``shuffle_buffer x 110 KB`` per worker for ImageNet JPEGs).
    """

    def __init__(self, root: str = "data/imagenet-shards", shuffle_buffer: int = 1000, **kwargs):
        if (
            kwargs.get("classes") is not None
            or kwargs.get("fraction", 1.0) != 1.0
            or kwargs.get("val_fraction", 1.0) != 1.0
        ):
            raise ConfigError(
                "classes, fraction and val_fraction are fixed when the shards are written: "
                "pass them to scripts/make_shards.py instead"
            )
        if shuffle_buffer < 1:
            raise ConfigError(f"shuffle_buffer must be at least 1, got {shuffle_buffer}")
        super().__init__(root, **kwargs)
        self.shuffle_buffer = shuffle_buffer
        self._info: dict | None = None

    @property
    def info(self) -> dict:
        if self._info is None:
            self._info = read_info(self.root)
        return self._info

    @property
    def classes(self) -> list[str]:
        return list(self.info["classes"])

    def setup(self, stage: str | None = None) -> None:
        self.info  # noqa: B018 (fail early on a bad folder)

    def _stream(self, split: str, train: bool) -> ShardStream:
        entry = self.info["splits"][split]
        device = self.pipeline == "device"
        transform = self.train_transform if train else self.eval_transform
        load = encode_for_device if device else _PILLoad(transform)
        stream = ShardStream(
            [str(self.root / name) for name in entry["filenames"]],
            list(entry["shard_lengths"]),
            load,
            collate_encoded if device else collate_uint8,
            self.batch_size,
            train,
            seed=run_seed(self.trainer, default=0),
            shuffle_buffer=self.shuffle_buffer,
            device_items=device,
            on_bad_image=self.on_bad_image,
        )
        trainer = self.trainer
        stream.rank = trainer.global_rank if trainer is not None else 0
        stream.world = trainer.world_size if trainer is not None else 1
        stream.num_workers = max(1, self.num_workers)
        if train and len(stream) == 0:
            raise ConfigError(
                f"{sum(stream.lengths)} training samples are too few for {stream.world} rank(s) x "
                f"{stream.num_workers} worker(s) x batch {self.batch_size}: lower num_workers or batch_size"
            )
        if len(stream.shards) < stream.world * stream.num_workers:
            warnings.warn(
                f"{split}: {len(stream.shards)} shards for {stream.world * stream.num_workers} workers in "
                "all: workers share shards and samples repeat within an epoch; write more, smaller shards",
                stacklevel=2,
            )
        return stream

    def _shard_loader(self, split: str, train: bool) -> ShardLoader:
        stream = self._stream(split, train)
        trainer = self.trainer

        def epoch_of() -> int:
            return trainer.current_epoch if trainer is not None and train else 0

        def batches_done() -> int:
            return trainer.fit_loop.epoch_loop.batch_progress.current.completed if trainer is not None else 0

        return ShardLoader(
            stream,
            epoch_of,
            batches_done,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available() and self.pipeline == "workers",
            persistent_workers=False,
        )  # workers must see each epoch's number

    def train_dataloader(self) -> DataLoader:
        return self._shard_loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._shard_loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._shard_loader("val", False)

    def predict_dataloader(self) -> DataLoader:
        return self._shard_loader("val", False)


class _PILLoad:
    """bytes -> timm's PIL transform -> uint8 tensor (picklable for worker processes)."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, data: bytes):
        return self.transform(decode_pil(data))
