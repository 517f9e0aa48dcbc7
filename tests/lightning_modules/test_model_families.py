"""Every depthwise family the paper studies trains through the same LightningModule, and the
DoG initialiser and the kernel analysis find its depthwise layers."""

import pytest
import torch

from lightning_modules import ImageClassifier
from neural_echos import get_classifier, initialize_depthwise, kernels_from_module

FAMILIES = [
    ("convnext_atto", {"kernel_sizes": 9}, 9),
    ("convnext_atto", {"kernel_sizes": 11}, 11),
    ("convmixer", {"dim": 64, "depth": 2, "kernel_size": 7, "patch_size": 4}, 7),
    ("mobilenetv2_050", {}, 3),
    ("mobilenetv3_small_050", {}, 3),
    ("efficientnet_b0", {}, 3),
    ("hornet_tiny_7x7", {}, 7),
]


@pytest.mark.parametrize("name, kwargs, size", FAMILIES, ids=[f"{n}-k{s}" for n, _, s in FAMILIES])
def test_family_trains_and_its_depthwise_layers_are_found(name, kwargs, size):
    module = ImageClassifier(model_name=name, model_kwargs=kwargs, num_classes=10, image_size=32)
    summary = initialize_depthwise(module.model, "dog", seed=0, model_name=name)
    assert summary.n_layers > 0 and any(layer.kernel_size == (size, size) for layer in summary.layers)
    report = get_classifier("template").classify(kernels_from_module(module.model))
    on_off = report.proportions()
    assert on_off["on_center"] + on_off["off_center"] > 0.5  # DoG kernels read back as on/off-center
    module.log = lambda *args, **kwargs: None
    images, labels = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    loss = module.training_step((images, labels), 0)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [
        layer.weight.grad
        for name_, layer in module.model.named_modules()
        if name_ in {l.name for l in summary.layers}
    ]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
