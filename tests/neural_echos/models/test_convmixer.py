"""ConvMixer of any size (neural_echos/models/convmixer.py): the size-dependent cfg and feature defaults."""

import pytest
import timm
import torch

import neural_echos.models  # noqa: F401  (registers convmixer with timm)
from neural_echos.models.convmixer import feature_blocks


@pytest.mark.parametrize("patch", [2, 4, 7, 14])
def test_pool_size_follows_the_patch_size(patch):
    model = timm.create_model("convmixer", patch_size=patch, device="meta")
    feats = model.forward_features(torch.empty(1, *model.pretrained_cfg["input_size"], device="meta"))
    assert tuple(feats.shape[-2:]) == model.pretrained_cfg["pool_size"] == (224 // patch, 224 // patch)
    assert timm.create_model(
        "convmixer", patch_size=patch, pretrained_cfg_overlay={"crop_pct": 1.0}, device="meta"
    ).pretrained_cfg["pool_size"] == (224 // patch, 224 // patch)


@pytest.mark.parametrize(
    "depth, blocks",
    [
        (8, (1, 3, 5, 7)),
        (32, (7, 15, 23, 31)),
        (5, (0, 1, 2, 4)),
        (4, (0, 1, 2, 3)),
        (3, (0, 1, 2)),
        (1, (0,)),
    ],
)
def test_feature_blocks_end_at_the_last_block(depth, blocks):
    assert feature_blocks(depth) == blocks


def test_features_only_defaults_and_out_indices():
    default = timm.create_model("convmixer", dim=32, depth=8, features_only=True)
    assert default.feature_info.module_name() == ["blocks.1", "blocks.3", "blocks.5", "blocks.7"]
    chosen = timm.create_model("convmixer", dim=32, depth=8, features_only=True, out_indices=(0, 2))
    assert chosen.feature_info.module_name() == ["blocks.0", "blocks.2"]
    outs = chosen(torch.randn(1, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 16, 16)] * 2


def test_one_name_and_no_weights():
    assert "convmixer_256_8" not in timm.list_models()  # configs use `convmixer` with its kwargs
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("convmixer", pretrained=True)
