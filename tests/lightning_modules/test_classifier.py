import itertools
from types import SimpleNamespace

import pytest
import timm
import torch

from lightning_modules import ImageClassifier, build_timm_model
from neural_echos.errors import ConfigError


def test_builds_any_timm_model_with_extra_kwargs():
    model = build_timm_model(
        "convnext_atto", num_classes=7, model_kwargs={"kernel_sizes": 9, "drop_path_rate": 0.1}
    )
    assert model.stages[0].blocks[0].conv_dw.kernel_size == (9, 9)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)


def test_our_registered_models_build_by_name():
    model = build_timm_model(
        "convmixer", num_classes=10, model_kwargs={"dim": 32, "depth": 2, "kernel_size": 7, "patch_size": 4}
    )
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_image_size_reaches_models_that_take_it():
    vit = build_timm_model(
        "vit_tiny_patch16_224", num_classes=10, image_size=32, model_kwargs={"patch_size": 8}
    )
    assert vit(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(
        ConfigError, match=r"unknown timm model 'convnext_atoo'.*Did you mean: .*convnext_atto"
    ):
        build_timm_model("convnext_atoo", num_classes=10)


def test_unknown_model_kwarg_names_the_model():
    with pytest.raises(
        ConfigError, match=r"'convnext_atto' does not accept model_kwargs \['kernel_size_typo'\]"
    ):
        build_timm_model("convnext_atto", num_classes=10, image_size=32, model_kwargs={"kernel_size_typo": 3})
    # only the key timm refused, not the valid ones given beside it (drop_path_rate was blamed too)
    with pytest.raises(ConfigError, match=r"does not accept model_kwargs \['kernel_size_typo'\]"):
        build_timm_model(
            "convnext_atto",
            num_classes=10,
            image_size=32,
            model_kwargs={"drop_path_rate": 0.1, "kernel_size_typo": 3},
        )


@pytest.mark.parametrize(
    ("kernel_sizes", "fails_at"),
    [
        (4, "fails on a 3x32x32 input"),
        (2, "fails on a 3x32x32 input"),
        (0, "fails on a 3x32x32 input"),
        (-1, "cannot build model"),
        ([7, 7, 7], "cannot build model"),
    ],
)
def test_model_kwargs_that_break_the_model_are_a_config_error(kernel_sizes, fails_at):
    """timm accepts these kernel sizes and the model breaks later (at construction or in the first
    forward); the error names the model, the kwargs and what to check."""
    with pytest.raises(ConfigError) as info:
        build_timm_model(
            "convnext_atto", num_classes=10, image_size=32, model_kwargs={"kernel_sizes": kernel_sizes}
        )
    message = str(info.value)
    assert (
        fails_at in message and "'convnext_atto'" in message and f"'kernel_sizes': {kernel_sizes}" in message
    )
    assert "kernel sizes" in message and "\n" not in message


def test_the_forward_check_leaves_the_model_and_the_rng_as_they_were():
    torch.manual_seed(0)
    model = build_timm_model("convnext_atto", num_classes=10, image_size=32, model_kwargs={"kernel_sizes": 5})
    after_ours = torch.get_rng_state()
    torch.manual_seed(0)
    reference = timm.create_model("convnext_atto", num_classes=10, kernel_sizes=5)
    assert torch.equal(after_ours, torch.get_rng_state())  # the check draws no random numbers
    assert model.training
    for (name, ours), (_, theirs) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(ours, theirs), name  # same init; no buffer changed by the forward pass


@pytest.mark.parametrize("key", ["num_classes", "pretrained", "in_chans"])
def test_reserved_kwargs_are_refused(key):
    with pytest.raises(ConfigError, match=key):
        build_timm_model("convnext_atto", num_classes=10, model_kwargs={key: 3})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"optimizer": "adamm"}, "unknown optimizer 'adamm'.*adam"),
        ({"lr": 0}, "lr must be > 0"),
        ({"weight_decay": -1}, "weight_decay"),
        ({"warmup_epochs": -1}, "warmup_epochs"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"mixup_alpha": -0.1}, "mixup_alpha"),
        ({"mixup_prob": 2}, "mixup_prob"),
        ({"num_classes": 1}, "num_classes"),
        ({"optimizer": "sgd", "momentum": -1}, "momentum must be >= 0, got -1"),
        ({"warmup_lr": -1}, "warmup_lr .* >= 0"),
        ({"min_lr": -1}, "min_lr"),
        ({"mixup_switch_prob": 1.5}, "mixup_switch_prob"),
        ({"in_chans": 0}, "in_chans"),
    ],
)
def test_out_of_range_hyperparameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ImageClassifier(**kwargs)


def test_channels_last_model_and_forward():
    module = ImageClassifier(num_classes=10, image_size=32, channels_last=True)
    conv = module.model.stem[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert module(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def _attach_fake_trainer(module, steps, epochs):
    module._trainer = SimpleNamespace(estimated_stepping_batches=steps, max_epochs=epochs)


def test_optimizer_excludes_norms_and_biases_from_weight_decay():
    module = ImageClassifier(num_classes=10, weight_decay=0.05)
    _attach_fake_trainer(module, 100, 10)
    optimizer = module.configure_optimizers()["optimizer"]
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, param in module.model.named_parameters():
        assert (id(param) in decayed) == (param.ndim > 1), name


def test_sgd_is_selectable():
    module = ImageClassifier(num_classes=10, optimizer="sgd", lr=0.1)
    _attach_fake_trainer(module, 10, 1)
    optimizer = module.configure_optimizers()["optimizer"]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["momentum"] == 0.9


def test_per_step_warmup_then_cosine():
    module = ImageClassifier(num_classes=10, lr=1e-3, warmup_epochs=1, warmup_lr=1e-6, min_lr=1e-5)
    _attach_fake_trainer(module, steps=100, epochs=10)  # 10 steps per epoch
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    lrs = []
    for step in range(101):
        scheduler.step_update(num_updates=step)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-6)
    assert all(a < b for a, b in itertools.pairwise(lrs[:11]))  # linear warm-up over 10 steps
    assert lrs[10] == pytest.approx(1e-3) and max(lrs) == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))  # cosine decay per step
    assert lrs[-1] == pytest.approx(1e-5, rel=0.05)


def test_mixup_training_step_uses_soft_targets():
    module = ImageClassifier(num_classes=10, mixup_alpha=0.8, cutmix_alpha=1.0)
    module.log = lambda *a, **k: None
    images, labels = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    loss = module.training_step((images, labels), 0)
    assert torch.isfinite(loss) and loss.requires_grad


def test_predict_step_returns_probabilities():
    module = ImageClassifier(num_classes=10)
    out = module.predict_step((torch.randn(3, 3, 32, 32), torch.zeros(3, dtype=torch.long)), 0)
    torch.testing.assert_close(out["probs"].sum(-1), torch.ones(3))
    assert out["preds"].shape == (3,)
