"""Official HorNet weights: pretrained cfgs, reading the files, and the key mapping.

No network: the checkpoints are written here in the official layout (tests/neural_echos/models/
official_hornet.py, from the official module structure) with random values, and checked
against an independent functional forward pass of the official architecture. The download
itself (``pretrained=True`` online) is timm's code; here the file is put where timm's cache
would hold it, and downloading is made to fail so a test cannot reach the network.
"""

from __future__ import annotations

import json

import pytest
import timm
import timm.models._hub as timm_hub
import torch

import neural_echos.models  # noqa: F401  (registers the HorNet variants with timm)
from neural_echos.models.hornet import HorNetCheckpointError, checkpoint_filter_fn, read_checkpoint

VARIANTS = ["hornet_tiny_7x7", "hornet_tiny_gf", "hornet_small_7x7", "hornet_small_gf"]
FAST_DEPTHS = (1, 1, 2, 1)  # every stage, a block index > 0, the GF stages; far fewer blocks
OFFICIAL_URLS = {  # the Model Zoo table of github.com/raoyongming/HorNet (README)
    "hornet_tiny_7x7": "https://cloud.tsinghua.edu.cn/f/bac9690c72944d19aca1/?dl=1",
    "hornet_tiny_gf": "https://cloud.tsinghua.edu.cn/f/460e759c82324ea6bfa3/?dl=1",
    "hornet_small_7x7": "https://cloud.tsinghua.edu.cn/f/8ef64277da0e469ea857/?dl=1",
    "hornet_small_gf": "https://cloud.tsinghua.edu.cn/f/959603ca287d4c09ad49/?dl=1",
}


@pytest.fixture
def no_download(monkeypatch):
    def refuse(url, *args, **kwargs):
        raise AssertionError(f"test tried to download {url}")

    monkeypatch.setattr(timm_hub, "download_url_to_file", refuse)


def _checkpoint(official, tmp_path, variant, depths=FAST_DEPTHS, **kwargs):
    state = official.random_official_state_dict(variant, seed=1, depths=depths, **kwargs)
    path = tmp_path / f"{variant}.pth"
    official.write_official_checkpoint(path, state)
    return state, path


def _from_file(variant, path, depths=FAST_DEPTHS, **kwargs):
    return timm.create_model(
        variant, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, depths=depths, **kwargs
    ).eval()


def test_pretrained_cfgs_point_at_the_official_files():
    assert sorted(timm.list_pretrained("hornet*")) == sorted(f"{v}.in1k" for v in VARIANTS)
    for variant in VARIANTS:
        cfg = timm.models.get_pretrained_cfg(variant)  # the default tag
        assert cfg.tag == "in1k" and cfg.custom_load and cfg.num_classes == 1000
        assert cfg.url == (OFFICIAL_URLS[variant], f"{variant}_in1k.pth")
        assert cfg.origin_url == "https://github.com/raoyongming/HorNet"


@pytest.mark.parametrize("variant", VARIANTS)
def test_filter_maps_the_full_official_layout_exactly(official, variant):
    """All official keys land on our keys with the same shapes, none left over or missing."""
    model = timm.create_model(variant, device="meta")
    official_state = official.random_official_state_dict(variant, device="meta")
    mapped = checkpoint_filter_fn(official_state, model)
    ours = model.state_dict()
    assert len(mapped) == len(official_state)
    assert sorted(mapped) == sorted(ours)
    assert all(mapped[k].shape == ours[k].shape for k in ours)
    # and through the whole checkpoint dict as saved ({'model': ...}); a state dict of ours passes unchanged
    assert sorted(checkpoint_filter_fn({"model": official_state, "epoch": 1}, model)) == sorted(ours)
    assert checkpoint_filter_fn(ours, model) is ours


@pytest.mark.parametrize("variant", ["hornet_tiny_7x7", "hornet_tiny_gf"])
def test_official_file_loads_strictly_and_computes_the_official_function(official, tmp_path, variant):
    state, path = _checkpoint(official, tmp_path, variant)
    model = _from_file(variant, path)  # pretrained_cfg_overlay=dict(file=...): offline
    direct = timm.create_model(variant, depths=FAST_DEPTHS).eval()
    direct.load_state_dict(checkpoint_filter_fn(state, direct), strict=True)
    for key, value in direct.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = torch.randn(2, 3, 64, 64)  # GF filters resized (4x3, 2x2 spectra)
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, direct(x))
    torch.testing.assert_close(out, official.official_forward(state, x, variant), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["hornet_tiny_gf"])  # its stages 1-2 are the 7x7 variant's
def test_full_size_official_file_at_224(official, tmp_path, variant):
    """A real variant at full depth and 224x224 (GF filters at their stored size)."""
    state, path = _checkpoint(official, tmp_path, variant, depths=official.DEPTHS)
    model = _from_file(variant, path, depths=official.DEPTHS)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = official.official_forward(state, x, variant)
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


def test_pretrained_true_reads_the_official_file_from_timms_cache(
    official, tmp_path, monkeypatch, no_download
):
    variant = "hornet_tiny_gf"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    state = official.random_official_state_dict(variant, seed=2, depths=FAST_DEPTHS)
    official.write_official_checkpoint(cache / f"{variant}_in1k.pth", state)
    model = timm.create_model(variant, pretrained=True, depths=FAST_DEPTHS)
    assert torch.equal(model.stem[0].weight, state["downsample_layers.0.0.weight"])
    assert torch.equal(model.head.fc.weight, state["head.weight"])
    assert torch.equal(
        model.stages[2].blocks[1].gnconv.dwconv.local_conv.weight, state["stages.2.1.gnconv.dwconv.dw.weight"]
    )


