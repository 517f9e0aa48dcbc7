"""The ``analyze`` and ``survey`` commands: outputs, inputs (timm fresh and pretrained, our models and
checkpoints, unknown models, regular convolutions) and every error path."""

import csv
import json
import os

import pytest
import timm
import torch
from PIL import Image
from torch import nn

from neural_echos.classifiers import get_classifier
from neural_echos.dog import dog_kernels
from neural_echos.grids import image_groups
from neural_echos.tools.analyze import AnalysisError, Subject, analyze, main, survey, survey_main


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
        "hyper_parameters": {"model_name": "convnext_atto", "lr": 1e-3},  # no num_classes: not ours
        "epoch": 0,
        "global_step": 1,
        "pytorch-lightning_version": "2.6.0",
    }
    torch.save(checkpoint, path)
    return path


def check_outputs(out, summary):
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["kernels"] == summary["kernels"]
    expected_keys = {
        "kernels",
        "proportions",
        "chance",
        "excess",
        "thresholds",
        "layers",
        "by_kernel_size",
        "centroids",
        "method",
        "settings",
        "source",
    }
    assert expected_keys | {"files"} <= set(on_disk)
    assert set(on_disk["proportions"]) == set(on_disk["chance"]) == {"on_center", "off_center", "other"}
    assert sum(on_disk["proportions"].values()) == pytest.approx(1.0)
    assert sum(on_disk["chance"].values()) == pytest.approx(1.0)
    assert sum(layer["kernels"] for layer in on_disk["layers"]) == on_disk["kernels"]
    for layer in on_disk["layers"]:
        assert sum(layer["proportions"].values()) == pytest.approx(1.0)
        assert sum(layer["chance"].values()) == pytest.approx(1.0)
        with (out / layer["csv"]).open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == layer["kernels"]
        assert {row["class"] for row in rows} | {row["null_class"] for row in rows} <= {
            "on_center",
            "off_center",
            "other",
        }
        assert (out / layer["grid"]).exists()
    for name in [*on_disk["files"]["grids"], "proportions.png", "centroids.png"]:
        with Image.open(out / name) as image:
            image.verify()
            assert image.format == "PNG"
    return on_disk


@pytest.mark.parametrize("method", ["kmeans", "template"])
def test_timm_state_dict(atto_pth, tmp_path, method):
    summary = analyze(Subject(checkpoint=atto_pth), get_classifier(method), out=tmp_path)
    on_disk = check_outputs(tmp_path, summary)
    assert on_disk["kernels"] == 1840 and len(on_disk["layers"]) == 12
    assert on_disk["layers"][0]["name"] == "stages.0.blocks.0.conv_dw"
    assert on_disk["proportions"]["other"] > 0.97  # random initialisation
    assert on_disk["source"]["checkpoint"] == str(atto_pth) and on_disk["source"]["model"] is None
    header = (tmp_path / on_disk["layers"][0]["csv"]).read_text().splitlines()[0]
    if method == "template":
        assert header == (
            "index,class,detailed_class,score,antagonism,null_class,null_detailed_class,correlation,template"
        )
        assert "other_explained" in on_disk and "detailed_proportions" in on_disk
    else:
        assert header == "index,class,detailed_class,score,antagonism,null_class,null_detailed_class,cluster"
        # random kernels hold no polarity, so "auto" stops at its smallest k, the paper's 3
        assert on_disk["settings"]["n_clusters"] == "auto" and len(on_disk["centroids"]) == 3
    assert on_disk["thresholds"] == {"7x7": 0.5}


def test_lightning_checkpoint_with_and_without_model_code(lightning_ckpt, tmp_path):
    from_file = analyze(Subject(checkpoint=lightning_ckpt), out=tmp_path / "file")
    check_outputs(tmp_path / "file", from_file)
    assert from_file["source"]["format"] == "lightning"
    assert from_file["proportions"]["on_center"] == pytest.approx(0.7, abs=0.04)
    assert from_file["proportions"]["other"] < 0.01
    assert from_file["layers"][0]["name"] == "stages.0.blocks.0.conv_dw"  # "model." stripped
    assert from_file["layers"][0]["key"] == "model.stages.0.blocks.0.conv_dw.weight"

    with_model = analyze(Subject(checkpoint=lightning_ckpt, model="convnext_atto"), out=tmp_path / "model")
    assert with_model["proportions"] == from_file["proportions"]
    names = [layer["name"] for layer in from_file["layers"]]
    assert [layer["name"] for layer in with_model["layers"]] == names


