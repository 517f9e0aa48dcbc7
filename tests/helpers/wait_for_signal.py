"""A callback for tests/test_slurm.py: every rank stops at the end of training step
$NE_WAIT_AT_STEP (a global step), writes ``waiting-rank<R>`` (its pid) into $NE_WAIT_DIR, and
waits there, as any process can be pre-empted at any moment, until SIGTERM arrives (SLURM's kill
of a requeued job). Signals sent meanwhile (SIGUSR1) are handled by Lightning's handlers while it
waits. Unset $NE_WAIT_AT_STEP: does nothing.

Why wait: Lightning's SIGUSR1 handler saves the checkpoint with a barrier, a collective that has
to meet the same collective on the other rank. Stopping every rank at the same step (after its
gradient all-reduce, before the next step's) makes the signal land at the same point on both,
so the test is deterministic; a signal that lands between different collectives on different
ranks is Lightning's to handle and is not tested here.
"""

import os
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

TIMEOUT_S = 300


class WaitForSignal(Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = os.environ.get("NE_WAIT_AT_STEP")
        if step is None or trainer.global_step != int(step):
            return
        folder = Path(os.environ["NE_WAIT_DIR"])
        (folder / f"waiting-rank{trainer.global_rank}").write_text(str(os.getpid()))
        deadline = time.monotonic() + TIMEOUT_S
        while not trainer.received_sigterm:  # Python runs signal handlers between these sleeps
            if time.monotonic() > deadline:
                raise RuntimeError(f"WaitForSignal: no SIGTERM within {TIMEOUT_S} s at step {step}")
            time.sleep(0.05)
