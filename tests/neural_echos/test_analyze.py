"""The ``analyze`` command: outputs, inputs (timm, Lightning, unknown models) and every error path."""

import csv
import json
import os
import time

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from neural_echos.analyze import AnalysisError, analyze, main
from neural_echos.plots import image_groups
from neural_echos.dog import dog_kernels


class Unknown(nn.Module):
    """A depthwise model this project has no code for (not in timm)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3)
        self.mix = nn.ModuleList([nn.Conv2d(16, 16, 5, groups=16, padding=2) for _ in range(3)])
        self.head = nn.Linear(16, 10)


@pytest.fixture(scope="module")
def atto_pth(atto, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "convnext_atto.pth"
    torch.save(atto.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def lightning_ckpt(atto, tmp_path_factory):
    """A fake Lightning checkpoint whose kernels are DoGs, 70 % on-center."""
    generator = torch.Generator().manual_seed(0)
    state_dict = {}
    for key, value in atto.state_dict().items():
        if key.endswith("conv_dw.weight"):
            n = value.shape[0]
            on = torch.rand(n, generator=generator) < 0.7
            value = dog_kernels(0.2 + 0.6 * torch.rand(n, generator=generator), 7, on_center=on)[:, None]
        state_dict[f"model.{key}"] = value
    path = tmp_path_factory.mktemp("ckpt") / "epoch=0-step=1.ckpt"
    checkpoint = {
        "state_dict": state_dict,
        "hyper_parameters": {"model_name": "convnext_atto", "lr": 1e-3},
        "epoch": 0,
        "global_step": 1,
        "pytorch-lightning_version": "2.6.0",
    }
    torch.save(checkpoint, path)
    return path


def check_outputs(out, summary):
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["kernels"] == summary["kernels"]
    expected_keys = {"kernels", "proportions", "layers", "by_kernel_size", "centroids", "method", "source"}
    assert expected_keys | {"files"} <= set(on_disk)
    assert set(on_disk["proportions"]) == {"on_center", "off_center", "other"}
    assert sum(on_disk["proportions"].values()) == pytest.approx(1.0)
    assert sum(layer["kernels"] for layer in on_disk["layers"]) == on_disk["kernels"]
    for layer in on_disk["layers"]:
        assert sum(layer["proportions"].values()) == pytest.approx(1.0)
        with (out / layer["csv"]).open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == layer["kernels"]
        assert {row["class"] for row in rows} <= {"on_center", "off_center", "other"}
        assert (out / layer["grid"]).exists()
    for name in [*on_disk["files"]["grids"], "proportions.png", "centroids.png"]:
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG"
    return on_disk


@pytest.mark.parametrize("method", ["kmeans", "template"])
def test_timm_state_dict(atto_pth, tmp_path, method):
    summary = analyze(checkpoint=atto_pth, out=tmp_path, method=method)
    on_disk = check_outputs(tmp_path, summary)
    assert on_disk["kernels"] == 1840 and len(on_disk["layers"]) == 12
    assert on_disk["layers"][0]["name"] == "stages.0.blocks.0.conv_dw"
    assert on_disk["proportions"]["other"] > 0.97  # random initialisation
    assert on_disk["source"]["checkpoint"] == str(atto_pth) and on_disk["source"]["model"] is None
    header = (tmp_path / on_disk["layers"][0]["csv"]).read_text().splitlines()[0]
    if method == "template":
        assert header == "index,class,category,correlation,template"
        assert "other_explained" in on_disk and "detailed_proportions" in on_disk
    else:
        assert header == "index,class,cluster,score"
        assert on_disk["n_clusters"] == 3 and len(on_disk["centroids"]) == 3


def test_lightning_checkpoint_with_and_without_model_code(lightning_ckpt, tmp_path):
    from_file = analyze(checkpoint=lightning_ckpt, out=tmp_path / "file")
    check_outputs(tmp_path / "file", from_file)
    assert from_file["source"]["format"] == "lightning"
    assert from_file["proportions"]["on_center"] == pytest.approx(0.7, abs=0.04)
    assert from_file["proportions"]["other"] < 0.01
    assert from_file["layers"][0]["name"] == "stages.0.blocks.0.conv_dw"  # "model." stripped
    assert from_file["layers"][0]["key"] == "model.stages.0.blocks.0.conv_dw.weight"

    with_model = analyze(checkpoint=lightning_ckpt, model="convnext_atto", out=tmp_path / "model")
    assert with_model["proportions"] == from_file["proportions"]
    names = [layer["name"] for layer in from_file["layers"]]
    assert [layer["name"] for layer in with_model["layers"]] == names


def test_model_without_code(tmp_path):
    torch.save({"model": Unknown().state_dict()}, tmp_path / "unknown.pt")
    summary = analyze(checkpoint=tmp_path / "unknown.pt", out=tmp_path / "out", method="template")
    check_outputs(tmp_path / "out", summary)
    assert [layer["name"] for layer in summary["layers"]] == ["mix.0", "mix.1", "mix.2"]
    assert list(summary["by_kernel_size"]) == ["5x5"]


def test_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    save_file(Unknown().state_dict(), str(tmp_path / "unknown.safetensors"))
    summary = analyze(checkpoint=tmp_path / "unknown.safetensors", out=tmp_path / "out", method="kmeans")
    check_outputs(tmp_path / "out", summary)
    assert summary["source"]["format"] == "safetensors" and summary["kernels"] == 48


def test_fresh_model_is_seeded_and_leaves_global_rng_alone(tmp_path, capsys):
    state = torch.get_rng_state()
    assert main(["--model", "convnext_atto", "--out", str(tmp_path / "a"), "--method", "template"]) == 0
    assert main(["--model", "convnext_atto", "--out", str(tmp_path / "b"), "--method", "template"]) == 0
    assert torch.equal(torch.get_rng_state(), state)
    assert "1840 kernels in 12 layers" in capsys.readouterr().out
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert a["proportions"] == b["proportions"] and a["source"]["model"] == "convnext_atto"
    assert (tmp_path / "a" / "layers" / "000_stages.0.blocks.0.conv_dw.csv").read_text() == (
        tmp_path / "b" / "layers" / "000_stages.0.blocks.0.conv_dw.csv"
    ).read_text()


def test_layer_filter_cap_and_rerun_cleanup(atto_pth, tmp_path):
    analyze(checkpoint=atto_pth, out=tmp_path, method="template")
    summary = analyze(
        checkpoint=atto_pth, out=tmp_path, method="template", layers=r"stages\.3", max_kernels=16
    )
    names = [layer["name"] for layer in summary["layers"]]
    assert names == ["stages.3.blocks.0.conv_dw", "stages.3.blocks.1.conv_dw"]
    assert len(list((tmp_path / "layers").glob("*.csv"))) == 2  # the first run's files are gone
    with Image.open(tmp_path / summary["layers"][0]["grid"]) as image:
        assert image.height < 250  # 16 kernels, not 320


def test_deep_models_get_one_grid_per_stage():
    names = [f"stages.{s}.blocks.{b}.conv_dw" for s, depth in enumerate([3, 3, 27, 3]) for b in range(depth)]
    groups = image_groups(names)
    assert [group for group, _ in groups] == ["stages.0", "stages.1", "stages.2", "stages.3"]
    assert sum(len(indices) for _, indices in groups) == 36
    many = image_groups([f"blocks.{i}.conv" for i in range(40)])
    assert len(many) <= 24 and sum(len(indices) for _, indices in many) == 40


# --- errors: AnalysisError from analyze(); one line "error: ..." and exit status 2 from main -----


def run_main_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_error_missing_file(tmp_path, capsys):
    err = run_main_error(capsys, ["--checkpoint", str(tmp_path / "nope.ckpt"), "--out", str(tmp_path / "o")])
    assert "nope.ckpt" in err and "does not exist" in err


def test_error_random_bytes(tmp_path, capsys):
    (tmp_path / "junk.pth").write_bytes(os.urandom(2048))
    err = run_main_error(capsys, ["--checkpoint", str(tmp_path / "junk.pth"), "--out", str(tmp_path / "o")])
    assert "junk.pth" in err and "corrupt" in err


def test_error_truncated_zip(atto_pth, tmp_path, capsys):
    data = atto_pth.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 3])
    err = run_main_error(capsys, ["--checkpoint", str(tmp_path / "cut.ckpt"), "--out", str(tmp_path / "o")])
    assert "cut.ckpt" in err and "truncated" in err


def test_error_no_depthwise_kernels(tmp_path, capsys):
    torch.save(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Linear(8, 2)).state_dict(), tmp_path / "dense.pt")
    err = run_main_error(capsys, ["--checkpoint", str(tmp_path / "dense.pt"), "--out", str(tmp_path / "o")])
    assert "no depthwise kernel" in err


def test_error_model_without_depthwise_layers(capsys, tmp_path):
    err = run_main_error(capsys, ["--model", "resnet10t", "--out", str(tmp_path / "o")])
    assert "resnet10t" in err and "no depthwise" in err


def test_error_unknown_model_suggests_names(capsys, tmp_path):
    err = run_main_error(capsys, ["--model", "convnext_ato", "--out", str(tmp_path / "o")])
    assert "unknown timm model 'convnext_ato'" in err and "convnext_atto" in err


def test_error_checkpoint_does_not_fit_model(atto_pth, capsys, tmp_path):
    argv = ["--checkpoint", str(atto_pth), "--model", "convnext_femto", "--out", str(tmp_path)]
    err = run_main_error(capsys, argv)
    assert "does not fit timm model 'convnext_femto'" in err and "drop --model" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "nothing to analyse"),
        (["--model", "convnext_atto", "--method", "dbscan"], "unknown method 'dbscan'"),
        (["--model", "convnext_atto", "--threshold", "0"], "threshold"),
        (["--model", "convnext_atto", "--threshold", "1.5"], "threshold"),
        (["--model", "convnext_atto", "--clusters", "1"], "clusters"),
        (["--model", "convnext_atto", "--max-kernels", "0"], "max-kernels"),
        (["--model", "convnext_atto", "--layers", "("], "regular expression"),
    ],
)
def test_error_bad_arguments(argv, message, capsys, tmp_path):
    assert message in run_main_error(capsys, [*argv, "--out", str(tmp_path / "o")])


def test_analyze_raises_analysis_error(tmp_path):
    with pytest.raises(AnalysisError, match="nothing to analyse"):
        analyze(out=tmp_path)
    assert issubclass(AnalysisError, ValueError)


@pytest.mark.slow
def test_convnext_tiny_checkpoint_under_ten_seconds(tmp_path):
    """Both methods on a convnext_tiny state dict (6,624 kernels), PNGs included, in under 10 s."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(timm.create_model("convnext_tiny", pretrained=False).state_dict(), tmp_path / "tiny.pth")
    start = time.perf_counter()
    for method in ("kmeans", "template"):
        summary = analyze(checkpoint=tmp_path / "tiny.pth", out=tmp_path / method, method=method)
        assert summary["kernels"] == 6624
    elapsed = time.perf_counter() - start
    assert elapsed < 10, elapsed
    assert np.isclose(sum(summary["proportions"].values()), 1.0)