def test_model_without_code(tmp_path):
    torch.save({"model": Unknown().state_dict()}, tmp_path / "unknown.pt")
    summary = analyze(
        Subject(checkpoint=tmp_path / "unknown.pt"), get_classifier("template"), tmp_path / "out"
    )
    check_outputs(tmp_path / "out", summary)
    assert [layer["name"] for layer in summary["layers"]] == ["mix.0", "mix.1", "mix.2"]
    assert list(summary["by_kernel_size"]) == ["5x5"]


def test_safetensors_file(tmp_path):
    from safetensors.torch import save_file

    save_file(Unknown().state_dict(), str(tmp_path / "unknown.safetensors"))
    summary = analyze(Subject(checkpoint=tmp_path / "unknown.safetensors"), out=tmp_path / "out")
    check_outputs(tmp_path / "out", summary)
    assert summary["source"]["format"] == "safetensors" and summary["kernels"] == 48


def test_fresh_model_is_seeded_and_leaves_global_rng_alone(tmp_path, capsys):
    state = torch.get_rng_state()
    assert main(["--model", "convnext_atto", "--out", str(tmp_path / "a"), "--method", "template"]) == 0
    assert main(["--model", "convnext_atto", "--out", str(tmp_path / "b"), "--method", "template"]) == 0
    assert torch.equal(torch.get_rng_state(), state)
    printed = capsys.readouterr().out
    assert "1840 depthwise kernels in 12 layers (template, threshold 7x7 0.50): on_center " in printed
    assert "(chance " in printed and "excess " in printed
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert a["proportions"] == b["proportions"] and a["source"]["model"] == "convnext_atto"
    assert (tmp_path / "a" / "layers" / "000_stages.0.blocks.0.conv_dw.csv").read_text() == (
        tmp_path / "b" / "layers" / "000_stages.0.blocks.0.conv_dw.csv"
    ).read_text()


def test_layer_filter_cap_and_rerun_cleanup(atto_pth, tmp_path):
    template = get_classifier("template")
    analyze(Subject(checkpoint=atto_pth), template, tmp_path)
    summary = analyze(Subject(checkpoint=atto_pth), template, tmp_path, layers=r"stages\.3", max_kernels=16)
    names = [layer["name"] for layer in summary["layers"]]
    assert names == ["stages.3.blocks.0.conv_dw", "stages.3.blocks.1.conv_dw"]
    assert len(list((tmp_path / "layers").glob("*.csv"))) == 2  # the first run's files are gone
    with Image.open(tmp_path / summary["layers"][0]["grid"]) as image:
        assert image.height < 400  # 16 kernels (4 rows, title and legend), not 320 (18 rows)


