"""timm's model contracts, for every model this project registers (models/: HorNet, ConvMixer).

The same contracts as timm's own ``tests/test_models.py`` (which ``scripts/timm_model_tests.sh``
runs in full on our models), kept fast here: construction on the meta device at full size,
everything that computes on real tensors at a reduced size (the registered entry point with
depth and width overridden: the same code paths) and 64x64 inputs. The helpers are timm's
where the installed package has them: its FX feature extractor with timm's leaf
registrations, ``set_scriptable``, ``FeatureInfo``, ``get_device_dtype``.
"""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from timm.models import FeatureInfo
from timm.models._features_fx import create_feature_extractor, get_graph_node_names

import neural_echos.models  # noqa: F401  (registers our models with timm)

OUR_MODELS = sorted(
    name
    for name in timm.list_models()
    if timm.models.model_entrypoint(name).__module__.startswith("neural_echos.models.")
)
# reduced for the tests that compute: one block per stage at half the width (HorNet), 5 narrow
# blocks (ConvMixer); the variants keep what tells them apart (GF filters, small = 1.5x tiny)
SMALL = {
    name: {"depths": (1, 1, 1, 1), "base_dim": 32 if "tiny" in name else 48}
    for name in OUR_MODELS
    if name.startswith("hornet_")
}
SMALL["convmixer"] = {"dim": 64, "depth": 5}
SIZE = 64


def _small(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, **SMALL[name], **kwargs)


def test_registered_models():
    # one name per concept: configs use `convmixer` with kwargs, there is no fixed-size alias
    assert OUR_MODELS == [
        "convmixer",
        "hornet_small_7x7",
        "hornet_small_gf",
        "hornet_tiny_7x7",
        "hornet_tiny_gf",
    ]
    assert set(SMALL) == set(OUR_MODELS)


@pytest.mark.parametrize("name", OUR_MODELS)
def test_meta_device_construction_and_default_cfg(name):
    model = timm.create_model(name, device="meta", dtype=torch.float32).eval()  # full size, no allocation
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    assert all(t.dtype == torch.float32 for t in tensors if t.is_floating_point())
    cfg = model.pretrained_cfg
    assert model.in_chans == cfg["input_size"][0]
    x = torch.empty(1, *cfg["input_size"], device="meta")
    feats = model.forward_features(x)
    assert tuple(feats.shape[1:]) == (model.num_features, *cfg["pool_size"])
    assert model.forward_head(feats, pre_logits=True).shape == (1, model.head_hidden_size)
    state = model.state_dict()
    assert cfg["first_conv"] + ".weight" in state and cfg["classifier"] + ".weight" in state
    with pytest.raises(TypeError):
        timm.create_model(name, device="meta", not_a_model_arg=1)
    # a new classifier takes the model's device and dtype
    model.to(dtype=torch.float64)
    model.reset_classifier(3)
    head = list(model.get_classifier().parameters())
    assert head and all(p.device.type == "meta" and p.dtype == torch.float64 for p in head)
    # inside a device context too (timm's factory path)
    with torch.device("meta"):
        assert next(timm.create_model(name).parameters()).device.type == "meta"


@pytest.mark.parametrize("name", [n for n in OUR_MODELS if n.startswith("hornet_")])
def test_hornet_meta_then_to_empty_and_init_weights(name):
    model = timm.create_model(name, device="meta", dtype=torch.float64, num_classes=5, **SMALL[name])
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        for tensor in model.parameters():
            tensor.fill_(float("nan"))
    model.init_weights()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    block = model.stages[0].blocks[0]
    assert torch.all(block.gamma1 == 1e-6) and torch.all(model.stem[1].weight == 1)
    assert torch.isfinite(model(torch.randn(1, 3, SIZE, SIZE, dtype=torch.float64))).all()


@pytest.mark.parametrize("name", OUR_MODELS)
def test_torchscript(name):
    model = _small(name).eval()
    with timm.set_scriptable(True):
        scripted_src = _small(name).eval()
    scripted_src.load_state_dict(model.state_dict())
    scripted = torch.jit.script(scripted_src)
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))


