#!/usr/bin/env python
"""Write an ImageFolder tree (ImageNet layout: ``root/{train,val}/<wnid>/*.JPEG``) as WebDataset shards.

    .venv/bin/python scripts/make_shards.py /data/imagenet /data/imagenet-shards [--shard-size 1000]
        [--classes imagenet100.txt] [--fraction 0.1] [--seed 0]

Writes ``OUT/train-000000.tar, ...`` and ``OUT/val-000000.tar, ...`` (each sample: ``<key>.jpg``
or ``.png`` ..., the file's bytes as they are, and ``<key>.cls``, the label in sorted-wnid order)
and ``OUT/_info.json`` in timm's WebDataset info layout plus the wnids (``classes``). The
training images are written in a seeded random order (``--seed``), so that every shard holds
a mix of classes (the reader shuffles shards and, within a buffer, samples; it cannot undo
class-sorted shards). Shards hold ``--shard-size`` samples each, the last one of a split the
rest: 1,000 ImageNet JPEGs make ~110 MB shards (1,282 for the training set).
Read them with ``configs/data/imagenet_shards.yaml`` (``datamodules.imagenet_shards``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from datamodules.imagenet import list_images, scan_classes, select_fraction
from neural_echos.errors import NeuralEchosError

EXTENSIONS = {".jpeg": "jpg", ".jpg": "jpg", ".png": "png", ".webp": "webp"}


def write_split(out: Path, split: str, samples: list[tuple[str, int]], shard_size: int) -> dict:
    import webdataset as wds

    names, lengths = [], []
    for start in range(0, len(samples), shard_size):
        name = f"{split}-{start // shard_size:06d}.tar"
        chunk = samples[start : start + shard_size]
        with wds.TarWriter(str(out / name)) as writer:
            for index, (path, label) in enumerate(chunk, start):
                ext = EXTENSIONS.get(Path(path).suffix.lower())
                if ext is None:
                    raise NeuralEchosError(f"{path!r}: only JPEG, PNG and WebP files can go into shards")
                writer.write(
                    {
                        "__key__": f"{index:08d}_{Path(path).stem}",
                        ext: Path(path).read_bytes(),
                        "cls": str(label),
                    }
                )
        names.append(name)
        lengths.append(len(chunk))
    return {"name": split, "num_samples": len(samples), "filenames": names, "shard_lengths": lengths}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make_shards.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="ImageFolder root holding train/ and val/")
    parser.add_argument("out", type=Path, help="output folder (created)")
    parser.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    parser.add_argument("--classes", help="text file with one wnid per line (a class subset)")
    parser.add_argument(
        "--fraction", type=float, default=1.0, help="seeded share of each class's training images"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the training order and of --fraction")
    args = parser.parse_args(argv)
    try:
        if args.shard_size < 1:
            raise NeuralEchosError(f"--shard-size must be at least 1, got {args.shard_size}")
        if not 0 < args.fraction <= 1:
            raise NeuralEchosError(f"--fraction is a share in (0, 1], got {args.fraction}")
        classes = scan_classes(args.root, args.classes)
        if args.out.exists() and any(args.out.iterdir()):
            raise NeuralEchosError(f"output folder {str(args.out)!r} is not empty: choose a new one")
        args.out.mkdir(parents=True, exist_ok=True)
        info = {"name": args.root.name, "classes": classes, "splits": {}}
        for split in ("train", "val"):
            samples = []
            for label, wnid in enumerate(classes):
                files = list_images(args.root / split / wnid)
                if split == "train":
                    files = select_fraction(files, args.fraction, args.seed, f"{split}:{wnid}")
                samples.extend((path, label) for path in files)
            if split == "train":
                random.Random(args.seed).shuffle(samples)
            info["splits"][split] = write_split(args.out, split, samples, args.shard_size)
            print(f"{split}: {len(samples)} samples in {len(info['splits'][split]['filenames'])} shards")
        (args.out / "_info.json").write_text(json.dumps(info, indent=1))
    except NeuralEchosError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
