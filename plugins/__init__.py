"""Lightning plugins, one job each.

* :class:`plugins.atomic_checkpoint_io.AtomicCheckpointIO`: checkpoints written next to their
  destination, synced to disk and moved into place in one step (set by default by ``cli.py``).
"""

from plugins.atomic_checkpoint_io import AtomicCheckpointIO, CheckpointWriteError

__all__ = ["AtomicCheckpointIO", "CheckpointWriteError"]
