"""ImageNet training-pipeline images/s per CPU worker: our DataModule vs timm's own loader.

Generates (into a temporary folder, or --root, where it is kept and reused) a JPEG tree of
ImageNet-like files: sides 350-500 px, quality 90, smooth multi-scale colour fields with shapes
and sensor-like noise, ~100 KB each (ImageNet's train set: 138 GB / 1.28 M files, ~110 KB). Then:

1. decoding, single process, one thread: CPU ms per image (cases taking turns on chunks of 20
   files) of PIL (``Image.open`` + load/convert RGB) and
   ``torchvision.io.decode_image`` (mode RGB, what the device pipeline runs, here on the CPU),
   and PIL followed by the full timm training transform (RandomResizedCrop 224 bicubic, flip,
   RandAugment rand-m9-mstd0.5-inc1);
2. loaders, W workers each (default W = 1), over the same files with the same transforms:
   * ours: ``ImageNetDataModule.train_dataloader()`` (uint8 batches) + normalisation and
     random erasing batch-wise in the main process (``on_after_batch_transfer``; on the GPU in
     training);
   * timm: ``timm.data.create_loader(ImageDataset, is_training=True, ...)`` with
     ``use_prefetcher=True`` (uint8 batches, normalise + erase in the main process, as ours)
     and ``use_prefetcher=False`` (ToTensor + Normalize + RandomErasing per image in workers).
   Images/s are counted from the first batch of each epoch (worker start-up excluded), median
   over epochs; per worker = images/s / W. The CPU time of the workers and of the main process
   (1 torch thread) per image is read from /proc and ``time.process_time``: on a machine shared
   with other jobs, worker CPU ms per image is the steadier per-worker figure, wall-clock
   images/s the one that counts on a quiet machine. Target: ours / timm >= 1.0.

Both loaders get the same posterize fix (see ``datamodules.imagenet.patch_posterize``): without
it timm's RandAugment crashes on Pillow 13 within the first few hundred images.

    .venv/bin/python benchmarks/bench_imagenet_pipeline.py [--images 2000] [--workers 1 2] [--root DIR]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import statistics
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import PIL
import PIL.features
import timm
import timm.data
import torch
import torchvision
from _common import machine
from PIL import Image, ImageDraw

from datamodules.imagenet import (
    ImageNetDataModule,
    decode_pil,
    list_images,
    normalize_uint8,
    patch_posterize,
    random_erasing,
)

AUTO_AUGMENT = "rand-m9-mstd0.5-inc1"
RE_PROB = 0.25


# ----------------------------------------------------------------------------- data


def natural_image(rng: np.random.Generator, width: int, height: int, noise: float = 24.0) -> Image.Image:
    """Smooth multi-scale colour field + a few flat shapes (edges) + Gaussian noise: at quality 90
    this compresses like a photo (~0.5 bytes/pixel), unlike pure noise (far larger) or flat colour."""
    field = np.zeros((height, width, 3), np.float32)
    amplitude = 1.0
    for cells in (3, 6, 12, 24, 48, 96):
        small = rng.random((max(2, height * cells // max(width, height)), cells, 3), dtype=np.float32)
        layer = Image.fromarray((small * 255).astype(np.uint8)).resize(
            (width, height), Image.Resampling.BICUBIC
        )
        field += amplitude * np.asarray(layer, np.float32)
        amplitude *= 0.7
    field = (field - field.min()) / (field.max() - field.min() + 1e-6) * 255
    image = Image.fromarray(field.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(5, 15))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = (x0, y0, x0 + int(rng.integers(20, width // 2)), y0 + int(rng.integers(20, height // 2)))
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    pixels = np.asarray(image, np.float32) + rng.standard_normal((height, width, 3), dtype=np.float32) * noise
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _write_one(job: tuple[str, int]) -> int:
    path, seed = job
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(350, 501)), int(rng.integers(300, 501))
    natural_image(rng, width, height).save(path, "JPEG", quality=90)
    return Path(path).stat().st_size


def make_tree(root: Path, images: int, classes: int, processes: int) -> tuple[int, float]:
    """``root/train/<wnid>/*.JPEG`` (``images`` in all) and one val image per class; reused when present."""
    wnids = [f"n{10000000 + i:08d}" for i in range(classes)]
    jobs = []
    for split, per_class in (("train", images // classes), ("val", 1)):
        for c, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                path = folder / f"{wnid}_{i}.JPEG"
                if not path.exists():
                    jobs.append((str(path), zlib.crc32(f"{split}/{wnid}/{i}".encode())))
    if jobs:
        print(f"generating {len(jobs)} JPEGs under {root} ...", flush=True)
        with mp.get_context("fork").Pool(processes) as pool:
            pool.map(_write_one, jobs, chunksize=16)
    files = [p for wnid in wnids for p in list_images(root / "train" / wnid)]
    sizes = [Path(p).stat().st_size for p in files]
    return len(files), statistics.mean(sizes) / 1e3


# ----------------------------------------------------------------------------- timing


def decode_figures(
    files: list[str], transform, repeats: int, chunk: int = 20
) -> dict[str, tuple[float, float]]:
    """CPU ms per image (``time.process_time``, 1 thread, as in a DataLoader worker) of each case.

    The cases take turns on chunks of ``chunk`` files, in a rotating order, so that load from
    other processes drifting over the run hits them alike. Returns, per case, the median and
    the spread (max - min) over ``repeats`` passes."""
    from torchvision.io import ImageReadMode, decode_image, read_file

    cases = {
        "decode PIL": decode_pil,
        "decode torchvision (tensor)": lambda p: decode_image(read_file(p), mode=ImageReadMode.RGB),
        "PIL + train transform": lambda p: transform(decode_pil(p)),
    }
    names = list(cases)
    passes: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        spent = dict.fromkeys(names, 0.0)
        for k, first in enumerate(range(0, len(files), chunk)):
            part = files[first : first + chunk]
            for name in names[k % len(names) :] + names[: k % len(names)]:
                random.seed(r * 100003 + k)  # the same augmentations for every case
                start = time.process_time()
                for path in part:
                    cases[name](path)
                spent[name] += time.process_time() - start
        for name in names:
            passes[name].append(spent[name] / len(files) * 1e3)
    return {name: (statistics.median(v), max(v) - min(v)) for name, v in passes.items()}


def _worker_cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the given processes, from /proc (Linux)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return float("nan")
    return total / os.sysconf("SC_CLK_TCK")


def loader_rate(loader, post, epochs: int) -> dict[str, float]:
    """Median over epochs of: wall-clock images/s from each epoch's first batch (worker start-up
    and the pipeline fill excluded), and CPU ms per image over the whole epoch, split into the
    workers' (decode + transforms + collate) and the main process's (normalise + erase + queue)."""
    base = getattr(loader, "loader", loader)  # timm's PrefetchLoader wraps a DataLoader
    rates, worker_ms, main_ms = [], [], []
    for _ in range(epochs):
        pids = [w.pid for w in base._iterator._workers] if base._iterator is not None else []
        cpu_w0, cpu_m0 = _worker_cpu_seconds(pids), time.process_time()
        start, timed, total = None, 0, 0
        for images, labels in loader:
            images = post(images)
            total += len(labels)
            if start is None:
                start = time.perf_counter()
                if not pids and base._iterator is not None:  # first epoch: workers exist now
                    pids = [w.pid for w in base._iterator._workers]
                    cpu_w0 = 0.0  # they started with this epoch
                continue
            timed += len(labels)
        rates.append(timed / (time.perf_counter() - start))
        worker_ms.append((_worker_cpu_seconds(pids) - cpu_w0) / total * 1e3)
        main_ms.append((time.process_time() - cpu_m0) / total * 1e3)
    return {
        "rate": statistics.median(rates),
        "worker_ms": statistics.median(worker_ms),
        "main_ms": statistics.median(main_ms),
    }


def ours_loader(root: Path, workers: int, batch_size: int):
    dm = ImageNetDataModule(
        str(root),
        batch_size=batch_size,
        num_workers=workers,
        image_size=224,
        interpolation="bicubic",
        auto_augment=AUTO_AUGMENT,
        re_prob=RE_PROB,
        pin_memory=False,
    )
    dm.setup("fit")

    def post(images: torch.Tensor) -> torch.Tensor:  # what on_after_batch_transfer does in training
        return random_erasing(normalize_uint8(images, dm.mean, dm.std), RE_PROB)

    return dm.train_dataloader(), post, dm.train_transform


def timm_loader(root: Path, workers: int, batch_size: int, prefetcher: bool):
    dataset = timm.data.ImageDataset(str(root / "train"))
    loader = timm.data.create_loader(
        dataset,
        input_size=(3, 224, 224),
        batch_size=batch_size,
        is_training=True,
        use_prefetcher=prefetcher,
        auto_augment=AUTO_AUGMENT,
        re_prob=RE_PROB,
        re_mode="const",
        interpolation="bicubic",
        num_workers=workers,
        pin_memory=False,
        device=torch.device("cpu"),
        persistent_workers=True,
    )
    patch_posterize(dataset.transform)
    return loader, (lambda images: images), dataset.transform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="keep the generated tree here (reused when present)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[1])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all loaders, in rotating order")
    parser.add_argument("--decode-images", type=int, default=300)
    parser.add_argument("--decode-repeats", type=int, default=3)
    parser.add_argument("--no-loaders", action="store_true", help="only the single-process decoding figures")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    print(
        f"torchvision {torchvision.__version__}, timm {timm.__version__}, Pillow {PIL.__version__}, "
        f"libjpeg-turbo in Pillow: {PIL.features.check_feature('libjpeg_turbo')}"
    )
    tmp = None
    if args.root is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_imagenet_")
        args.root = Path(tmp.name)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    try:
        count, mean_kb = make_tree(args.root, args.images, args.classes, processes=min(4, mp.cpu_count()))
        print(
            f"tree: {count} train JPEGs in {args.classes} classes, mean {mean_kb:.0f} KB, under {args.root}"
        )

        files = sorted(str(p) for p in (args.root / "train").rglob("*.JPEG"))
        files = random.Random(0).sample(files, min(args.decode_images, len(files)))
        _, _, transform = ours_loader(args.root, 0, args.batch_size)
        # One torch thread in the main process too: decoding runs on one thread in a worker, and the
        # batch step that stands in for the GPU's work must not spin a second thread on the cores
        # the workers need (intra-op threads busy-wait between the small ops).
        torch.set_num_threads(1)
        figures = decode_figures(files, transform, args.decode_repeats)
        print(
            f"\ndecoding, 1 thread, {len(files)} images x {args.decode_repeats} passes "
            "(CPU ms/image: median, spread over passes; images/s of one busy core):"
        )
        for name, (ms, spread) in figures.items():
            print(f"  {name:32s} {ms:6.2f} ms  ±{spread / 2:5.2f}   ({1e3 / ms:5.0f} img/s)")

        for workers in [] if args.no_loaders else args.workers:
            makers = {
                "ours": lambda w=workers: ours_loader(args.root, w, args.batch_size),
                "timm create_loader, prefetcher": lambda w=workers: timm_loader(
                    args.root, w, args.batch_size, True
                ),
                "timm create_loader, no prefetcher": lambda w=workers: timm_loader(
                    args.root, w, args.batch_size, False
                ),
            }
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in makers}
            names = list(makers)
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate: no order bias
                    loader, post, _ = makers[name]()
                    runs[name].append(loader_rate(loader, post, args.epochs))
                    del loader
            print(
                f"\nloaders, {workers} worker(s), batch {args.batch_size}, {args.rounds} rounds x "
                f"{args.epochs} epochs, "
                "main process on 1 torch thread"
            )
            print(f"  {'':36s} {'img/s per worker':>22s} {'worker CPU':>11s} {'main CPU':>9s}")
            print(f"  {'':36s} {'median [min-max]':>22s} {'ms/img':>11s} {'ms/img':>9s}")
            summary = {}
            for name, values in runs.items():
                per = [v["rate"] / workers for v in values]
                wms = statistics.median(v["worker_ms"] for v in values)
                mms = statistics.median(v["main_ms"] for v in values)
                summary[name] = (statistics.median(per), wms)
                print(
                    f"  {name:36s} {statistics.median(per):7.1f} [{min(per):6.1f}-{max(per):6.1f}] "
                    f"{wms:11.2f} {mms:9.2f}"
                )
            ours = summary["ours"]
            timm_best = max((summary[n] for n in summary if n.startswith("timm")), key=lambda v: v[0])
            timm_cpu = min(summary[n][1] for n in summary if n.startswith("timm"))
            print(
                f"  ours / best timm: {ours[0] / timm_best[0]:.3f} in wall-clock "
                f"images/s per worker, {timm_cpu / ours[1]:.3f} in worker CPU per image (target >= 1.0)"
            )
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
