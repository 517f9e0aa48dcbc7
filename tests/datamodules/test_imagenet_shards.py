"""WebDataset shards: the conversion script, the split per rank and worker, the (seed, epoch)
order, exact mid-epoch resume, errors, and a fit through run.py, on generated JPEGs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datamodules.imagenet import encode_for_device
from datamodules.imagenet_shards import ImageNetShardsDataModule, ShardLoader, ShardStream
from neural_echos.errors import NeuralEchosError

pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)
REPO = Path(__file__).resolve().parents[2]
CLASSES, TRAIN, VAL = 3, 16, 4  # 48 training images in 6 shards of 8


def write_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, count in (("train", TRAIN), ("val", VAL)):
        for c in range(CLASSES):
            folder = root / split / f"n0000000{c}"
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).resize((40 + i, 36), Image.Resampling.BILINEAR).save(
                    folder / f"{c}_{i}.JPEG", quality=80
                )
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    from scripts.make_shards import main

    base = tmp_path_factory.mktemp("shards")
    assert main([str(write_tree(base / "tree")), str(base / "out"), "--shard-size", "8"]) == 0
    return base / "out"


def test_script_writes_shards_and_timm_style_info(shards):
    info = json.loads((shards / "_info.json").read_text())
    assert info["classes"] == ["n00000000", "n00000001", "n00000002"]
    train = info["splits"]["train"]
    assert (
        train["num_samples"] == 48
        and train["shard_lengths"] == [8] * 6
        and len(info["splits"]["val"]["filenames"]) == 2
    )
    assert all((shards / name).is_file() for name in train["filenames"])


def test_timms_wds_reader_reads_our_shards(shards):
    pytest.importorskip("webdataset")
    from timm.data import create_dataset

    dataset = create_dataset("wds/ours", root=str(shards), split="val", is_training=False, batch_size=1)
    samples = list(dataset)
    assert len(samples) == CLASSES * VAL and {int(t) for _, t in samples} == {0, 1, 2}


def _stream(
    shards: Path, split="train", batch_size=4, world=1, rank=0, workers=1, seed=0, buffer=5
) -> ShardStream:
    info = json.loads((shards / "_info.json").read_text())["splits"][split]
    stream = ShardStream(
        [str(shards / n) for n in info["filenames"]],
        info["shard_lengths"],
        encode_for_device,
        _names_only,
        batch_size,
        split == "train",
        seed=seed,
        shuffle_buffer=buffer,
        device_items=True,
    )
    stream.world, stream.rank, stream.num_workers = world, rank, workers
    return stream


def _names_only(batch):
    return [name for _, _, name in batch]


def _epoch(stream: ShardStream, epoch: int, skip: int = 0) -> list[list[str]]:
    """The rank's batches as a DataLoader with W workers hands them over (worker w: batches w, w + W, ...)."""
    stream.epoch, stream.skip_batches = epoch, skip
    per_worker = []
    for w in range(stream.num_workers):
        per_worker.append(list(_worker_iter(stream, w)))
    out = []
    for i in range(max(map(len, per_worker))):
        out.extend(batches[i] for batches in per_worker if i < len(batches))
    return out


def _worker_iter(stream: ShardStream, worker: int):
    import datamodules.imagenet_shards as mod

    original = mod.get_worker_info
    mod.get_worker_info = lambda: type("Info", (), {"id": worker, "num_workers": stream.num_workers})()
    try:
        yield from stream
    finally:
        mod.get_worker_info = original


