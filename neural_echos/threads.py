"""Running small CPU work on one thread (kernel initialisation and classification)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch


@contextmanager
def single_thread(torch_only: bool = False) -> Iterator[None]:
    """Run torch (and, unless ``torch_only``, OpenMP and BLAS) on one thread, then restore the
    caller's settings. This changes process-wide settings for the duration of the block.

    The work it wraps is small (10^4-10^5 values per op). Split over threads it gains nothing,
    and on a busy CPU (data-loader workers, other jobs) extra threads only wait for each other:
    measured on a loaded 2-core machine, 1 ms on one thread vs ~90 ms on two for the templates of
    convnext_atto, and a median of ~9 ms vs ~370 ms for convnext_tiny's DoG init.

    ``torch_only=True`` skips threadpoolctl, which costs 3-7 ms per entry (it scans the loaded
    libraries): as much as a whole DoG init, whose ops are all torch's. scikit-learn's k-means
    runs OpenMP/BLAS outside torch and needs the full limit.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if torch_only:
            limits = nullcontext()
        else:
            from threadpoolctl import threadpool_limits

            limits = threadpool_limits(limits=1)
        with limits:
            yield
    finally:
        torch.set_num_threads(threads)


__all__ = ["single_thread"]
