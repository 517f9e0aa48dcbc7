"""Checkpoints survive a kill at any moment of a rewrite and a full disk: the destination always
holds a complete checkpoint, nothing is left in $TMPDIR, and the failure is one error line."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from neural_echos.cli import atomic_checkpoint_io as atomic
from neural_echos.cli.app import with_atomic_checkpoints
from neural_echos.cli.atomic_checkpoint_io import AtomicCheckpointIO, CheckpointWriteError

REPO = Path(__file__).resolve().parents[3]
HELPER = REPO / "tests" / "helpers" / "checkpoint_fault_run.py"


def _state(value: float, n: int = 1000) -> dict:
    return {"state_dict": {"w": torch.full((n,), value)}, "epoch": int(value)}


def test_save_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "run" / "checkpoints" / "last.ckpt"
    io.save_checkpoint(_state(1.0), target)
    io.save_checkpoint(_state(2.0), target)
    assert io.load_checkpoint(target)["epoch"] == 2
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.ckpt"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain open() would create it


def test_a_stale_temporary_file_is_removed_by_the_next_save(tmp_path):
    target = tmp_path / "last.ckpt"
    stale = atomic.temp_name(target)
    stale.write_bytes(b"half a checkpoint")
    AtomicCheckpointIO().save_checkpoint(_state(1.0), target)
    assert not stale.exists() and target.exists()


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint(_state(1.0), target)
    before = target.read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, failing, no_space)
    with pytest.raises(
        CheckpointWriteError, match=r"No space left on device.*the previous last.ckpt is unchanged"
    ):
        io.save_checkpoint(_state(2.0), target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def test_a_failed_first_save_says_nothing_was_written(tmp_path, monkeypatch):
    monkeypatch.setattr(
        atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.EDQUOT, "Disk quota exceeded"))
    )
    with pytest.raises(CheckpointWriteError, match="Disk quota exceeded.*no checkpoint was written"):
        AtomicCheckpointIO().save_checkpoint(_state(1.0), tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []


def test_the_plugin_is_set_by_default_but_never_over_a_users_checkpoint_io():
    assert any(isinstance(p, AtomicCheckpointIO) for p in with_atomic_checkpoints(None, "cpu"))
    own = TorchCheckpointIO()
    assert with_atomic_checkpoints([own], "cpu") == [own]
    assert with_atomic_checkpoints(None, "tpu") == []  # XLA saves through its own CheckpointIO


def _fit(mode: str, cwd: Path, cifar_root: Path, tmpdir: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [
        "fit",
        "--config",
        str(REPO / "configs/cifar10/quickstart.yaml"),
        "--data.root",
        str(cifar_root),
        "--data.batch_size",
        "16",
        "--model.model_name",
        "convmixer",
        "--model.model_kwargs",
        "{dim: 256, depth: 2, kernel_size: 5, patch_size: 4}",
        "--trainer.max_epochs",
        "2",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.logger.init_args.version",
        "0",
        "--checkpoint.save_top_k",
        "0",
        "--snapshot.every_n_epochs",
        "0",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir)}
    env.pop("NEURAL_ECHOS_TRACEBACK", None)
    # the fault hits the rewrite of last.ckpt at the end of the second epoch (epoch index 1)
    return subprocess.run(
        [sys.executable, str(HELPER), mode, "1", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.mark.slow
def test_kills_and_a_full_disk_during_the_rewrite_of_last_ckpt_never_lose_it(tmp_path, cifar_root):
    """A real fit, TMPDIR on another file system (/dev/shm, tmpfs) than the logs: a full disk,
    a kill half-way through the write and a kill just before the rename each leave the previous
    last.ckpt complete; nothing is left in TMPDIR; the run then resumes to its end."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the test's folder")
    tmpdir = Path(os.environ.get("NEURAL_ECHOS_SHM", shm)) / f"neural-echos-test-{os.getpid()}"
    tmpdir.mkdir()
    try:
        last = tmp_path / "logs/quickstart/none/version_0/checkpoints/last.ckpt"

        full = _fit("full-disk", tmp_path, cifar_root, tmpdir)
        assert full.returncode == 2, full.stderr[-3000:]
        assert (
            "error: cannot write checkpoint" in full.stderr
            and "the previous last.ckpt is unchanged" in full.stderr
        )
        assert "Traceback" not in full.stderr
        first = torch.load(last, weights_only=True, map_location="cpu")
        assert first["global_step"] == 2  # the epoch-0 checkpoint, complete
        assert _files(last.parent) == [last]

        killed = _fit("kill-mid-write", tmp_path, cifar_root, tmpdir, "--ckpt_path", "last")
        assert killed.returncode == -25, killed.stderr[-3000:]  # SIGXFSZ: killed by the kernel mid-write
        assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == 2
        (partial,) = [p for p in _files(last.parent) if p != last]  # the half-written temporary file
        assert 0 < partial.stat().st_size < last.stat().st_size

        killed = _fit("kill-before-replace", tmp_path, cifar_root, tmpdir, "--ckpt_path", "last")
        assert killed.returncode == -9, killed.stderr[-3000:]
        assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == 2

        done = _fit("none", tmp_path, cifar_root, tmpdir, "--ckpt_path", "last")
        assert done.returncode == 0, done.stderr[-3000:]
        assert torch.load(last, weights_only=True, map_location="cpu")["global_step"] == 4
        assert _files(last.parent) == [last]  # the interrupted writes' temporary files are gone
        assert _files(tmpdir) == []  # and nothing was ever written to TMPDIR
    finally:
        subprocess.run(["rm", "-rf", str(tmpdir)], check=False)