def test_split_per_rank_and_worker_is_disjoint_and_even(shards):
    seen, counts = [], []
    for rank in (0, 1):
        stream = _stream(shards, world=2, rank=rank, workers=3)  # 6 global workers, 6 shards: one each
        batches = _epoch(stream, epoch=0)
        counts.append(len(batches))
        assert len(batches) == len(stream) == 3 * (48 // (6 * 4))
        seen += [name for batch in batches for name in batch]
    assert counts[0] == counts[1]
    assert len(seen) == len(set(seen)) == 48  # every sample once, none twice


def test_order_depends_only_on_seed_and_epoch(shards):
    a = _epoch(_stream(shards, workers=2), epoch=1)
    b = _epoch(_stream(shards, workers=2), epoch=1)
    c = _epoch(_stream(shards, workers=2), epoch=2)
    d = _epoch(_stream(shards, workers=2, seed=5), epoch=1)
    assert a == b and a != c and a != d
    assert sorted(itertools.chain.from_iterable(a)) == sorted(
        itertools.chain.from_iterable(c)
    )  # a permutation of the same samples


def test_uneven_shards_are_cycled_to_the_common_quota(shards):
    stream = _stream(shards, world=1, workers=4, batch_size=3)  # 6 shards over 4 workers: 2, 2, 1, 1
    batches = _epoch(stream, epoch=0)
    assert len(batches) == len(stream) == 4 * (48 // 12) and all(len(b) == 3 for b in batches)


@pytest.mark.parametrize("skip", [1, 4, 5])
def test_resume_mid_epoch_repeats_and_skips_nothing(shards, skip):
    full = _epoch(_stream(shards, workers=2), epoch=3)
    resumed = _epoch(_stream(shards, workers=2), epoch=3, skip=skip)
    assert resumed == full[skip:]


def test_shard_loader_state_and_worker_processes(shards):
    stream = _stream(shards, workers=2)
    epoch, done = [3], [2]
    loader = ShardLoader(stream, lambda: epoch[0], lambda: done[0], num_workers=2)
    full = list(loader)
    assert full == _epoch(_stream(shards, workers=2), epoch=3)  # real worker processes, same batches
    state = loader.state_dict()
    assert state == {"epoch": 3, "batches": 2, "layout": [1, 2, 4]}
    fresh = ShardLoader(_stream(shards, workers=2), lambda: epoch[0], lambda: 0, num_workers=2)
    fresh.load_state_dict(state)
    assert list(fresh) == full[2:]
    assert list(fresh) == full  # the resume position applies to the interrupted epoch's pass only


def test_validation_sees_every_sample_once(shards):
    names = []
    for rank in (0, 1):
        stream = _stream(shards, split="val", world=2, rank=rank, batch_size=5)
        batches = _epoch(stream, epoch=0)
        assert len(batches) == len(stream)
        names += itertools.chain.from_iterable(batches)
    assert len(names) == len(set(names)) == CLASSES * VAL


def test_datamodule_batches_both_pipelines(shards):
    for pipeline in ("workers", "device"):
        dm = ImageNetShardsDataModule(
            str(shards), image_size=32, batch_size=4, num_workers=0, pipeline=pipeline
        )
        assert dm.num_classes == 3
        dm.setup("fit")
        batch = next(iter(dm.train_dataloader()))
        images, labels = dm.on_after_batch_transfer(
            dm.transfer_batch_to_device(batch, torch.device("cpu"), 0), 0
        )
        assert images.shape == (4, 3, 32, 32) and images.dtype == torch.float32 and labels.shape == (4,)


def test_errors(tmp_path, shards):
    from scripts.make_shards import main

    with pytest.raises(NeuralEchosError, match="no _info.json"):
        _ = ImageNetShardsDataModule(str(tmp_path)).num_classes
    with pytest.raises(NeuralEchosError, match="fixed when the shards are written"):
        ImageNetShardsDataModule(str(shards), classes=["n00000000"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "_info.json").write_text((shards / "_info.json").read_text())
    with pytest.raises(NeuralEchosError, match="missing under"):
        _ = ImageNetShardsDataModule(str(broken)).num_classes
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "o")]) == 2
    assert main([str(shards), str(shards)]) == 2  # not an ImageFolder tree


@pytest.mark.slow
def test_fit_from_shards_through_run_py(shards, tmp_path, monkeypatch):
    import run

    monkeypatch.chdir(tmp_path)
    run.main(
        [
            "fit",
            "--config",
            str(REPO / "configs/data/imagenet_shards.yaml"),
            "--data.root",
            str(shards),
            "--data.image_size",
            "32",
            "--data.batch_size",
            "4",
            "--data.num_workers",
            "2",
            "--model.model_name",
            "convnext_atto",
            "--trainer.accelerator",
            "cpu",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger",
            "false",
        ]
    )


def _damaged_copy(shards: Path, tmp_path: Path, damage) -> Path:
    """The shards copied, with ``damage(path)`` applied to every training shard."""
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(shards, copy)
    for name in json.loads((copy / "_info.json").read_text())["splits"]["train"]["filenames"]:
        damage(copy / name)
    return copy


@pytest.mark.parametrize("damage", ["zero-byte", "truncated", "garbage"])
def test_an_unreadable_shard_is_one_error_naming_it(shards, tmp_path, damage):
    def apply(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes({"zero-byte": b"", "truncated": data[:1000], "garbage": b"\x00junk" * 300}[damage])

    stream = _stream(_damaged_copy(shards, tmp_path, apply))
    with pytest.raises(
        NeuralEchosError, match=r"cannot read shard '.*\.tar' \(.*\): it is truncated, empty or not a tar"
    ):
        _epoch(stream, epoch=0)


def test_shards_without_samples_are_an_error_after_one_pass_not_a_spin(shards, tmp_path):
    """Empty tars (a valid tar with no member) made worker_stream loop forever at full CPU."""
    import tarfile

    def empty(path: Path) -> None:
        with tarfile.open(path, "w"):
            pass

    stream = _stream(_damaged_copy(shards, tmp_path, empty))
    with pytest.raises(NeuralEchosError, match=r"hold no samples, though _info.json counts \d+"):
        _epoch(stream, epoch=0)


@pytest.mark.slow
def test_a_process_reading_shards_ends_on_sigterm(shards):
    """SIGTERM is honoured while shards are being read (an empty shard set once made the reader
    spin at full CPU, ignoring SIGTERM for 17 minutes): a process reading epoch after epoch ends
    with SIGTERM's status within seconds of the signal."""
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import sys; from pathlib import Path\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from tests.datamodules.test_imagenet_shards import _epoch, _stream\n"
        f"stream = _stream(Path({str(shards)!r}))\n"
        "_epoch(stream, 0); print('ready', flush=True)\n"
        "epoch = 1\n"
        "while True:\n"
        "    _epoch(stream, epoch); epoch += 1\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(0.5)  # reading
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
        assert proc.returncode == -signal.SIGTERM and time.monotonic() - sent < 20
    finally:
        proc.kill()
