from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks import DepthwiseInit, KernelSnapshot
from datamodules import CIFAR10DataModule
from lightning_modules import ImageClassifier
from neural_echos.classifiers import AnalysisError, KMeansClassifier, TemplateClassifier
from neural_echos.errors import ConfigError
from neural_echos.init.dog import DoGInit
from neural_echos.taxonomy import DETAILED_CLASSES

STEPS_PER_EPOCH = 3


def _fit(tmp_path, cifar_root, callbacks, epochs=2, logger=True, seed=0):
    pl.seed_everything(seed)
    module = ImageClassifier(num_classes=10, image_size=32, model_kwargs={"drop_path_rate": 0.1})
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        limit_train_batches=STEPS_PER_EPOCH,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        logger=TensorBoardLogger(tmp_path, name="snap", version=0) if logger else False,
        callbacks=callbacks,
    )
    trainer.fit(module, datamodule=CIFAR10DataModule(root=str(cifar_root), batch_size=8))
    return module


def _events(tmp_path):
    events = EventAccumulator(str(tmp_path / "snap" / "version_0"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


@pytest.mark.slow
def test_logs_documented_tags_at_step_zero_and_every_epoch(tmp_path, cifar_root):
    snapshot = KernelSnapshot(histograms=True, layer_scalars=True)
    _fit(tmp_path, cifar_root, [DepthwiseInit(DoGInit(on_center_prob=1.0)), snapshot])
    events = _events(tmp_path)
    tags = events.Tags()
    val_steps = [e.step for e in events.Scalars("val/acc1")]
    assert val_steps == [STEPS_PER_EPOCH - 1, 2 * STEPS_PER_EPOCH - 1]
    for name in ("on_center", "off_center", "other"):
        steps = [e.step for e in events.Scalars(f"kernels/proportion/{name}")]
        assert steps == [0, *val_steps]  # each epoch's snapshot at its validation's step
        assert f"kernels/layer/stages.0.blocks.0.conv_dw/{name}" in tags["scalars"]
    for name in ("on_center", "off_center", "other"):
        assert [e.step for e in events.Scalars(f"kernels/chance/{name}")] == [0, *val_steps]
    assert [e.step for e in events.Scalars("kernels/excess/on_center")] == [0, *val_steps]
    assert events.Scalars("kernels/threshold/7x7")[0].value == pytest.approx(0.5)
    # the DoG init made every kernel on-center at step 0; their pixel-permuted nulls mostly are not
    assert events.Scalars("kernels/proportion/on_center")[0].value == pytest.approx(1.0)
    assert events.Scalars("kernels/chance/on_center")[0].value < 0.1
    shares = [
        events.Scalars(f"kernels/proportion/{n}")[-1].value for n in ("on_center", "off_center", "other")
    ]
    assert sum(shares) == pytest.approx(1.0)
    # one grid per stage: 4 cards a snapshot, not 12 (two runs' kernels on a page of Time Series)
    assert sorted(t for t in tags["images"] if t.startswith("kernels/grid/")) == [
        f"kernels/grid/stages.{i}" for i in range(4)
    ]
    assert {"kernels/centroids", "kernels/layers"} <= set(tags["images"])
    grid = events.Images("kernels/grid/stages.0")
    assert [g.step for g in grid] == [0, *val_steps] and grid[0].width >= 340
    assert "kernels/weights/stages.0.blocks.0.conv_dw" in tags["histograms"]
    assert len(snapshot.seconds) == 3


@pytest.mark.slow
@pytest.mark.parametrize("classifier", [TemplateClassifier(), KMeansClassifier(n_clusters=3)])
def test_the_taxonomy_is_logged_with_its_chance_for_every_classifier(tmp_path, cifar_root, classifier):
    images = isinstance(classifier, TemplateClassifier)  # the texts are logged without images too
    _fit(tmp_path, cifar_root, [KernelSnapshot(classifier=classifier, images=images)], epochs=1)
    events = _events(tmp_path)
    scalars = events.Tags()["scalars"]
    for name in DETAILED_CLASSES:
        assert f"kernels/taxonomy/{name}" in scalars and f"kernels/taxonomy_chance/{name}" in scalars
    assert "kernels/named" in scalars and "kernels/named_chance" in scalars
    shares = [events.Scalars(f"kernels/taxonomy/{name}")[-1].value for name in DETAILED_CLASSES]
    assert sum(shares) == pytest.approx(1.0, abs=1e-5)
    assert ("kernels/taxonomy" in events.Tags()["images"]) == images
    (text,) = events.Tensors("kernels/classifier/text_summary")
    assert type(classifier).__name__ in text.tensor_proto.string_val[0].decode()


def test_does_not_change_training(tmp_path, cifar_root):
    plain = _fit(tmp_path / "a", cifar_root, [], logger=True)
    watched = _fit(tmp_path / "b", cifar_root, [KernelSnapshot(histograms=True)], logger=True)
    for (name, a), b in zip(plain.state_dict().items(), watched.state_dict().values()):
        assert torch.equal(a, b), name
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in watched.parameters())


def test_every_n_epochs_zero_turns_it_off(tmp_path, cifar_root):
    snapshot = KernelSnapshot(every_n_epochs=0)
    _fit(tmp_path, cifar_root, [snapshot], epochs=1)
    assert snapshot.seconds == []


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"every_n_epochs": -1}, ConfigError, "every_n_epochs"),
        ({"max_kernels": 0}, ConfigError, "max_kernels"),
        ({"sampling": "first"}, ConfigError, "sampling"),
        ({"scaling": "global"}, ConfigError, "scaling"),
        ({"transfer": "log"}, ConfigError, "transfer"),
    ],
)
def test_bad_settings(kwargs, error, message):
    with pytest.raises(error, match=message):
        KernelSnapshot(**kwargs)


def test_bad_classifier_settings_fail_when_the_classifier_is_built():
    with pytest.raises(AnalysisError, match="threshold"):
        KernelSnapshot(classifier=TemplateClassifier(threshold=1.5))


@pytest.mark.slow
def test_ddp_writes_one_set_of_logs(tmp_path, cifar_root):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(repo / "tests/helpers/ddp_init_run.py"), str(cifar_root), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    versions = list((tmp_path / "logs" / "ddp").iterdir())
    assert len(versions) == 1
    event_files = list(versions[0].glob("events.out.tfevents.*"))
    assert len(event_files) == 1
    events = EventAccumulator(str(versions[0]))
    events.Reload()
    assert [e.step for e in events.Scalars("kernels/proportion/on_center")] == [0, 2, 5]
