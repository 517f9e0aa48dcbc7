"""KernelTracking inside real tiny fits: the tags, the init state through a resume, the settings."""

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks import DepthwiseInit, KernelSnapshot, KernelTracking
from datamodules import CIFAR10DataModule
from lightning_modules import ImageClassifier
from neural_echos.errors import ConfigError
from neural_echos.init.dog import DoGInit

STEPS_PER_EPOCH = 3


def _trainer(tmp_path, callbacks, epochs, checkpointing=False):
    return pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=STEPS_PER_EPOCH,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=checkpointing,
        default_root_dir=tmp_path,
        logger=TensorBoardLogger(tmp_path, name="track", version=0),
        callbacks=callbacks,
    )


def _fit(tmp_path, cifar_root, callbacks, epochs=1, ckpt_path=None, checkpointing=False):
    pl.seed_everything(0)
    module = ImageClassifier(num_classes=10, image_size=32, model_kwargs={"drop_path_rate": 0.1})
    trainer = _trainer(tmp_path, callbacks, epochs, checkpointing)
    trainer.fit(module, datamodule=CIFAR10DataModule(root=str(cifar_root), batch_size=8), ckpt_path=ckpt_path)
    return trainer, module


def _events(tmp_path):
    events = EventAccumulator(
        str(tmp_path / "track" / "version_0"), size_guidance={"images": 0, "scalars": 0}
    )
    events.Reload()
    return events


@pytest.mark.slow
def test_a_one_epoch_fit_logs_transitions_drift_and_the_population_signal(tmp_path, cifar_root):
    tracking = KernelTracking(layer_scalars=True)
    _fit(
        tmp_path,
        cifar_root,
        [DepthwiseInit(DoGInit(on_center_prob=1.0)), KernelSnapshot(images=False), tracking],
    )
    events = _events(tmp_path)
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    for since in ("since_init", "since_previous"):
        for name in ("retained", "gained", "lost"):
            assert {f"tracking/{since}/{name}", f"tracking/{since}/{name}_chance"} <= scalars
    for name in ("cosine_distance", "norm_change", "relative_distance"):
        assert f"tracking/drift/{name}" in scalars
    for name in ("dog_energy", "mean_score"):
        assert {
            f"tracking/population/7x7/{name}",
            f"tracking/population/7x7/{name}_null",
            f"tracking/population/7x7/{name}_z",
        } <= scalars
    assert "tracking/layer/stages.0.blocks.0.conv_dw/cosine_distance" in scalars
    assert {"tracking/transitions", "tracking/layers"} <= images
    retained = events.Scalars("tracking/since_init/retained")
    assert [e.step for e in retained] == [0, STEPS_PER_EPOCH - 1]
    assert retained[0].value == 1.0  # step 0 against itself
    distance = events.Scalars("tracking/drift/cosine_distance")
    assert distance[0].value == 0.0 and distance[1].value > 0.0  # three AdamW steps moved the kernels
    # an all-on-center DoG init is far from its permuted null; a few steps keep it there
    assert events.Scalars("tracking/population/7x7/mean_score_z")[0].value > 10
    assert len(tracking.seconds) == 2
    # every chart of the Custom Scalars tracking category finds its lines among the logged tags
    import re

    from callbacks.scalars_layout import LAYOUT

    category = next(charts for title, charts in LAYOUT.items() if title.startswith("kernel tracking"))
    for title, (_, regexes) in category.items():
        for regex in regexes:
            assert any(re.search(regex, tag) for tag in scalars), (title, regex)


@pytest.mark.slow
def test_init_state_survives_a_resume(tmp_path, cifar_root):
    tracking = KernelTracking(images=False)
    _fit(tmp_path, cifar_root, [tracking], epochs=1, checkpointing=True)
    init_kernels = [k.clone() for k in tracking.init["kernels"]]
    checkpoint = next((tmp_path / "track" / "version_0" / "checkpoints").glob("*.ckpt"))
    state = torch.load(checkpoint, weights_only=True)["callbacks"]
    (saved,) = [v for k, v in state.items() if k.startswith("KernelTracking")]
    assert saved["init_step"] == 0 and len(saved["init_kernels"]) == 12

    resumed = KernelTracking(images=False)
    _fit(tmp_path, cifar_root, [resumed], epochs=2, ckpt_path=str(checkpoint))
    assert resumed.init["step"] == 0 and not resumed.notes
    for before, after in zip(init_kernels, resumed.init["kernels"], strict=True):
        assert torch.equal(before, after)
    steps = [e.step for e in _events(tmp_path).Scalars("tracking/since_init/retained")]
    assert steps == [0, STEPS_PER_EPOCH - 1, 2 * STEPS_PER_EPOCH - 1]  # no second step 0 after the resume


def test_state_without_init_is_empty_and_bad_settings_are_one_line_errors():
    assert KernelTracking().state_dict() == {}
    with pytest.raises(ConfigError, match="every_n_epochs must be >= 0"):
        KernelTracking(every_n_epochs=-1)
    with pytest.raises(ConfigError, match="null_draws must be >= 2"):
        KernelTracking(null_draws=1)


def test_large_init_kernels_are_left_out_of_the_checkpoint(monkeypatch):
    import callbacks.kernel_tracking as module

    tracking = KernelTracking()
    detail = [np.zeros(4, dtype=np.int64)]
    tracking.init = {"names": ["a"], "kernels": [torch.zeros(4, 7, 7)], "detail": detail, "step": 0}
    tracking.previous = {"detail": detail, "step": 0}
    assert tracking.state_dict()["init_kernels"] is not None
    monkeypatch.setattr(module, "MAX_STATE_MIB", 1e-6)
    assert tracking.state_dict()["init_kernels"] is None
    restored = KernelTracking()
    restored.load_state_dict(tracking.state_dict())
    assert restored.init["kernels"] is None and restored.init["detail"][0].tolist() == [0, 0, 0, 0]
