"""Benchmark: DoG initialisation of all depthwise kernels of timm convnext_tiny.

Run:  .venv/bin/python benchmarks/bench_dog_init.py [--runs 50] [--loop-runs 3]

Times ``initialize_depthwise(convnext_tiny, method="dog")`` (vectorised; 18 layers, 6,624 kernels
of 7x7, including validation, random draws, scaling, writing and the summary) against two
per-kernel Python loops of the same maths that only draw and write the kernels:

- "loop (math)": every kernel pixel by pixel with the ``math`` module, then written into the
  weight with one small tensor copy per kernel;
- "loop (torch)": ``dog_kernels`` called for one kernel at a time.

Targets (from the DoG-initialisation issue): vectorised < 10 ms, and >= 100x faster than the
faster of the two loops (by medians). Timings on a shared CPU are noisy: run it a few times.
On a loaded 2-core machine, intra-op parallelism (2 threads) makes single tensor ops wait for
a descheduled worker thread; ``--threads 1`` then gives steadier numbers.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import timm

from neural_echos.depthwise import find_depthwise_convs
from neural_echos.dog import dog_kernels
from neural_echos.init import initialize_depthwise

TARGET_MS = 10.0
TARGET_SPEEDUP = 100.0


def dog_kernel_math(gamma: float, kh: int, kw: int, on: bool) -> list[list[float]]:
    """One DoG kernel with default radius r = gamma (k + 1) / 2, pixel by pixel (odd square sizes)."""
    r = gamma * (max(kh, kw) + 1) / 2
    sigma = r / (2 * gamma) * math.sqrt((1 - gamma**2) / -math.log(gamma))  # OOCS sigma
    cy, cx = (kh - 1) / 2, (kw - 1) / 2
    excite, inhibit, centre = [], [], []
    for y in range(kh):
        for x in range(kw):
            d2 = (y - cy) ** 2 + (x - cx) ** 2
            excite.append(math.exp(-d2 / (2 * gamma**2 * sigma**2)) / gamma**2)  # E(d)
            inhibit.append(math.exp(-d2 / (2 * sigma**2)))  # I(d)
            centre.append(d2 < r * r)
    sum_ce = sum(e for e, c in zip(excite, centre) if c)
    sum_ci = sum(i for i, c in zip(inhibit, centre) if c)
    sum_se = sum(e for e, c in zip(excite, centre) if not c)
    sum_si = sum(i for i, c in zip(inhibit, centre) if not c)
    det = sum_ce * sum_si - sum_ci * sum_se
    amp_c, amp_s = (sum_si + sum_ci) / det, -(sum_ce + sum_se) / det  # centre sums +1, surround -1
    sign = 1.0 if on else -1.0
    values = [sign * (amp_c * e + amp_s * i) for e, i in zip(excite, inhibit)]
    return [values[y * kw : (y + 1) * kw] for y in range(kh)]


def loop_math(model: torch.nn.Module, seed: int) -> None:
    rng = random.Random(seed)
    with torch.no_grad():
        for _, conv in find_depthwise_convs(model):
            kh, kw = conv.kernel_size
            for i in range(conv.weight.shape[0]):
                gamma = min(max(rng.random(), 1e-6), 1 - 1e-6)
                on = rng.random() < 0.5
                conv.weight[i, 0].copy_(torch.tensor(dog_kernel_math(gamma, kh, kw, on)))


def loop_torch(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, conv in find_depthwise_convs(model):
            for i in range(conv.weight.shape[0]):
                u = torch.rand(2, generator=generator, dtype=torch.float64)
                kernel = dog_kernels(
                    u[0:1].clamp(1e-6, 1 - 1e-6), tuple(conv.kernel_size), on_center=bool(u[1] < 0.5)
                )
                conv.weight[i, 0].copy_(kernel[0])


def time_runs(fn, runs: int, warmup: int) -> list[float]:
    for i in range(warmup):
        fn(i)
    times = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=50, help="timed runs of the vectorised init (>= 20)")
    parser.add_argument("--loop-runs", type=int, default=3, help="timed runs of each per-kernel loop")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: as is)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, timm {timm.__version__}, python {platform.python_version()}")
    print(
        f"threads: torch.get_num_threads() = {torch.get_num_threads()}, CPU: {cpu_model()} "
        f"({os.cpu_count()} logical CPUs), load average {os.getloadavg()[0]:.2f}"
    )
    model = timm.create_model("convnext_tiny", pretrained=False)
    layers = find_depthwise_convs(model)
    n_kernels = sum(conv.weight.shape[0] for _, conv in layers)
    print(f"convnext_tiny: {len(layers)} depthwise layers, {n_kernels} kernels of 7x7")

    # The vectorised runs are split in two blocks, before and after the loops, so that a change
    # of load on a shared machine during the run affects both sides of the ratio alike.
    runs = max(args.runs, 20)

    def vectorised(i: int) -> None:
        initialize_depthwise(model, "dog", seed=i)

    vec = time_runs(vectorised, runs // 2, warmup=5)
    loops = {}
    for name, fn in (("loop (math)", loop_math), ("loop (torch)", loop_torch)):
        loops[name] = time_runs(lambda i, fn=fn: fn(model, i), args.loop_runs, warmup=1)
    vec += time_runs(vectorised, runs - runs // 2, warmup=1)

    vec_med = statistics.median(vec)
    print(
        f"vectorised initialize_depthwise: median {vec_med:.2f} ms "
        f"(min {min(vec):.2f}, max {max(vec):.2f}, {len(vec)} runs)"
    )
    for name, times in loops.items():
        print(
            f"{name:<13} per kernel: median {statistics.median(times):.0f} ms "
            f"(min {min(times):.0f}, {len(times)} runs): {statistics.median(times) / vec_med:.0f}x the "
            f"vectorised median"
        )
    fastest = min(loops, key=lambda name: statistics.median(loops[name]))
    speedup = statistics.median(loops[fastest]) / vec_med
    print(
        f"speed-up vs the faster loop ({fastest}): {speedup:.0f}x by medians, "
        f"{min(loops[fastest]) / min(vec):.0f}x by minima; load average now {os.getloadavg()[0]:.2f}"
    )
    print(
        f"target < {TARGET_MS:.0f} ms: {'met' if vec_med < TARGET_MS else 'NOT met'} ({vec_med:.2f} ms); "
        f"target >= {TARGET_SPEEDUP:.0f}x: {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'} ({speedup:.0f}x)"
    )


if __name__ == "__main__":
    main()
