"""Checkpoints that survive any kill and a full disk: write beside the target, sync, rename.

Lightning's ``TorchCheckpointIO`` serialises the checkpoint into memory and writes it through
an fsspec transaction, whose local implementation writes a temporary file under ``$TMPDIR``
and moves it into place at the end. When ``$TMPDIR`` is on another file system than the logs
(tmpfs ``/tmp``, a network home) that move is a copy that first truncates the destination, so a
kill or a full disk during the copy leaves a truncated ``last.ckpt``, and a kill leaves the
temporary file behind in ``$TMPDIR``. This plugin writes a hidden temporary file in the
destination's own folder instead, ``fsync``s it, renames it over the destination with
``os.replace`` (atomic within one file system, POSIX) and ``fsync``s the folder so that the
rename itself is durable. At any moment the destination holds either the previous complete
checkpoint or the new complete one. Torch writes straight into the file, so no second copy of
the checkpoint is held in memory.

If the write fails (a full disk, a quota) the temporary file is removed, the previous
checkpoint stays as it was, and :class:`CheckpointWriteError` says so in one line. A
temporary file left by a killed process is removed by the next save to the same destination.
Remote paths (``s3://`` and other fsspec URLs) go to Lightning's own implementation.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from neural_echos.errors import NeuralEchosError

TEMP_SUFFIX = ".tmp"


class CheckpointWriteError(NeuralEchosError):
    """A checkpoint could not be written; the previous file at that path is unchanged."""


def temp_name(destination: Path) -> Path:
    """A hidden, unique temporary file beside ``destination`` (``.last.ckpt.1a2b3c4d.tmp``)."""
    return destination.with_name(f".{destination.name}.{uuid.uuid4().hex[:8]}{TEMP_SUFFIX}")


def stale_temp_files(destination: Path) -> list[Path]:
    """Temporary files an earlier, interrupted save to ``destination`` left beside it."""
    return sorted(destination.parent.glob(f".{destination.name}.*{TEMP_SUFFIX}"))


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems cannot sync folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, destination: str | os.PathLike) -> None:
    """``torch.save(obj, destination)`` such that ``destination`` is never left incomplete.

    Raises:
        CheckpointWriteError: the write failed (the previous ``destination``, if any, is intact).
    """
    destination = Path(destination)
    folder = destination.parent
    folder.mkdir(parents=True, exist_ok=True)
    for stale in stale_temp_files(destination):
        stale.unlink(missing_ok=True)
    temp = temp_name(destination)
    try:
        # os.open with 0o666 so that the umask sets the permissions, as for a plain open()
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, destination)
    except BaseException as err:
        temp.unlink(missing_ok=True)
        # torch's zip writer reports a failed write of the file object as a RuntimeError whose
        # context is the OSError (ENOSPC, EDQUOT, EFBIG, EIO ...)
        cause = _os_error(err)
        if cause is None:
            raise
        kept = (
            f"the previous {destination.name} is unchanged"
            if destination.exists()
            else "no checkpoint was written"
        )
        raise CheckpointWriteError(
            f"cannot write checkpoint {str(destination)!r} ({cause.strerror or cause}); {kept}. Free space in "
            f"{str(folder)!r} (or set --trainer.logger.init_args.save_dir to a disk with room), then resume "
            "with --ckpt_path"
        ) from err
    fsync_folder(folder)


class AtomicCheckpointIO(TorchCheckpointIO):
    """:class:`~lightning.pytorch.plugins.io.TorchCheckpointIO` with atomic, durable local saves.

    Loading and removing are Lightning's; only :meth:`save_checkpoint` differs (see the module
    docstring). Set as a trainer plugin: ``Trainer(plugins=[AtomicCheckpointIO()])``, which
    ``run.py`` does unless ``trainer.plugins`` already holds a ``CheckpointIO``.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or _is_remote(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        atomic_torch_save(checkpoint, path)


def _os_error(err: BaseException) -> OSError | None:
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _is_remote(path: _PATH) -> bool:
    return "://" in str(path)


__all__ = ["AtomicCheckpointIO", "CheckpointWriteError", "atomic_torch_save"]
