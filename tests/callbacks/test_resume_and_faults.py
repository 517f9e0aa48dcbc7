"""Faults: a run killed mid-epoch (SIGKILL) and resumed with `--ckpt_path last` ends with the
same weights and metrics as one that never stopped; a non-finite loss stops the run before the
update with a clear message, keeping the last good checkpoint."""

import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks import FiniteLossGuard, NonFiniteLossError, RNGStateCheckpoint
from datamodules import CIFAR10DataModule
from lightning_modules import ImageClassifier

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tests" / "helpers" / "resume_run.py"


def _fit(kill_at, cwd, cifar_root, *extra):
    args = [
        "fit",
        "--config",
        str(REPO / "configs/cifar10/quickstart.yaml"),
        "--data.root",
        str(cifar_root),
        "--data.batch_size",
        "16",
        "--trainer.max_epochs",
        "3",
        "--trainer.limit_val_batches",
        "2",
        "--trainer.deterministic",
        "true",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.logger.init_args.version",
        "0",
        "--model.model_kwargs",
        "{drop_path_rate: 0.1}",
        "--model.mixup_alpha",
        "0.5",
        *extra,
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(kill_at), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _final(cwd):
    checkpoint = torch.load(
        cwd / "logs/quickstart/none/version_0/checkpoints/last.ckpt", weights_only=False, map_location="cpu"
    )
    events = EventAccumulator(str(cwd / "logs/quickstart/none/version_0"))
    events.Reload()
    return checkpoint, events


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights_and_metrics(tmp_path, cifar_root):
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    straight.mkdir(), crashed.mkdir()
    assert _fit("none", straight, cifar_root).returncode == 0
    # 12 steps per epoch (200 images / 16): die in the middle of the second epoch
    killed = _fit(18, crashed, cifar_root)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = _fit("none", crashed, cifar_root, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    (a, events_a), (b, events_b) = _final(straight), _final(crashed)
    assert a["global_step"] == b["global_step"] == 36
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=0, atol=0, msg=key)
    val_a = [(e.step, e.value) for e in events_a.Scalars("val/acc1")]
    val_b = [(e.step, e.value) for e in events_b.Scalars("val/acc1")]
    assert val_a == sorted(set(val_b))  # same metrics; the resumed run logged each epoch once more at most
    # the kernel snapshots continue where they stopped: step 0 and each epoch end (at the step of
    # that epoch's validation metrics), same values
    snaps_a = [(e.step, e.value) for e in events_a.Scalars("kernels/proportion/other")]
    snaps_b = [(e.step, e.value) for e in events_b.Scalars("kernels/proportion/other")]
    assert [step for step, _ in snaps_a] == [0, 11, 23, 35] == [0, *(step for step, _ in val_a)]
    assert sorted(set(snaps_b)) == snaps_a


def test_nan_loss_stops_before_the_update(tmp_path, cifar_root):
    module = ImageClassifier(num_classes=10, image_size=32)

    def poisoned_step(batch, batch_idx):
        loss = ImageClassifier.training_step(module, batch, batch_idx)
        return loss * float("nan") if module.global_step == 2 else loss

    module.training_step = poisoned_step
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=5,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[FiniteLossGuard(), RNGStateCheckpoint()],
    )
    with pytest.raises(
        NonFiniteLossError, match=r"loss is nan at step 2 .*stopped before the update.*gradient_clip_val"
    ):
        trainer.fit(module, datamodule=CIFAR10DataModule(root=str(cifar_root), batch_size=16))
    assert all(torch.isfinite(p).all() for p in module.parameters())


@pytest.mark.slow
def test_nan_loss_through_the_cli_is_one_error_line(tmp_path, cifar_root):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "run.py"),
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--data.root",
            str(cifar_root),
            "--data.batch_size",
            "16",
            "--model.lr",
            "1e30",
            "--model.warmup_epochs",
            "0",
            "--trainer.max_epochs",
            "2",
            "--trainer.enable_progress_bar",
            "false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: training loss is nan" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("written", [False, True])
def test_the_nan_message_offers_a_resume_only_when_there_is_a_checkpoint(written):
    from types import SimpleNamespace

    callback = SimpleNamespace(
        last_model_path="logs/r/checkpoints/last.ckpt" if written else "", best_model_path=""
    )
    trainer = SimpleNamespace(checkpoint_callback=callback, global_step=3, current_epoch=0)
    with pytest.raises(NonFiniteLossError) as caught:
        FiniteLossGuard().on_before_backward(trainer, None, torch.tensor(float("nan")))
    if written:
        assert "resume from that checkpoint with --ckpt_path logs/r/checkpoints/last.ckpt" in str(
            caught.value
        )
    else:
        assert "no checkpoint had been written yet" in str(caught.value) and "resume" not in str(caught.value)
        assert "start the run again" in str(caught.value)