def test_pretrained_adapts_in_chans_and_num_classes(official, tmp_path):
    variant = "hornet_tiny_7x7"
    state, path = _checkpoint(official, tmp_path, variant)
    model = _from_file(variant, path, in_chans=1, num_classes=5)
    # timm's adaptation: one input channel gets the sum of the RGB filters; a new 5-way classifier
    rgb_sum = state["downsample_layers.0.0.weight"].sum(1, keepdim=True)
    torch.testing.assert_close(model.stem[0].weight, rgb_sum)
    assert model.head.fc.out_features == 5
    assert torch.equal(model.head.norm.weight, state["norm.weight"])
    headless = _from_file(variant, path, num_classes=0)
    assert isinstance(headless.head.fc, torch.nn.Identity)
    assert torch.equal(headless.head.norm.bias, state["norm.bias"])


def test_features_only_pretrained(official, tmp_path):
    variant = "hornet_tiny_gf"
    _state, path = _checkpoint(official, tmp_path, variant)
    features = _from_file(variant, path, features_only=True)
    full = _from_file(variant, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(features(x)[-1], full.forward_features(x))


def test_a_checkpoint_of_our_own_layout_loads_too(tmp_path):
    source = timm.create_model("hornet_tiny_gf", depths=FAST_DEPTHS, num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "ours.pth")
    loaded = _from_file("hornet_tiny_gf", tmp_path / "ours.pth")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_in_memory_state_dict_goes_through_the_filter(official):
    state = official.random_official_state_dict("hornet_tiny_7x7", depths=FAST_DEPTHS)
    model = timm.create_model(
        "hornet_tiny_7x7", pretrained=True, pretrained_cfg_overlay={"state_dict": state}, depths=FAST_DEPTHS
    )
    assert torch.equal(model.stages[3].blocks[0].mlp.fc2.weight, state["stages.3.0.pwconv2.weight"])


def test_read_checkpoint_prefers_model_as_the_official_evaluation(official, tmp_path):
    state = official.random_official_state_dict("hornet_tiny_7x7", depths=FAST_DEPTHS)
    ema = {k: v + 1 for k, v in state.items()}
    torch.save({"model": state, "model_ema": ema, "epoch": 3}, tmp_path / "both.pth")
    read = read_checkpoint(tmp_path / "both.pth")
    assert all(torch.equal(read[k], state[k]) for k in state)
    # the same through timm's file overlay (timm's generic file loader would take model_ema)
    model = _from_file("hornet_tiny_7x7", tmp_path / "both.pth")
    assert torch.equal(model.head.fc.weight, state["head.weight"])


class _Payload:
    ran = False

    def __reduce__(self):
        return (_Payload._run, ())

    @staticmethod
    def _run():
        _Payload.ran = True
        return "pwned"


def test_bad_files_give_one_clear_error(tmp_path):
    with pytest.raises(HorNetCheckpointError, match="not found: .*missing.pth"):
        _from_file("hornet_tiny_7x7", tmp_path / "missing.pth")
    (tmp_path / "page.pth").write_text("<html>Tsinghua Cloud: file not found</html>")
    with pytest.raises(HorNetCheckpointError, match=r"cannot read HorNet checkpoint .*page.pth .*overlay"):
        _from_file("hornet_tiny_7x7", tmp_path / "page.pth")
    torch.save({"model": {"x": torch.zeros(1)}, "args": _Payload()}, tmp_path / "pickle.pth")
    with pytest.raises(HorNetCheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "pickle.pth")
    assert not _Payload.ran  # weights_only: the pickled call is refused, not executed


def test_wrong_variant_checkpoint_fails_loudly(official, tmp_path):
    _, path = _checkpoint(official, tmp_path, "hornet_small_7x7")
    with pytest.raises(RuntimeError, match="size mismatch"):
        _from_file("hornet_tiny_7x7", path)


@pytest.mark.slow
def test_analyze_reads_the_paper_s_hornet_kernels_from_an_official_file(official, tmp_path, capsys):
    """`run.py analyze --model hornet_tiny_7x7 --weights FILE` (what `--pretrained` downloads):
    the official file's depthwise kernels arrive in the analysis, layer by layer."""
    from neural_echos.dog import dog_kernels
    from neural_echos.tools.analyze import main

    state = official.random_official_state_dict("hornet_tiny_7x7")
    state["stages.0.0.gnconv.dwconv.weight"] = dog_kernels(torch.full((96,), 0.4), 7)[:, None]
    official.write_official_checkpoint(tmp_path / "hornet_tiny_7x7.pth", state)
    argv = [
        "--model",
        "hornet_tiny_7x7",
        "--weights",
        str(tmp_path / "hornet_tiny_7x7.pth"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    first, second = summary["layers"][:2]
    assert first["name"] == "stages.0.blocks.0.gnconv.dwconv" and first["proportions"]["on_center"] == 1.0
    assert second["proportions"]["other"] > 0.9  # the file's random kernels
