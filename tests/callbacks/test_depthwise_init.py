"""The DepthwiseInit callback: when it initialises, what it logs, and its configs (configs/init/)."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
import yaml
from jsonargparse import ActionConfigFile, ArgumentParser
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks import DepthwiseInit
from datamodules import CIFAR10DataModule
from lightning_modules import ImageClassifier
from neural_echos.depthwise import NoDepthwiseLayersError, find_depthwise_convs
from neural_echos.errors import ConfigError
from neural_echos.init.dog import DoGInit
from neural_echos.init.kaiming import KaimingNormalInit

REPO = Path(__file__).resolve().parents[2]


class WeightsAtTrainStart(Callback):
    """Copies the depthwise weights when training starts (after DepthwiseInit has run)."""

    def on_train_start(self, trainer, pl_module):
        self.weights = {n: c.weight.detach().clone() for n, c in find_depthwise_convs(pl_module.model)}


def _depthwise(module):
    return {n: c.weight.detach().clone() for n, c in find_depthwise_convs(module.model)}


def _trainer(tmp_path, *callbacks, logger=False, **kwargs):
    defaults = {
        "accelerator": "cpu",
        "max_epochs": 1,
        "limit_train_batches": 1,
        "limit_val_batches": 1,
        "num_sanity_val_steps": 0,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": tmp_path,
    }
    return pl.Trainer(logger=logger, callbacks=list(callbacks), **{**defaults, **kwargs})


@pytest.fixture
def datamodule(cifar_root):
    return CIFAR10DataModule(root=str(cifar_root), batch_size=8)


def test_fit_applies_dog_and_logs_its_settings(tmp_path, datamodule):
    module = ImageClassifier(num_classes=10, image_size=32)
    probe = WeightsAtTrainStart()
    init = DepthwiseInit(DoGInit(on_center_prob=1.0), seed=3)
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
        _trainer(tmp_path, DepthwiseInit(DoGInit()), probe).fit(module, datamodule=datamodule)
        runs.append(probe.weights)
    name = next(iter(runs[0]))
    assert torch.equal(runs[0][name], runs[1][name]) and not torch.equal(runs[0][name], runs[2][name])


@pytest.mark.parametrize("entry", ["validate", "test", "predict"])
def test_evaluation_does_not_initialise(tmp_path, datamodule, entry):
    module = ImageClassifier(num_classes=10, image_size=32)
    before = _depthwise(module)
    init = DepthwiseInit(DoGInit())
    getattr(_trainer(tmp_path, init, limit_test_batches=1, limit_predict_batches=1), entry)(
        module, datamodule=datamodule
    )
    assert init.summary is None
    assert all(torch.equal(before[n], w) for n, w in _depthwise(module).items())


@pytest.mark.slow
def test_resumed_fit_keeps_the_checkpoint_weights(tmp_path, datamodule):
    module = ImageClassifier(num_classes=10, image_size=32)
    trainer = _trainer(tmp_path, DepthwiseInit(KaimingNormalInit()))
    trainer.fit(module, datamodule=datamodule)
    checkpoint = tmp_path / "first.ckpt"
    trainer.save_checkpoint(checkpoint)
    saved = _depthwise(module)

    fresh = ImageClassifier(num_classes=10, image_size=32)
    init, probe = DepthwiseInit(DoGInit()), WeightsAtTrainStart()
    _trainer(tmp_path, init, probe, max_epochs=2).fit(fresh, datamodule=datamodule, ckpt_path=checkpoint)
    assert init.summary is None
    assert all(torch.equal(saved[n], w) for n, w in probe.weights.items())


def test_none_keeps_the_model_default(tmp_path, datamodule):
    module = ImageClassifier(num_classes=10, image_size=32)
    before, probe = _depthwise(module), WeightsAtTrainStart()
    logger = TensorBoardLogger(tmp_path, name="run")
    _trainer(tmp_path, DepthwiseInit(None), probe, logger=logger).fit(module, datamodule=datamodule)
    assert all(torch.equal(before[n], w) for n, w in probe.weights.items())
    assert logger.hparams["init/method"] == "none"


def test_model_without_depthwise_layers_is_named(tmp_path, datamodule):
    module = ImageClassifier(model_name="resnet10t", num_classes=10, image_size=32)
    with pytest.raises(NoDepthwiseLayersError, match="'resnet10t' has no depthwise convolution"):
        _trainer(tmp_path, DepthwiseInit(DoGInit())).fit(module, datamodule=datamodule)


def test_filter_matching_nothing_is_an_error(tmp_path, datamodule):
    module = ImageClassifier(num_classes=10, image_size=32)
    with pytest.raises(
        NoDepthwiseLayersError, match=r"^--init.name_filter 'stages.*' matches none.*drop --init.name_filter"
    ):
        _trainer(tmp_path, DepthwiseInit(DoGInit(), name_filter="stages\\.9")).fit(
            module, datamodule=datamodule
        )


def test_a_method_name_instead_of_a_method_is_an_error():
    with pytest.raises(
        ConfigError, match="DepthwiseInit takes an init method such as neural_echos.init.dog.DoGInit"
    ):
        DepthwiseInit(method="dog")


# --------------------------------------------------------------------------------------------
# init.freeze: the depthwise weights stay as initialised (docs/controls.md)


class OptimizerAtTrainEnd(Callback):
    """The ids of the parameters the optimizer holds in its groups and in its state, after training."""

    def on_train_end(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        self.in_groups = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.in_state = {id(p) for p in optimizer.state}


@pytest.mark.parametrize("freeze", [True, False])
def test_frozen_depthwise_weights_stay_bit_identical_and_out_of_the_optimizer(tmp_path, datamodule, freeze):
    module = ImageClassifier(num_classes=10, image_size=32)
    start, optimizer = WeightsAtTrainStart(), OptimizerAtTrainEnd()
    logger = TensorBoardLogger(tmp_path, name="run")
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    init = DepthwiseInit(DoGInit(), seed=1, freeze=freeze)
    _trainer(tmp_path, init, start, optimizer, logger=logger, max_epochs=2, limit_train_batches=2).fit(
        module, datamodule=datamodule
    )
    after, convs = _depthwise(module), find_depthwise_convs(module.model)
    depthwise_ids = {id(conv.weight) for _, conv in convs}
    depthwise_names = {f"model.{name}.weight" for name, _ in convs}
    changed = {name for name, p in module.named_parameters() if not torch.equal(p.detach(), before[name])}
    trained = {name for name in changed if name not in depthwise_names}
    assert {f"model.{name}.bias" for name, _ in convs} <= trained  # biases and all else train either way
    assert optimizer.in_state and optimizer.in_state <= optimizer.in_groups
    if freeze:
        # 4 optimizer steps later
        assert all(torch.equal(start.weights[name], weight) for name, weight in after.items())
        assert not depthwise_ids & optimizer.in_groups and not depthwise_ids & optimizer.in_state
        assert not any(conv.weight.requires_grad for _, conv in convs)
        assert init.frozen == [name for name, _ in convs]
        assert logger.hparams["init/freeze"] is True and logger.hparams["init/n_frozen_layers"] == 12
    else:  # the trained control: the same init, moved by training
        assert not any(torch.equal(start.weights[name], weight) for name, weight in after.items())
        assert depthwise_ids <= optimizer.in_state
        assert "init/freeze" not in logger.hparams
    # the DoG init ran in both (zero-sum kernels at the start), so freezing did not skip it
    first = next(iter(start.weights.values()))
    torch.testing.assert_close(first.flatten(1).sum(1), torch.zeros(len(first)), atol=1e-5, rtol=0)


def test_a_resumed_frozen_fit_keeps_the_weights_frozen(tmp_path, datamodule):
    module = ImageClassifier(num_classes=10, image_size=32)
    start = WeightsAtTrainStart()
    trainer = _trainer(tmp_path, DepthwiseInit(KaimingNormalInit(), seed=2, freeze=True), start)
    trainer.fit(module, datamodule=datamodule)
    checkpoint = tmp_path / "first.ckpt"
    trainer.save_checkpoint(checkpoint)
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["callbacks"]["DepthwiseInit"]["freeze"] is True
    fresh = ImageClassifier(num_classes=10, image_size=32)
    init, optimizer = DepthwiseInit(KaimingNormalInit(), seed=2, freeze=True), OptimizerAtTrainEnd()
    _trainer(tmp_path, init, optimizer, max_epochs=3).fit(fresh, datamodule=datamodule, ckpt_path=checkpoint)
    assert fresh.current_epoch == 3 and init.summary is None  # resumed, not re-initialised
    assert all(torch.equal(start.weights[name], weight) for name, weight in _depthwise(fresh).items())
    depthwise_ids = {id(conv.weight) for _, conv in find_depthwise_convs(fresh.model)}
    assert not depthwise_ids & (optimizer.in_groups | optimizer.in_state)


def test_freeze_without_a_method_freezes_the_models_own_and_a_filter_selects(tmp_path, datamodule):
    module = ImageClassifier(num_classes=10, image_size=32)
    before, logger = _depthwise(module), TensorBoardLogger(tmp_path, name="run")
    init = DepthwiseInit(None, name_filter="stages\\.3", freeze=True)
    _trainer(tmp_path, init, logger=logger, limit_train_batches=2).fit(module, datamodule=datamodule)
    after = _depthwise(module)
    assert init.frozen and all(name.startswith("stages.3") for name in init.frozen)
    for name, weight in after.items():
        assert torch.equal(weight, before[name]) == (name in init.frozen), name
    assert logger.hparams["init/method"] == "none" and logger.hparams["init/freeze"] is True


def test_freeze_acts_in_fit_only_and_must_be_a_bool():
    module = ImageClassifier(num_classes=10, image_size=32)
    init = DepthwiseInit(DoGInit(), freeze=True)
    for stage in ("validate", "test", "predict"):
        init.setup(SimpleNamespace(), module, stage)
    assert all(conv.weight.requires_grad for _, conv in find_depthwise_convs(module.model))
    assert init.state_dict()["freeze"] is True and DepthwiseInit(DoGInit()).state_dict()["freeze"] is False
    with pytest.raises(ConfigError, match="init.freeze must be true or false; got 'yes'"):
        DepthwiseInit(DoGInit(), freeze="yes")


# --------------------------------------------------------------------------------------------
# configs/init/*.yaml through jsonargparse's subclass mode (a parser with the `init` section only)


INIT_CONFIGS = sorted((REPO / "configs" / "init").glob("*.yaml"))


def _init_parser() -> ArgumentParser:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_class_arguments(DepthwiseInit, "init")
    return parser


@pytest.mark.parametrize("path", INIT_CONFIGS, ids=[p.stem for p in INIT_CONFIGS])
def test_each_init_config_builds_the_method_it_is_named_after(path, tmp_path):
    parser = _init_parser()
    args = ["--config", str(path)]
    if path.stem == "covariance_transfer":  # its checkpoint is required: a small one
        checkpoint = tmp_path / "trained.pt"
        torch.save({"dw.weight": torch.randn(8, 1, 7, 7)}, checkpoint)
        args += ["--init.method.init_args.checkpoint", str(checkpoint)]
    instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes  # (renamed in 4.49)
    init = instantiate(parser.parse_args(args)).init
    assert isinstance(init, DepthwiseInit)
    assert (init.method.name if init.method is not None else "none") == path.stem
    own = yaml.safe_load(path.read_text())["init"]["method"]
    for key, value in ((own or {}).get("init_args") or {}).items():  # the file's options reached the method
        assert getattr(init.method, key) == (tuple(value) if isinstance(value, list) else value), key
    # what it logs when a fit starts: the method's registry name, its settings and totals
    logger = _HParamsLogger()
    trainer = SimpleNamespace(ckpt_path=None, loggers=[logger], is_global_zero=True)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 7, groups=8), torch.nn.Conv2d(8, 8, 1))
    init.on_fit_start(trainer, SimpleNamespace(model=model, hparams={"model_name": "tiny"}))
    assert logger.params["init/method"] == path.stem
    if init.method is not None:
        assert logger.params["init/n_initialized"] == 8 and logger.params["init/model"] == "tiny"
        assert {key[len("init/") :] for key in logger.params} >= set(init.method.settings())


class _HParamsLogger:
    """What DepthwiseInit calls on a logger."""

    def __init__(self):
        self.params = {}

    def log_hyperparams(self, params):
        self.params.update(params)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--init.method", "DoGInit", "--init.method.sigma", "1.0"], "sigma"),  # an option of another method
        (["--init.method", "KaimingNormalInit", "--init.method.scale", "unit"], "scale"),
        (["--init.method", "DoGInit", "--init.method.scale", "xavier"], "xavier"),  # not one of its choices
        (["--init.method", "DoGInit", "--init.method.gamma_range", "[0.1, 0.2, 0.3]"], "gamma_range"),
        (["--init.method", "CovarianceTransferInit"], "checkpoint"),  # required, missing
        (["--init.method", "GaborInit"], "GaborInit"),  # no such method
    ],
)
def test_a_wrong_option_for_a_method_is_a_parse_error(args, message):
    from jsonargparse import ArgumentError

    with pytest.raises(ArgumentError, match=message):
        _init_parser().parse_args(args)


def test_the_method_options_are_in_the_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _init_parser().parse_args(["--init.method.help", "DoGInit"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--init.method.gamma_range" in out and "--init.method.dog_share" in out and "sigma" not in out


@pytest.mark.slow
def test_two_process_ddp_ranks_get_identical_weights(tmp_path, cifar_root):
    script = REPO / "tests" / "helpers" / "ddp_init_run.py"
    result = subprocess.run(
        [sys.executable, str(script), str(cifar_root), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for when in ("start", "end"):  # after the init, and after training (DDP keeps ranks in step)
        rank0, rank1 = (torch.load(tmp_path / f"{when}_rank{r}.pt") for r in (0, 1))
        assert rank0.keys() == rank1.keys() and len(rank0) == 12
        for name in rank0:
            assert torch.equal(rank0[name], rank1[name]), (when, name)
    # and they are DoG kernels, not the model's default
    first = next(iter(torch.load(tmp_path / "start_rank0.pt").values()))
    torch.testing.assert_close(first.flatten(1).sum(1), torch.zeros(len(first)), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_two_process_ddp_frozen_weights_stay_bit_identical_on_both_ranks(tmp_path, cifar_root):
    script = REPO / "tests" / "helpers" / "ddp_init_run.py"
    result = subprocess.run(
        [sys.executable, str(script), str(cifar_root), str(tmp_path), "freeze"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    start = torch.load(tmp_path / "start_rank0.pt")
    for rank in (0, 1):  # 2 epochs x 3 steps later, on each rank: the weights as initialised
        for when in ("start", "end"):
            weights = torch.load(tmp_path / f"{when}_rank{rank}.pt")
            assert weights.keys() == start.keys() and len(start) == 12
            assert all(torch.equal(weights[name], start[name]) for name in start), (rank, when)
    assert (tmp_path / "trained_rank0").read_text() == "True"  # the rest of the model did train