@pytest.mark.parametrize("name", OUR_MODELS)
def test_fx_forward_and_backward(name):
    with timm.set_scriptable(True):
        model = _small(name, num_classes=7).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    train_nodes, eval_nodes = get_graph_node_names(model)
    with torch.no_grad():
        expected = model(x)
        fx_model = create_feature_extractor(model, return_nodes={eval_nodes[-1]: "out"})
        torch.testing.assert_close(fx_model(x)["out"], expected, rtol=1e-4, atol=1e-5)
        # the traced graph scripts too (timm's FX + TorchScript test)
        torch.testing.assert_close(torch.jit.script(fx_model)(x)["out"], expected, rtol=1e-4, atol=1e-5)
    fx_train = create_feature_extractor(model.train(), return_nodes={train_nodes[-1]: "out"})
    fx_train(x)["out"].mean().backward()
    missing = [n for n, p in fx_train.named_parameters() if p.grad is None]
    assert not missing, missing


@pytest.mark.parametrize("name", OUR_MODELS)
def test_forward_intermediates_and_pruning(name):
    model = _small(name).eval()
    info = FeatureInfo(model.feature_info, list(range(len(model.feature_info))))
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        final, taps = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
        assert [t.shape[1] for t in taps] == info.channels()
        assert [SIZE // t.shape[-1] for t in taps] == info.reduction()
        last = len(taps) - 1
        for i in range(last + 1):
            early = model.forward_intermediates(x, indices=[i], stop_early=True, intermediates_only=True)
            torch.testing.assert_close(early[0], taps[i])
            pruned = copy.deepcopy(model)
            kept = pruned.prune_intermediate_layers([i], prune_norm=True)
            tap = pruned.forward_intermediates(x, indices=kept, intermediates_only=True)[0]
            torch.testing.assert_close(tap, taps[i])
            torch.testing.assert_close(pruned.forward_features(x), taps[i])  # features end at the tap
            assert pruned.num_features == info.channels()[i] and pruned(x).shape == taps[i].shape
        pruned = copy.deepcopy(model)
        pruned.prune_intermediate_layers([last], prune_head=False)
        torch.testing.assert_close(pruned(x), model(x))  # nothing to prune: output unchanged
    model.set_grad_checkpointing()
    model.train()
    final, taps = model.forward_intermediates(x)
    (final.sum() + sum(t.sum() for t in taps)).backward()


@pytest.mark.parametrize("name", OUR_MODELS)
def test_reset_classifier_and_pre_logits(name):
    model = _small(name, num_classes=10).eval()
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        feats = model.forward_features(x)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model.head_hidden_size) and model(x).shape == (2, 10)
        model.reset_classifier(0)
        assert model.num_classes == 0
        torch.testing.assert_close(model(x), pre)  # no classifier: forward is pre_logits
        model.reset_classifier(0, "")
        assert model(x).shape == feats.shape  # no pooling either: the unpooled features
        model.reset_classifier(7, "avg")
        assert model(x).shape == (2, 7)
    headless = timm.create_model(name, num_classes=0, global_pool="", **SMALL[name]).eval()
    with torch.no_grad():
        assert headless(x).shape == feats.shape


@pytest.mark.parametrize("feature_cls", [None, "getter"])
@pytest.mark.parametrize("name", OUR_MODELS)
def test_features_only_cover_the_network(name, feature_cls):
    kwargs = {} if feature_cls is None else {"feature_cls": feature_cls}
    extractor = _small(name, features_only=True, **kwargs).eval()
    model = _small(name).eval()  # same seed: same weights
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        outs = extractor(x)
        final = model.forward_features(x)
    assert len(outs) >= 3 and [o.shape[1] for o in outs] == extractor.feature_info.channels()
    assert [SIZE // o.shape[-1] for o in outs] == extractor.feature_info.reduction()
    torch.testing.assert_close(outs[-1], final)  # the last feature is the network's last block
