"""End to end on real images: train on the cifar10-mini subset for a few steps, then validate
the saved checkpoint with the `validate` subcommand (skips where ../shared is absent)."""

import json
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import run

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_a_few_steps_on_real_cifar10_then_validate(cifar10_mini, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = [
        "--config",
        str(REPO / "configs/cifar10/quickstart.yaml"),
        "--data.root",
        str(cifar10_mini),
        "--trainer.enable_progress_bar",
        "false",
    ]
    run.main(
        [
            "fit",
            *common,
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "8",
            "--trainer.limit_val_batches",
            "3",
            "--trainer.log_every_n_steps",
            "2",
        ]
    )

    version = tmp_path / "logs" / "quickstart" / "none" / "version_0"  # <recipe>/<init method>/<version>
    assert (version / "checkpoints" / "last.ckpt").exists()
    assert len(list((version / "checkpoints").glob("best-epoch001-acc*.ckpt"))) == 1
    events = EventAccumulator(str(version))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss_step", "train/loss_epoch", "train/acc1", "val/loss", "val/acc1", "val/acc5"} <= tags
    assert "train/lr" in tags and not any(tag.startswith("lr-") for tag in tags)  # one learning-rate curve
    losses = [e.value for e in events.Scalars("train/loss_step")]
    assert all(0 < loss < 10 for loss in losses)
    acc = events.Scalars("val/acc1")[-1].value
    assert 0.0 <= acc <= 1.0

    run.main(
        [
            "validate",
            *common,
            "--ckpt_path",
            str(version / "checkpoints" / "last.ckpt"),
            "--trainer.limit_val_batches",
            "3",
            "--trainer.logger",
            "false",
        ]
    )

    # the kernel snapshots were logged at step 0 and after the epoch, at its validation's step
    snapshot_steps = [e.step for e in events.Scalars("kernels/proportion/on_center")]
    assert snapshot_steps == [0, 7] and [e.step for e in events.Scalars("val/acc1")] == [7]
    # the model's own (trunc-normal) init is at or below chance: no on/off-center kernels
    assert all(e.value <= 0.05 for e in events.Scalars("kernels/proportion/on_center"))
    assert all(e.value <= 0.05 for e in events.Scalars("kernels/proportion/off_center"))
    # and `analyze` reads this project's own Lightning checkpoint, alone or in its 10-class model
    last = str(version / "checkpoints" / "last.ckpt")
    run.main(["analyze", "--checkpoint", last, "--out", str(tmp_path / "an")])
    summary = json.loads((tmp_path / "an" / "summary.json").read_text())
    assert summary["kernels"] == 1840 and len(summary["layers"]) == 12
    assert sum(summary["proportions"].values()) == pytest.approx(1.0)
    run.main(
        ["analyze", "--checkpoint", last, "--model", "convnext_atto", "--out", str(tmp_path / "in_model")]
    )
    in_model = json.loads((tmp_path / "in_model" / "summary.json").read_text())
    assert in_model["proportions"] == summary["proportions"]
