"""Helpers shared by the benchmark scripts: machine description and paired timing."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
CIFAR10_MINI = REPO.parent / "shared" / "data" / "cifar10-mini"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    preload = os.environ.get("LD_PRELOAD", "")
    allocator = "mimalloc" if "mimalloc" in preload else "glibc malloc"
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {allocator}"
    )


def median(values: list[float]) -> float:
    return statistics.median(values)
