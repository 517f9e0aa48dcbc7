"""The memory and time budget of a kernel analysis, checked from the declared shapes before any
kernel data is read or copied.

The cost of ``analyze`` is not proportional to the bytes of a file: a few large kernels or
many tiny layers cost far more than their data. The cost model (:func:`analysis_bytes`),
measured on the 2-core CI machine with ``ru_maxrss``:

- per kernel size ``kh x kw`` (``P = kh * kw`` pixels), the sizes classified one after another:
  the classifier's threshold calibration classifies :data:`CALIBRATION_KERNELS` noise kernels, and
  the kernels of that size are classified twice (observed and null model), so
  ``rows = max(n_kernels, CALIBRATION_KERNELS)`` rows of ``P`` pixels go through the template
  correlations ``[rows, n_templates]``, the best-template gathers and k-means: about
  :data:`BYTES_PER_ROW_PIXEL` bytes per row and pixel (31x31: 533 MB measured, 51x51: 1,417 MB;
  28 bytes per row and pixel) plus :data:`BYTES_PER_ROW_TEMPLATE` per row and template
  (``n_templates`` counted by :func:`neural_echos.templates.bank_size` without building the bank).
  Re-measured with the taxonomy's bank (one shift template per pixel: 1,096 templates at 31x31,
  2,736 at 51x51; 2026-12-04, peak RSS less the ~0.7 GB of a 7x7 run): 16 kernels of 31x31 about
  0.45 GB (estimate 0.9 GiB), 51x51 about 1.5 GB (estimate 2.4 GiB), 30,000 kernels of 31x31
  about 1.0 GB (estimate 1.7 GiB): the model is an upper bound;
- every kernel held in float32 three times (the layer copy, the size's stack, its null kernels);
- per layer (results, CSV row buffers, grid images): :data:`BYTES_PER_LAYER` (2,000 layers of
  two 3x3 kernels: 470 MB and 20 s measured; about 10 ms per layer).

Bounds (each with an ``analyze`` option to raise it for a genuine file):

- :data:`MAX_KERNEL_SIDE` = 31 (``--max-kernel-side``): timm's largest depthwise kernels are 7x7;
  RepLKNet's, the largest published, are 31x31. Larger kernels are refused, with their count.
- :data:`MAX_LAYERS` = 1,000 depthwise layers (``--max-layers``), so at most that many per-layer
  CSV files (and grids) are written; the deepest timm models have under 100.
- :data:`DEFAULT_MAX_MEMORY` = 4 GiB of analysis memory (``--max-memory``) by the cost model,
  beyond the ~0.6 GB the libraries (torch, scikit-learn, matplotlib) take themselves.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from neural_echos.collect import AnalysisError

MAX_KERNEL_SIDE = 31
MAX_LAYERS = 1_000
DEFAULT_MAX_MEMORY = 4 * 2**30
CALIBRATION_KERNELS = 20_000  # neural_echos.classifiers.base.CALIBRATION_KERNELS (checked in the tests)
BYTES_PER_ROW_PIXEL = 32
BYTES_PER_ROW_TEMPLATE = 16
RESIDENT_COPIES = 3
BYTES_PER_LAYER = 256 * 2**10


class BudgetError(AnalysisError):
    """An analysis beyond a bound of the budget (the message names the bound and its option)."""


@lru_cache(maxsize=256)
def n_templates(kh: int, kw: int) -> int:
    """Templates of every family for ``kh x kw`` kernels (the largest bank any classifier uses),
    counted without building the bank (one pixel-shift template per pixel: a 201x201 bank would
    take 13 GB to build)."""
    from neural_echos.templates import bank_size

    return bank_size((kh, kw))


def analysis_bytes(layers: Iterable[tuple[int, int, int]]) -> int:
    """Estimated peak memory of classifying ``(n_kernels, kh, kw)`` layers (module docstring)."""
    per_size: dict[tuple[int, int], int] = {}
    n_layers = resident = 0
    for n, kh, kw in layers:
        per_size[(kh, kw)] = per_size.get((kh, kw), 0) + n
        resident += n * kh * kw * 4 * RESIDENT_COPIES
        n_layers += 1
    size_peak = max(
        (
            max(n, CALIBRATION_KERNELS)
            * (kh * kw * BYTES_PER_ROW_PIXEL + n_templates(kh, kw) * BYTES_PER_ROW_TEMPLATE)
            for (kh, kw), n in per_size.items()
        ),
        default=0,
    )
    return resident + size_peak + n_layers * BYTES_PER_LAYER


def check_budget(
    layers: list[tuple[str, int, int, int]],
    source: str,
    max_memory: int = DEFAULT_MAX_MEMORY,
    max_layers: int = MAX_LAYERS,
    max_kernel_side: int = MAX_KERNEL_SIDE,
) -> None:
    """Refuse ``(name, n_kernels, kh, kw)`` layers beyond a bound, before their data is touched.

    Raises:
        BudgetError: kernels larger than ``max_kernel_side``, more than ``max_layers`` layers, or
            an estimated peak memory (:func:`analysis_bytes`) beyond ``max_memory``.
    """
    large = [(name, kh, kw) for name, _, kh, kw in layers if max(kh, kw) > max_kernel_side]
    if large:
        shown = ", ".join(f"{name} ({kh}x{kw})" for name, kh, kw in large[:3])
        raise BudgetError(
            f"{len(large)} of the {len(layers)} depthwise layers of {source} have kernels larger than "
            f"{max_kernel_side}x{max_kernel_side} (e.g. {shown}); their analysis takes memory by the square of the "
            "pixel count (16 kernels of 201x201 took 20 GB). Leave them out with --layers, or raise the bound with "
            "--max-kernel-side N"
        )
    if len(layers) > max_layers:
        raise BudgetError(
            f"{source} has {len(layers):,} depthwise layers, beyond the {max_layers:,} that analyze "
            "takes at once (each "
            "writes its own files; no known model has more than a few hundred). Select layers with --layers, or raise "
            "the bound with --max-layers N"
        )
    need = analysis_bytes((n, kh, kw) for _, n, kh, kw in layers)
    if need > max_memory:
        raise BudgetError(
            f"analysing the {len(layers):,} depthwise layers of {source} would take about {need / 2**30:,.1f} GiB of "
            f"memory, beyond the {max_memory / 2**30:,.1f} GiB bound. Select layers with --layers, or raise the bound "
            "with --max-memory BYTES"
        )


__all__ = [
    "DEFAULT_MAX_MEMORY",
    "MAX_KERNEL_SIDE",
    "MAX_LAYERS",
    "BudgetError",
    "analysis_bytes",
    "check_budget",
    "n_templates",
]
