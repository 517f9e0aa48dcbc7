import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks import DepthwiseInit
from datamodules import CIFAR10DataModule
from lightning_modules import ImageClassifier
from neural_echos.depthwise import NoDepthwiseLayersError, find_depthwise_convs
from neural_echos.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


class WeightsAtTrainStart(Callback):
    """Copies the depthwise weights when training starts (after DepthwiseInit has run)."""

    def on_train_start(self, trainer, pl_module):
        self.weights = {n: c.weight.detach().clone() for n, c in find_depthwise_convs(pl_module.model)}


def _depthwise(module):
    return {n: c.weight.detach().clone() for n, c in find_depthwise_convs(module.model)}


def _trainer(tmp_path, *callbacks, logger=False, **kwargs):
    defaults = dict(accelerator="cpu", max_epochs=1, limit_train_batches=1, limit_val_batches=1,
                    num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False, default_root_dir=tmp_path)
    return pl.Trainer(logger=logger, callbacks=list(callbacks), **{**defaults, **kwargs})


@pytest.fixture
def datamodule(cifar_root):
    return CIFAR10DataModule(root=str(cifar_root), batch_size=8)


def test_fit_applies_dog_and_logs_its_settings(tmp_path, datamodule):
    module = ImageClassifier(num_classes=10, image_size=32)
    probe = WeightsAtTrainStart()
    init = DepthwiseInit(method="dog", seed=3, on_center_prob=1.0)
    logger = TensorBoardLogger(tmp_path, name="run")
    _trainer(tmp_path, init, probe, logger=logger).fit(module, datamodule=datamodule)
    assert init.summary.n_kernels == 1840 and init.summary.n_on == 1840
    for name, weight in probe.weights.items():
        kernels = weight.flatten(1)
        torch.testing.assert_close(kernels.sum(1), torch.zeros(len(kernels)), atol=1e-5, rtol=0)
        centre = weight[:, 0, 3, 3]
        assert (centre > 0).all(), name  # on-center: positive middle pixel
    assert logger.hparams["init/method"] == "dog" and logger.hparams["init/n_on"] == 1840
    assert logger.hparams["init/seed"] == 3


@pytest.mark.slow
def test_seed_defaults_to_the_run_seed(tmp_path, datamodule):
    runs = []
    for seed in (1, 1, 2):
        pl.seed_everything(seed)
        module = ImageClassifier(num_classes=10, image_size=32)
        probe = WeightsAtTrainStart()
        _trainer(tmp_path, DepthwiseInit(method="dog"), probe).fit(module, datamodule=datamodule)
        runs.append(probe.weights)
    name = next(iter(runs[0]))
    assert torch.equal(runs[0][name], runs[1][name]) and not torch.equal(runs[0][name], runs[2][name])


@pytest.mark.parametrize("entry", ["validate", "test", "predict"])
def test_evaluation_does_not_initialise(tmp_path, datamodule, entry):
    module = ImageClassifier(num_classes=10, image_size=32)
    before = _depthwise(module)
    init = DepthwiseInit(method="dog")
    getattr(_trainer(tmp_path, init, limit_test_batches=1, limit_predict_batches=1), entry)(module, datamodule=datamodule)
    assert init.summary is None
    assert all(torch.equal(before[n], w) for n, w in _depthwise(module).items())


@pytest.mark.slow
def test_resumed_fit_keeps_the_checkpoint_weights(tmp_path, datamodule):
    module = ImageClassifier(num_classes=10, image_size=32)
    trainer = _trainer(tmp_path, DepthwiseInit(method="kaiming_normal"))
    trainer.fit(module, datamodule=datamodule)
    checkpoint = tmp_path / "first.ckpt"
    trainer.save_checkpoint(checkpoint)
    saved = _depthwise(module)

    fresh = ImageClassifier(num_classes=10, image_size=32)
    init, probe = DepthwiseInit(method="dog"), WeightsAtTrainStart()
    _trainer(tmp_path, init, probe, max_epochs=2).fit(fresh, datamodule=datamodule, ckpt_path=checkpoint)
    assert init.summary is None
    assert all(torch.equal(saved[n], w) for n, w in probe.weights.items())


def test_none_keeps_the_model_default(tmp_path, datamodule):
    module = ImageClassifier(num_classes=10, image_size=32)
    before, probe = _depthwise(module), WeightsAtTrainStart()
    _trainer(tmp_path, DepthwiseInit(method="none"), probe).fit(module, datamodule=datamodule)
    assert all(torch.equal(before[n], w) for n, w in probe.weights.items())


def test_model_without_depthwise_layers_is_named(tmp_path, datamodule):
    module = ImageClassifier(model_name="resnet10t", num_classes=10, image_size=32)
    with pytest.raises(NoDepthwiseLayersError, match="'resnet10t' has no depthwise convolution"):
        _trainer(tmp_path, DepthwiseInit(method="dog")).fit(module, datamodule=datamodule)


def test_filter_matching_nothing_is_an_error(tmp_path, datamodule):
    module = ImageClassifier(num_classes=10, image_size=32)
    with pytest.raises(NoDepthwiseLayersError, match="matches none"):
        _trainer(tmp_path, DepthwiseInit(method="dog", name_filter="stages\\.9")).fit(module, datamodule=datamodule)


def test_unknown_method_and_misplaced_options():
    with pytest.raises(ConfigError, match="unknown init method 'dogg'"):
        DepthwiseInit(method="dogg")


@pytest.mark.slow
def test_two_process_ddp_ranks_get_identical_weights(tmp_path, cifar_root):
    script = REPO / "tests" / "helpers" / "ddp_init_run.py"
    result = subprocess.run([sys.executable, str(script), str(cifar_root), str(tmp_path)], capture_output=True,
                            text=True, timeout=600, cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    for when in ("start", "end"):  # after the init, and after training (DDP keeps ranks in step)
        rank0, rank1 = (torch.load(tmp_path / f"{when}_rank{r}.pt") for r in (0, 1))
        assert rank0.keys() == rank1.keys() and len(rank0) == 12
        for name in rank0:
            assert torch.equal(rank0[name], rank1[name]), (when, name)
    # and they are DoG kernels, not the model's default
    first = next(iter(torch.load(tmp_path / "start_rank0.pt").values()))
    torch.testing.assert_close(first.flatten(1).sum(1), torch.zeros(len(first)), atol=1e-5, rtol=0)
