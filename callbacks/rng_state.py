"""Save and restore the random number generators with each checkpoint; the run's seed.

:func:`run_seed` is the one place the run's ``seed_everything`` seed is read from: ``run.py``
(:class:`neural_echos.cli.NeuralEchosCLI`) passes the seed it seeded with, after a resume took it
from the checkpoint, to :class:`RNGStateCheckpoint`, and the datamodules' data order, the
DepthwiseInit default seed and the HParams record ask :func:`run_seed` for it.
"""

from __future__ import annotations

import os
import random
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback


class RNGStateCheckpoint(Callback):
    """Put the Python, NumPy and torch (CPU and CUDA) RNG states into every checkpoint.

    Lightning checkpoints hold the weights, optimizer and loop state but not the global random
    generators that data shuffling, batch-wise augmentation, Mixup and stochastic depth draw
    from. With them restored, a run resumed from a checkpoint continues with the same random
    stream as a run that never stopped, so both end with the same weights (on the same
    hardware with deterministic kernels). Under DDP the checkpoint holds rank zero's states and
    every rank restores them.

    The run's ``seed_everything`` seed is stored as well (``seed``), so that a resume takes the
    seed, and with it the data order, from the checkpoint (``neural_echos.cli``).

    Args:
        seed: the run's ``seed_everything`` seed, passed by the CLI; ``None`` (a Trainer built
            without the CLI, or ``seed_everything: false``): see :func:`run_seed`.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def state_dict(self) -> dict[str, Any]:
        # the NumPy key array as a tensor, so checkpoints load with torch.load(weights_only=True)
        name, keys, pos, has_gauss, cached = np.random.get_state()
        numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
        state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
        seed = self.seed if self.seed is not None else _seed_everything_seed()
        if seed is not None:
            state["seed"] = seed
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._pending = state

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # restored after setup; applied here, the last moment before training draws anything
        state = getattr(self, "_pending", None)
        if state is None:
            return
        random.setstate(state["python"])
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        self._pending = None


def run_seed(trainer: pl.Trainer | None, default: int) -> int:
    """The run's ``seed_everything`` seed: the one source every seeded part of a run reads.

    The seed the CLI passed to the trainer's :class:`RNGStateCheckpoint`; for a Trainer built
    without the CLI (or ``seed_everything: false``), the seed of Lightning's own ``seed_everything``,
    which records it only in the ``PL_GLOBAL_SEED`` environment variable; ``default`` when
    nothing was seeded (or ``trainer`` is ``None`` and nothing was seeded).
    """
    for callback in getattr(trainer, "callbacks", None) or []:
        if isinstance(callback, RNGStateCheckpoint) and callback.seed is not None:
            return int(callback.seed)
    seed = _seed_everything_seed()
    return default if seed is None else seed


def _seed_everything_seed() -> int | None:
    """The seed of the last ``lightning.seed_everything`` call in this process (or its parent's)."""
    value = os.environ.get("PL_GLOBAL_SEED", "")
    return int(value) if value.lstrip("-").isdigit() else None