def test_a_rerun_removes_only_the_files_analyze_wrote(atto_pth, tmp_path):
    """The user's own files in --out, even with analyze-like names, survive any number of runs;
    a listed path that leaves the folder or is not analyze's is never removed."""
    template = get_classifier("template")
    own = [
        tmp_path / "grids" / "001_mine.png",
        tmp_path / "layers" / "002_notes.csv",
        tmp_path / "regular" / "000_x.csv",
        tmp_path / "keep.txt",
    ]
    for path in own:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("the user's")
    first = analyze(Subject(checkpoint=atto_pth), template, tmp_path)
    second = analyze(Subject(checkpoint=atto_pth), template, tmp_path, layers=r"stages\.3")
    assert all(path.read_text() == "the user's" for path in own)
    written = {*second["files"]["layers"], *second["files"]["grids"]}
    assert all((tmp_path / path).is_file() for path in written)
    assert not any(
        (tmp_path / path).exists() for path in {*first["files"]["layers"], *first["files"]["grids"]} - written
    )
    # a summary.json listing other paths (hand-edited or planted): none of them is removed
    outside = tmp_path.parent / f"{tmp_path.name}_outside.csv"
    outside.write_text("x")
    hostile = {
        "files": {
            "layers": ["../" + outside.name, "keep.txt", "layers/002_notes.csv/..", str(outside)],
            "grids": ["grids/001_mine.png.bak"],
        }
    }
    (tmp_path / "summary.json").write_text(json.dumps(hostile))
    analyze(Subject(checkpoint=atto_pth), template, tmp_path, layers=r"stages\.3")
    assert outside.exists() and all(path.read_text() == "the user's" for path in own)


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
        (["--model", "convnext_atto", "--threshold", "high"], "--threshold must be a number"),
        (["--model", "convnext_atto", "--alpha", "2"], "alpha"),
        (["--model", "convnext_atto", "--null-model", "shuffle"], "unknown null model"),
        (["--model", "convnext_atto", "--method", "template", "--clusters", "4"], "does not take"),
        (
            ["--model", "convnext_atto", "--include-regular", "--max-regular-kernels", "0"],
            "max-regular-kernels",
        ),
        (["--pretrained"], "nothing to analyse"),
        (["--checkpoint", "x.pt", "--pretrained"], "need --model"),
        (["--model", "convnext_atto", "--checkpoint", "x.pt", "--pretrained"], "pass one of them"),
        (["--model", "convnext_atto", "--weights", "no/such/file.safetensors"], "does not exist"),
        (["--model", "convnext_atto", "--layers", "("], "regular expression"),
    ],
)
def test_error_bad_arguments(argv, message, capsys, tmp_path):
    assert message in run_main_error(capsys, [*argv, "--out", str(tmp_path / "o")])


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--model", "convnext_atto", "--treshold", "0.6"],
            (
                "error: unrecognized arguments: --treshold 0.6; did you mean --threshold? "
                "(run `python run.py analyze --help` for the options)"
            ),
        ),
        (
            ["--model", "convnext_atto", "--max-bytes", "abc"],
            "argument --max-bytes: expected a positive whole number, got 'abc'",
        ),
        (
            ["--model", "convnext_atto", "--max-bytes", "-5"],
            "argument --max-bytes: must be a positive whole number",
        ),
        (
            ["--model", "convnext_atto", "--max-bytes", "0"],
            "argument --max-bytes: must be a positive whole number",
        ),
        (
            ["--model", "convnext_atto", "--max-file-bytes", "-1"],
            "argument --max-file-bytes: must be a positive whole",
        ),
        (
            ["--model", "convnext_atto", "--max-file-bytes=0"],
            "argument --max-file-bytes: must be a positive whole",
        ),
        (
            ["--model", "convnext_atto", "--zzz"],
            "unrecognized arguments: --zzz (run `python run.py analyze --help`",
        ),
        (["--model"], "argument --model: expected one argument"),
    ],
    ids=[
        "typo",
        "max-bytes-abc",
        "max-bytes-negative",
        "max-bytes-zero",
        "max-file-bytes-negative",
        "max-file-bytes-zero",
        "unknown",
        "missing-value",
    ],
)
def test_argparse_errors_are_one_line_without_usage(argv, message, capsys, tmp_path):
    """argparse's own errors: one `error:` line pointing at --help, not the 12-line usage."""
    err = run_main_error(capsys, [*argv, "--out", str(tmp_path / "o")] if argv != ["--model"] else argv)
    assert message in err and "usage:" not in err
    assert not (tmp_path / "o").exists()


