"""``model.compile``: torch.compile of the timm model, with the DoG init, the kernel snapshots,
checkpoints (with and without compile, and ``run.py analyze``) and the CLI.

The fast tests use torch.compile's ``aot_eager`` backend (Dynamo graph capture and AOT autograd,
the same tracing inductor starts from, without its C++ code generation, which costs ~30-150 s per
model on the 2-core CI machine); one slow test runs the default ``inductor`` backend end to end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import run
from lightning_modules import ImageClassifier
from neural_echos import initialize_depthwise
from neural_echos.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = str(REPO / "configs/cifar10/quickstart.yaml")
DOG = str(REPO / "configs/init/dog.yaml")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"compile_mode": "fast"}, "unknown compile_mode 'fast'"),
        ({"compile_backend": "inductr"}, "unknown compile_backend 'inductr'"),
    ],
)
def test_bad_compile_options_are_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ImageClassifier(num_classes=10, image_size=32, compile=True, **kwargs)


def test_compiled_in_place_keeps_the_module_and_its_keys():
    plain = ImageClassifier(num_classes=10, image_size=32)
    compiled = ImageClassifier(num_classes=10, image_size=32, compile=True, compile_backend="aot_eager")
    assert type(compiled.model) is type(plain.model)  # not an OptimizedModule wrapper
    assert list(compiled.state_dict()) == list(plain.state_dict())  # no `_orig_mod.` prefix
    assert compiled.example_input_array is None and plain.example_input_array is not None


def test_compiled_forward_sees_in_place_kernel_writes():
    """What the DoG init does at fit start, after the graph exists: the compiled model must use
    the new kernels (parameters are graph inputs, not constants)."""
    torch.manual_seed(0)
    module = ImageClassifier(num_classes=10, image_size=32, compile=True, compile_backend="aot_eager").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = module(x)
        initialize_depthwise(module.model, "dog", seed=0)
        after = module(x)
        module.model._compiled_call_impl = None  # eager forward of the same module
        eager = module(x)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, eager, rtol=1e-4, atol=1e-5)


def test_checkpoint_of_a_torch_compile_wrapper_loads(tmp_path):
    """Checkpoints written by code that wraps the model in torch.compile(...) carry `_orig_mod.`."""
    source = ImageClassifier(num_classes=10, image_size=32)
    state = {k.replace("model.", "model._orig_mod.", 1): v for k, v in source.state_dict().items()}
    path = tmp_path / "wrapped.ckpt"
    torch.save(
        {"state_dict": state, "hyper_parameters": dict(source.hparams), "pytorch-lightning_version": "2.6.0"},
        path,
    )
    for compile in (False, True):
        loaded = ImageClassifier.load_from_checkpoint(path, compile=compile, compile_backend="aot_eager")
        torch.testing.assert_close(loaded.model.stem[0].weight, source.model.stem[0].weight)


def _fit_cli(tmp_path: Path, cifar_root: Path, *extra: str) -> Path:
    run.main(
        [
            "fit",
            "--config",
            QUICKSTART,
            "--config",
            DOG,
            "--data.init_args.root",
            str(cifar_root),
            "--data.init_args.batch_size",
            "16",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.num_sanity_val_steps",
            "0",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.logger.init_args.version",
            "0",
            "--model.compile",
            "true",
            *extra,
        ]
    )
    return tmp_path / "logs" / "quickstart" / "dog" / "version_0"  # <recipe>/<init method>/<version>


def test_fit_with_compile_dog_init_snapshot_checkpoint_and_analyze(cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = _fit_cli(tmp_path, cifar_root, "--model.compile_backend", "aot_eager")
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not any("_orig_mod" in key for key in checkpoint["state_dict"])
    assert checkpoint["hyper_parameters"]["compile"] is True
    # the snapshot at step 0 saw the DoG kernels through pl_module.model: on/off-center, no "other"
    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert events.Scalars("kernels/proportion/other")[0].value == pytest.approx(0.0)
    # loadable without compile, strictly (same keys), and by run.py analyze
    plain = ImageClassifier.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt", compile=False)
    assert not hasattr(plain.model, "_compiled_call_impl") or plain.model._compiled_call_impl is None
    run.main(
        ["analyze", "--checkpoint", str(run_dir / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "an")]
    )
    summary = json.loads((tmp_path / "an" / "summary.json").read_text())
    assert summary["kernels"] > 0 and summary["proportions"]["other"] < 0.1  # still DoG kernels after 2 steps


@pytest.mark.slow
def test_fast_dev_run_with_the_inductor_backend(cifar_root, tmp_path, monkeypatch):
    """The default backend, code generation included (a C++ compiler on the CPU), on a tiny ConvMixer."""
    monkeypatch.chdir(tmp_path)
    run.main(
        [
            "fit",
            "--config",
            QUICKSTART,
            "--config",
            DOG,
            "--data.init_args.root",
            str(cifar_root),
            "--data.init_args.batch_size",
            "16",
            "--trainer.fast_dev_run",
            "true",
            "--trainer.enable_progress_bar",
            "false",
            "--model.compile",
            "true",
            "--model.model_name",
            "convmixer",
            "--model.model_kwargs",
            "{dim: 16, depth: 1, kernel_size: 5, patch_size: 4}",
        ]
    )