def test_argparse_errors_of_run_py_analyze_and_survey(capsys):
    import run

    for argv, message in [
        (["analyze", "--model", "convnext_atto", "--treshold", "0.6"], "did you mean --threshold?"),
        (
            ["survey", "--modle", "convnext_atto"],
            (
                "unrecognized arguments: --modle convnext_atto; did you mean --model? "
                "(run `python run.py survey --help` for the options)"
            ),
        ),
        (
            ["survey", "--include-regular", "--max-regular-kernels", "many"],
            "argument --max-regular-kernels: invalid int",
        ),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run.main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    with pytest.raises(SystemExit) as exit_info:
        run.main(["analyze", "--help"])  # --help still prints the full help
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith("usage: run.py analyze") and "--max-file-bytes" in out


def test_argparse_errors_keep_the_traceback_on_request(monkeypatch):
    from neural_echos.errors import UsageError

    monkeypatch.setenv("NEURAL_ECHOS_TRACEBACK", "1")
    with pytest.raises(UsageError, match="did you mean --threshold"):
        main(["--model", "convnext_atto", "--treshold", "0.6"])


@pytest.mark.parametrize(
    "bound", ["max_bytes", "max_file_bytes", "max_memory", "max_layers", "max_kernel_side"]
)
@pytest.mark.parametrize("value", [0, -5])
def test_analyze_refuses_non_positive_bounds(bound, value, tmp_path):
    flag = "--" + bound.replace("_", "-")
    with pytest.raises(AnalysisError, match=f"{flag} must be a positive number; got {value}"):
        analyze(Subject(model="convnext_atto"), out=tmp_path / "o", **{bound: value})


def test_analyze_raises_analysis_error():
    with pytest.raises(AnalysisError, match="nothing to analyse"):
        Subject()
    assert issubclass(AnalysisError, ValueError)


# --- pretrained weights, our models and checkpoints, regular convolutions, surveys --------------


def test_pretrained_weights_from_a_local_file(atto, tmp_path, capsys):
    """--weights goes through timm's pretrained_cfg_overlay=dict(file=...): the kernels are the file's."""
    from safetensors.torch import save_file

    trained = {k: v.clone() for k, v in atto.state_dict().items()}
    trained["stages.0.blocks.0.conv_dw.weight"] = dog_kernels(torch.full((40,), 0.5), 7)[:, None]
    save_file(trained, str(tmp_path / "atto.safetensors"))
    argv = [
        "--model",
        "convnext_atto",
        "--weights",
        str(tmp_path / "atto.safetensors"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["source"]["init"].startswith("timm pretrained weights from")
    first = summary["layers"][0]
    assert first["proportions"]["on_center"] == 1.0 and first["chance"]["on_center"] < 0.5
    assert summary["layers"][1]["proportions"]["other"] > 0.95  # the file's random kernels elsewhere


def test_pretrained_offline_says_to_pass_a_file(tmp_path, capsys, monkeypatch):
    """What timm raises offline (huggingface_hub's LocalEntryNotFoundError, or urllib's URLError
    for plain URLs), simulated so the test never waits on the network."""
    import urllib.error

    import timm.models._hub as timm_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline_hub(*args, **kwargs):
        raise LocalEntryNotFoundError(
            "Cannot find the requested files in the disk cache and outgoing traffic has been disabled"
        )

    def offline_url(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(timm_hub, "hf_hub_download", offline_hub)
    monkeypatch.setattr(timm_hub, "download_url_to_file", offline_url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    err = run_main_error(capsys, ["--model", "convnext_atto", "--pretrained", "--out", str(tmp_path / "o")])
    assert "cannot get timm's pretrained weights for 'convnext_atto'" in err and "--weights FILE" in err


@pytest.fixture(scope="module")
def weights_files(atto, tmp_path_factory):
    """A real .safetensors and .pth (zip and legacy format) of convnext_atto, for cutting."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("weights")
    save_file(atto.state_dict(), str(folder / "atto.safetensors"))
    torch.save(atto.state_dict(), folder / "atto.pth")
    torch.save(atto.state_dict(), folder / "legacy.pth", _use_new_zipfile_serialization=False)
    return folder


@pytest.mark.parametrize(
    "name, make, message",
    [
        (
            "junk.pth",
            lambda f: b"this is not a weights file\n" * 100,
            "neither a torch file nor a safetensors file",
        ),
        ("junk.bin", lambda f: b"\x80garbage" * 100, "neither a torch file nor a safetensors file"),
        (
            "junk.safetensors",
            lambda f: b"this is not a weights file\n" * 100,
            "could not be read as a safetensors file",
        ),
        ("empty.pth", lambda f: b"", "it is empty"),
        (
            "cut.safetensors",
            lambda f: (f / "atto.safetensors").read_bytes()[:50_000],
            "could not be read as a safetensors",
        ),
        ("cut.pth", lambda f: (f / "atto.pth").read_bytes()[:50_000], "zip archive without its end"),
        (
            "cut_legacy.pth",
            lambda f: (f / "legacy.pth").read_bytes()[:50_000],
            "could not be read as a weights file",
        ),
        ("renamed.pth", lambda f: (f / "atto.safetensors").read_bytes(), "rename it to end in .safetensors"),
    ],
    ids=[
        "garbage",
        "garbage-pickle-byte",
        "garbage-safetensors",
        "empty",
        "truncated-safetensors",
        "truncated-pth",
        "truncated-legacy-pth",
        "safetensors-named-pth",
    ],
)
def test_weights_that_are_no_weights_file(name, make, message, weights_files, tmp_path, capsys):
    """Not torch's "retry with weights_only=False" (no option does that) but what the file is and what is taken."""
    (tmp_path / name).write_bytes(make(weights_files))
    err = run_main_error(
        capsys, ["--model", "convnext_atto", "--weights", str(tmp_path / name), "--out", str(tmp_path / "o")]
    )
    assert f"weights file {str(tmp_path / name)!r}" in err and message in err, err
    assert ".safetensors file or a torch state dict" in err and "weights_only" not in err
    assert not (tmp_path / "o").exists()


def test_weights_file_holding_python_objects_points_at_checkpoint(atto, tmp_path, capsys):
    state_dict = {f"model.{k}": v for k, v in atto.state_dict().items()}
    torch.save({"state_dict": state_dict, "hyper_parameters": {"act": nn.ReLU()}}, tmp_path / "mine.ckpt")
    err = run_main_error(
        capsys,
        ["--model", "convnext_atto", "--weights", str(tmp_path / "mine.ckpt"), "--out", str(tmp_path / "o")],
    )
    assert "holds Python objects besides tensors" in err and "--checkpoint FILE --model convnext_atto" in err
    assert "weights_only" not in err


def test_legacy_format_weights_still_load(weights_files, tmp_path, capsys):
    argv = [
        "--model",
        "convnext_atto",
        "--weights",
        str(weights_files / "legacy.pth"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 0


def test_weights_that_do_not_fit_the_model(atto, tmp_path, capsys):
    torch.save({"conv.weight": torch.zeros(3, 3, 3, 3)}, tmp_path / "other.pth")
    argv = [
        "--model",
        "convnext_atto",
        "--weights",
        str(tmp_path / "other.pth"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert "cannot load weights file" in run_main_error(capsys, argv)


def test_our_registered_models_are_known(tmp_path):
    summary = analyze(Subject(model="convmixer"), out=tmp_path)
    assert summary["kernels"] == 256 * 8 and list(summary["by_kernel_size"]) == ["5x5"]


@pytest.fixture(scope="module")
def our_cifar_ckpt(tmp_path_factory):
    """A checkpoint as our ImageClassifier writes it: 10 classes, 5x5 kernels via model_kwargs."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = timm.create_model("convnext_atto", num_classes=10, kernel_sizes=5)
    hparams = {
        "model_name": "convnext_atto",
        "model_kwargs": {"kernel_sizes": 5},
        "num_classes": 10,
        "image_size": 32,
        "in_chans": 3,
        "lr": 2e-3,
    }
    path = tmp_path_factory.mktemp("ours") / "last.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": hparams,
            "epoch": 3,
            "pytorch-lightning_version": "2.6.0",
        },
        path,
    )
    return path


def test_our_own_checkpoint_into_its_model(our_cifar_ckpt, tmp_path, capsys):
    summary = analyze(Subject(checkpoint=our_cifar_ckpt, model="convnext_atto"), out=tmp_path)
    assert list(summary["by_kernel_size"]) == ["5x5"] and summary["kernels"] == 1840
    argv = ["--checkpoint", str(our_cifar_ckpt), "--model", "convnext_femto", "--out", str(tmp_path / "x")]
    err = run_main_error(capsys, argv)
    assert "trained as 'convnext_atto'" in err and "--model convnext_atto" in err


def test_regular_convolutions_are_a_separate_group_with_their_own_chance(tmp_path, capsys):
    argv = ["--model", "mobilenetv2_050", "--include-regular", "--out", str(tmp_path / "m")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "depthwise kernels in 17 layers" in printed and "regular kernels in 1 layers" in printed
    summary = json.loads((tmp_path / "m" / "summary.json").read_text())
    regular = summary["regular"]
    assert regular["group"] == "regular" and regular["kernels"] == 16 * 3  # the 3x3 stem, 16 x 3 slices
    assert set(regular["chance"]) == {"on_center", "off_center", "other"}
    assert regular["layers"][0]["csv"].startswith("regular/")
    assert (tmp_path / "m" / regular["layers"][0]["csv"]).exists()
    assert summary["source"]["regular_kernels_sampled"] == {"3x3": {"kernels": 48, "of": 48}}
    # the same from the state dict alone, and a cap on the slices
    torch.save(timm.create_model("mobilenetv2_050").state_dict(), tmp_path / "mb.pth")
    capped = analyze(
        Subject(checkpoint=tmp_path / "mb.pth"),
        out=tmp_path / "f",
        include_regular=True,
        max_regular_kernels=20,
    )
    assert (
        capped["regular"]["kernels"] == 20 and capped["source"]["regular_kernels_sampled"]["3x3"]["of"] == 48
    )


def test_a_model_without_regular_convolutions_says_so(tmp_path):
    torch.save({"model": nn.Sequential(nn.Conv2d(8, 8, 5, groups=8)).state_dict()}, tmp_path / "dw.pt")
    summary = analyze(Subject(checkpoint=tmp_path / "dw.pt"), out=tmp_path / "o", include_regular=True)
    assert "regular" not in summary and summary["source"]["regular_kernels"].startswith("none")
    assert not (tmp_path / "o" / "regular").exists()


def test_regular_folder_only_with_the_regular_group(tmp_path):
    """No empty regular/ without --include-regular; a rerun without it removes the one it emptied."""
    torch.save(
        {"stem.weight": torch.randn(8, 3, 3, 3), "dw.weight": torch.randn(8, 1, 5, 5)}, tmp_path / "k.pt"
    )
    subject = Subject(checkpoint=tmp_path / "k.pt")
    analyze(subject, out=tmp_path / "o")
    assert (tmp_path / "o" / "layers").is_dir() and not (tmp_path / "o" / "regular").exists()
    analyze(subject, out=tmp_path / "o", include_regular=True)
    assert len(list((tmp_path / "o" / "regular").glob("*.csv"))) == 1
    summary = analyze(subject, out=tmp_path / "o")
    assert not (tmp_path / "o" / "regular").exists() and "regular" not in summary["files"]
    (tmp_path / "o" / "regular").mkdir()
    (tmp_path / "o" / "regular" / "mine.txt").write_text("not ours")
    analyze(subject, out=tmp_path / "o")
    assert (tmp_path / "o" / "regular" / "mine.txt").exists()  # a folder holding other files is left alone


def test_survey_of_two_models_and_a_checkpoint(our_cifar_ckpt, tmp_path, capsys):
    argv = [
        "--model",
        "mobilenetv2_050",
        "--model",
        "convnext_atto",
        "--checkpoint",
        str(our_cifar_ckpt),
        "--include-regular",
        "--out",
        str(tmp_path),
    ]
    assert survey_main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Classifier: TemplateClassifier(")  # which classifier read every row
    assert "\n| subject | group | kernel size |" in printed
    with (tmp_path / "survey.csv").open() as f:
        rows = list(csv.DictReader(f))
    subjects = {row["subject"] for row in rows}
    assert subjects == {"mobilenetv2_050 (random init)", "convnext_atto (random init)", "last.ckpt"}
    groups = {(row["subject"], row["group"], row["kernel_size"]) for row in rows}
    assert ("mobilenetv2_050 (random init)", "regular", "3x3") in groups
    assert ("convnext_atto (random init)", "depthwise", "7x7") in groups
    assert ("convnext_atto (random init)", "regular", "4x4") in groups  # the stem
    assert ("convnext_atto (random init)", "regular", "2x2") not in groups  # downsamplers: no DoG fits 2x2
    stem = next(r for r in rows if r["subject"] == "convnext_atto (random init)" and r["group"] == "regular")
    assert int(stem["kernels"]) == 40 * 3
    for row in rows:
        assert float(row["excess_on_off"]) == pytest.approx(
            float(row["on_off"]) - float(row["chance_on_off"]), abs=1e-3
        )
    table = (tmp_path / "survey.md").read_text()
    assert table.count("\n| ") == len(rows) + 1 and "Notes:" not in table  # the header and the rows; no note
    with Image.open(tmp_path / "survey.png") as image:
        image.verify()
    assert len(list(tmp_path.glob("0*_*/summary.json"))) == 3


def test_survey_errors(tmp_path, capsys):
    with pytest.raises(AnalysisError, match="nothing to survey"):
        survey([], out=tmp_path)
    for argv, message in [
        (["--weights", "convnext_atto=x.safetensors"], "no --pretrained names"),
        (["--pretrained", "convnext_atto", "--weights", "convnext_atto"], "NAME=FILE"),
    ]:
        with pytest.raises(SystemExit):
            survey_main([*argv, "--out", str(tmp_path)])
        assert message in capsys.readouterr().err


def test_survey_takes_analyzes_bounds(tmp_path, capsys):
    """survey analyses each subject within the bounds analyze takes (--max-kernel-side ...)."""
    torch.save({"blocks.0.conv_dw.weight": torch.randn(8, 1, 9, 9)}, tmp_path / "k9.pt")
    argv = ["--checkpoint", str(tmp_path / "k9.pt"), "--out", str(tmp_path / "s")]
    with pytest.raises(SystemExit) as exit_info:
        survey_main([*argv, "--max-kernel-side", "7"])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "--max-kernel-side" in line
    assert survey_main([*argv, "--max-kernel-side", "9"]) == 0


def test_run_py_dispatches_survey(capsys):
    import run

    with pytest.raises(SystemExit) as exit_info:
        run.main(["survey", "--help"])
    assert exit_info.value.code == 0 and "--pretrained" in capsys.readouterr().out


# --- hostile files: a TorchScript archive that writes a file when loaded ---------------------


@pytest.fixture(scope="module")
def hostile_archive(tmp_path_factory):
    from tests.hostile_files import planted_archive

    return planted_archive(tmp_path_factory.mktemp("hostile"), "model.pth")


@pytest.mark.parametrize(
    "entry",
    [
        "analyze --checkpoint",
        "survey --checkpoint",
        "analyze --model --weights",
        "analyze --model --checkpoint",
    ],
)
def test_a_torchscript_archive_is_refused_at_every_entry_point(hostile_archive, entry, tmp_path, capsys):
    archive, marker = hostile_archive
    out = ["--out", str(tmp_path / "o")]
    argv = {
        "analyze --checkpoint": ["--checkpoint", str(archive)],
        "survey --checkpoint": ["--checkpoint", str(archive)],
        "analyze --model --weights": ["--model", "convnext_atto", "--weights", str(archive)],
        "analyze --model --checkpoint": ["--model", "convnext_atto", "--checkpoint", str(archive)],
    }[entry]
    with pytest.raises(SystemExit) as exit_info:
        (survey_main if entry.startswith("survey") else main)([*argv, *out])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "is a TorchScript archive" in err and "save model.state_dict()" in err
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["sparse", "meta", "int8"])
def test_kernels_that_are_no_dense_float_tensors_are_one_error_line(kind, tmp_path, capsys):
    weight = torch.randn(8, 1, 3, 3)
    weight = {"sparse": weight.to_sparse(), "meta": weight.to("meta"), "int8": weight.to(torch.int8)}[kind]
    torch.save({"blocks.0.conv_dw.weight": weight}, tmp_path / "k.pt")
    err = run_main_error(capsys, ["--checkpoint", str(tmp_path / "k.pt"), "--out", str(tmp_path / "o")])
    assert {"sparse": "sparse tensor", "meta": "meta tensor", "int8": "dtype int8"}[kind] in err


def test_a_previous_summary_that_is_a_device_is_not_read(tmp_path):
    """--out whose summary.json is /dev/zero (size 0, never ends): the earlier-outputs lookup must
    not read it (it once read until the OOM killer came), and analyze then writes its own."""
    import os

    from neural_echos.tools.analyze import _earlier_outputs

    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").symlink_to("/dev/zero")
    assert _earlier_outputs(out) == []


# --- the classifier through jsonargparse: a new option needs no edit in analyze ------------------

from neural_echos.classifiers import TemplateClassifier


class TemplateWithMargin(TemplateClassifier):
    """A classifier with an option no other has (``margin``), registered only by the test below."""

    name = "template_with_margin"

    def __init__(self, margin: float = 0.0, threshold: float | str = "auto"):
        super().__init__(threshold=threshold)
        self.margin = margin

    def own_settings(self):
        return {**super().own_settings(), "margin": self.margin}


@pytest.mark.parametrize(
    "spelling",
    [
        ["--classifier", "template_with_margin", "--classifier.margin", "0.25"],
        ["--classifier", "TemplateWithMargin", "--classifier.margin=0.25"],
        ["--classifier", '{"class_path": "TemplateWithMargin", "init_args": {"margin": 0.25}}'],
    ],
)
def test_a_new_classifier_option_is_taken_by_analyze(spelling, monkeypatch, tmp_path, capsys):
    from neural_echos.classifiers import CLASSIFIERS

    monkeypatch.setitem(CLASSIFIERS, TemplateWithMargin.name, TemplateWithMargin)
    kernels = torch.randn(64, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    torch.save({"blocks.0.conv_dw.weight": kernels}, tmp_path / "k.pt")
    argv = ["--checkpoint", str(tmp_path / "k.pt"), "--out", str(tmp_path / "o"), *spelling]
    assert main(argv) == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["method"] == "template_with_margin" and summary["settings"]["margin"] == 0.25
    # a misspelt option is one error line naming the right one
    with pytest.raises(SystemExit) as exit_info:
        main([*argv[:4], "--classifier", "template_with_margin", "--classifier.margni", "0.25"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1
    assert "does not take --classifier.margni; did you mean --classifier.margin?" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--classifier", "kmens"], "unknown classifier 'kmens'; did you mean kmeans?"),
        (
            ["--classifier", "kmeans", "--classifier.null_seed", "x"],
            "--classifier.null_seed: Expected a <class 'int'>",
        ),
        (
            ["--classifier", "template", "--classifier.families", "dog"],
            "--classifier.families: Expected a <class 'tuple'>",
        ),
        (
            ["--classifier", "kmeans", "--classifier.n_clusters", "1"],
            "clusters",
        ),  # the classifier's own check
        (
            ["--classifier", '{"class_path": "KMeansClassifier", "init_args": {"sed": 2}}'],
            "option 'sed' is not accepted",
        ),
        (["--classifier", '{"class_path": "Nope"}'], "unknown classifier 'Nope'"),
        (["--classifier", "kmeans", "--method", "template"], "disagree"),
        (
            ["--classifier", "template", "--clusters", "3"],
            "does not take --classifier.n_clusters (--clusters)",
        ),
    ],
)
def test_bad_classifier_options_are_one_error_line(extra, message, tmp_path, capsys):
    err = run_main_error(capsys, ["--model", "convnext_atto", "--out", str(tmp_path / "o"), *extra])
    assert message in err, err
    assert not (tmp_path / "o").exists()


def test_the_classifier_options_are_listed_by_classifier_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--classifier", "kmeans", "--classifier.help", "kmeans"])
    assert exit_info.value.code == 0 and "--classifier.n_clusters" in capsys.readouterr().out


def test_two_runs_last_checkpoints_get_labels_that_tell_them_apart(tmp_path):
    from pathlib import Path

    from neural_echos.tools.analyze import distinct_labels

    dog = Path("logs/quickstart/dog/version_0/checkpoints/last.ckpt")
    none = Path("logs/quickstart/none/version_0/checkpoints/last.ckpt")
    subjects = [
        Subject(checkpoint=dog),
        Subject(checkpoint=none),
        Subject(checkpoint=Path("other.ckpt")),
        Subject(model="convnext_atto"),
    ]
    assert [s.label for s in distinct_labels(subjects)] == [
        "dog/version_0/checkpoints/last.ckpt",
        "none/version_0/checkpoints/last.ckpt",
        "other.ckpt",
        "convnext_atto (random init)",
    ]


def test_survey_of_two_last_ckpts_labels_rows_and_folders_apart(atto, tmp_path):
    first, second = tmp_path / "a" / "last.ckpt", tmp_path / "b" / "last.ckpt"
    for path in (first, second):
        path.parent.mkdir()
        torch.save(atto.state_dict(), path)
    rows = survey(
        [Subject(checkpoint=first), Subject(checkpoint=second)], get_classifier("template"), tmp_path / "out"
    )
    assert {row["subject"] for row in rows} == {"a/last.ckpt", "b/last.ckpt"}
    folders = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert folders == ["00_a_last.ckpt", "01_b_last.ckpt"]


def test_analyze_without_out_never_replaces_an_earlier_analysis(atto_pth, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["--checkpoint", str(atto_pth), "--layers", r"stages\.3"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert (tmp_path / "analysis_out" / "summary.json").is_file()
    assert last.startswith(
        "wrote analysis_out-2/summary.json, per-layer CSVs (layers/*.csv) and the "
        "pictures grids/*.png, proportions.png, taxonomy.png"
    )
    assert main(["--checkpoint", str(atto_pth), "--layers", r"stages\.3", "--out", "analysis_out"]) == 0
    assert "it replaced the earlier analysis in analysis_out" in capsys.readouterr().out  # --out given: said


def test_pretrained_weights_without_a_reachable_hub_fail_within_seconds(tmp_path, monkeypatch):
    """No network: one error at once, not huggingface_hub's retries (22 lines over 52 s)."""
    import time

    from huggingface_hub import constants

    from neural_echos.tools.analyze import create_model

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    start = time.monotonic()
    message = r"cannot get timm's pretrained weights for 'convnext_atto'.*--weights FILE"
    with pytest.raises(AnalysisError, match=message):
        create_model("convnext_atto", pretrained=True)
    assert time.monotonic() - start < 10
    assert constants.HF_HUB_OFFLINE is False  # the offline switch is put back
