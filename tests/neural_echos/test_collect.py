"""Collecting depthwise kernels from modules and from checkpoint files (no model code)."""

import os

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from neural_echos.collect import (
    AnalysisError,
    CheckpointError,
    is_depthwise_kernel,
    kernels_from_checkpoint,
    kernels_from_module,
    kernels_from_state_dict,
    read_checkpoint,
    readable_names,
)
from neural_echos.depthwise import NoDepthwiseLayersError, find_depthwise_convs
from neural_echos.errors import ConfigError


class HyperParameters:
    """A non-allow-listed class in a checkpoint's hyper-parameters (like a jsonargparse Namespace)."""

    def __init__(self):
        self.lr = 0.1
        self.act_layer = nn.GELU


class MakesADirectory:
    """Unpickling this with plain pickle would create a directory: the loader must not run it."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.makedirs, (self.path,))


@pytest.fixture(scope="module")
def atto_layers(atto):
    return kernels_from_module(atto)


def assert_same_layers(found, expected):
    assert [layer.name for layer in found] == [layer.name for layer in expected]
    assert [layer.kernel_size for layer in found] == [layer.kernel_size for layer in expected]
    for a, b in zip(found, expected):
        assert torch.equal(a.kernels, b.kernels)


def test_from_module_keeps_names_sizes_order_and_copies(atto, atto_layers):
    convs = find_depthwise_convs(atto)
    assert [layer.name for layer in atto_layers] == [name for name, _ in convs]
    assert [layer.key for layer in atto_layers] == [f"{name}.weight" for name, _ in convs]
    assert all(layer.kernel_size == (7, 7) for layer in atto_layers)
    assert sum(len(layer) for layer in atto_layers) == 1840
    first = atto_layers[0]
    assert first.kernels.dtype == torch.float32 and first.kernels.device.type == "cpu"
    assert torch.equal(first.kernels, convs[0][1].weight.detach()[:, 0])
    kernels_from_module(atto)[0].kernels.zero_()  # a copy: the model is untouched
    assert torch.equal(convs[0][1].weight.detach()[:, 0], first.kernels)


def test_from_module_with_channel_multiplier_filter_and_no_depthwise():
    model = nn.Sequential(nn.Conv2d(4, 8, 3, groups=4), nn.Conv2d(8, 8, (1, 5), groups=8), nn.Conv2d(8, 8, 1))
    layers = kernels_from_module(model)
    found = [(layer.name, len(layer), layer.kernel_size) for layer in layers]
    assert found == [("0", 8, (3, 3)), ("1", 8, (1, 5))]
    assert [layer.name for layer in kernels_from_module(model, name_filter="^1")] == ["1"]
    with pytest.raises(NoDepthwiseLayersError):
        kernels_from_module(nn.Sequential(nn.Conv2d(3, 8, 3)))


def test_is_depthwise_kernel():
    assert is_depthwise_kernel(torch.zeros(8, 1, 3, 3))
    assert is_depthwise_kernel(torch.zeros(8, 1, 1, 7))
    assert not is_depthwise_kernel(torch.zeros(8, 3, 3, 3))  # ordinary convolution
    assert not is_depthwise_kernel(torch.zeros(8, 1, 1, 1))  # pointwise
    assert not is_depthwise_kernel(torch.zeros(1, 1, 3, 3))  # a single filter
    assert not is_depthwise_kernel(torch.zeros(8, 1, 3))
    assert not is_depthwise_kernel(torch.zeros(8, 1, 3, 3, dtype=torch.int64))


def test_readable_names_strip_shared_wrappers_only():
    assert readable_names(["model.a.weight", "model.b.weight"]) == ["a", "b"]
    assert readable_names([]) == []
    assert readable_names(["module._orig_mod.model.a.weight"]) == ["a"]
    assert readable_names(["model.a.weight", "ema.a.weight"]) == ["model.a", "ema.a"]
    assert readable_names(["stages.0.conv_dw.weight"]) == ["stages.0.conv_dw"]


@pytest.mark.parametrize("layout", ["plain", "state_dict", "model", "legacy"])
def test_from_torch_file(tmp_path, atto, atto_layers, layout):
    state_dict = atto.state_dict()
    obj = state_dict if layout in ("plain", "legacy") else {layout: state_dict, "epoch": 1}
    path = tmp_path / "weights.pth"
    torch.save(obj, path, _use_new_zipfile_serialization=layout != "legacy")
    found = kernels_from_checkpoint(path)
    assert_same_layers(found, atto_layers)
    checkpoint = read_checkpoint(path)
    assert checkpoint.loader == "weights_only"
    assert checkpoint.nested_key == (None if layout in ("plain", "legacy") else layout)
    assert set(checkpoint.state_dict) == set(state_dict)


def test_from_lightning_checkpoint_with_arbitrary_hyper_parameters(tmp_path, atto, atto_layers):
    state_dict = {f"model.{k}": v for k, v in atto.state_dict().items()}
    state_dict["criterion.weight"] = torch.ones(10)
    exp_avg = {i: {"exp_avg": torch.randn(v.shape)} for i, v in enumerate(atto.state_dict().values())}
    marker = tmp_path / "code-ran"
    checkpoint = {
        "epoch": 3,
        "global_step": 100,
        "pytorch-lightning_version": "2.6.0",
        "state_dict": state_dict,
        "optimizer_states": [{"state": exp_avg, "param_groups": [{"lr": 0.1}]}],
        "hyper_parameters": {
            "config": HyperParameters(),
            "trap": MakesADirectory(str(marker)),
            "fn": torch.relu,
        },
    }
    path = tmp_path / "last.ckpt"
    torch.save(checkpoint, path)
    loaded = read_checkpoint(path, only_depthwise=True)
    assert not marker.exists()  # nothing from the file was executed
    assert loaded.format == "lightning" and loaded.loader == "restricted_unpickler"
    assert loaded.nested_key == "state_dict"
    found = kernels_from_checkpoint(path)
    assert_same_layers(found, atto_layers)  # optimizer moments of the same shapes are not picked up
    assert found[0].key == f"model.{atto_layers[0].name}.weight"


def test_from_safetensors_in_module_order(tmp_path, atto, atto_layers):
    path = tmp_path / "model.safetensors"
    save_file(atto.state_dict(), str(path))
    assert_same_layers(kernels_from_checkpoint(path), atto_layers)
    assert read_checkpoint(path).loader == "safetensors"

    model = nn.Sequential(*[nn.Conv2d(4, 4, 3, groups=4) for _ in range(12)])  # names 0 .. 11
    save_file(model.state_dict(), str(tmp_path / "deep.safetensors"))
    names = [layer.name for layer in kernels_from_checkpoint(tmp_path / "deep.safetensors")]
    assert names == [str(i) for i in range(12)]  # 2 before 10


def test_half_precision_kernels_become_float32(tmp_path):
    torch.save({"dw.weight": torch.randn(4, 1, 3, 3, dtype=torch.bfloat16)}, tmp_path / "half.pt")
    (layer,) = kernels_from_checkpoint(tmp_path / "half.pt")
    assert layer.kernels.dtype == torch.float32 and layer.name == "dw"


def test_state_dict_filter():
    state_dict = {"a.dw.weight": torch.randn(4, 1, 3, 3), "b.dw.weight": torch.randn(4, 1, 5, 5)}
    assert [layer.name for layer in kernels_from_state_dict(state_dict, name_filter="^b")] == ["b.dw"]
    with pytest.raises(NoDepthwiseLayersError, match="matches none"):
        kernels_from_state_dict(state_dict, name_filter="^c")
    with pytest.raises(ConfigError, match="regular expression"):
        kernels_from_state_dict(state_dict, name_filter="(")


def test_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match="is a folder; pass a .ckpt, .pt, .pth or .safetensors file"):
        read_checkpoint(tmp_path)

    (tmp_path / "random.pt").write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*random.pt"):
        read_checkpoint(tmp_path / "random.pt")

    torch.save({"w": torch.randn(64, 1, 3, 3)}, tmp_path / "whole.pt")
    data = (tmp_path / "whole.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(tmp_path / "truncated.pt")

    save_file({"w": torch.randn(64, 1, 3, 3)}, str(tmp_path / "whole.safetensors"))
    data = (tmp_path / "whole.safetensors").read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        read_checkpoint(tmp_path / "truncated.safetensors")

    dense = {"fc.weight": torch.randn(10, 8), "conv.weight": torch.randn(8, 3, 3, 3)}
    torch.save(dense, tmp_path / "dense.pt")
    with pytest.raises(CheckpointError, match="no depthwise kernel"):
        kernels_from_checkpoint(tmp_path / "dense.pt")

    torch.save([torch.randn(3)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_checkpoint(tmp_path / "list.pt")

    torch.save({"epoch": 1, "optimizer_states": []}, tmp_path / "empty.ckpt")
    with pytest.raises(CheckpointError, match="holds no state dict"):
        read_checkpoint(tmp_path / "empty.ckpt")


# --------------------------------------------------------------------------------------------
# bounds, non-finite kernels, honest counts


def _sparse_safetensors(path, shape, dtype="F32", item_bytes=4):
    """A .safetensors file declaring one huge kernel, with no data written (a sparse file)."""
    import json
    import math
    import struct

    n_bytes = math.prod(shape) * item_bytes
    header = json.dumps(
        {"blocks.0.conv_dw.weight": {"dtype": dtype, "shape": list(shape), "data_offsets": [0, n_bytes]}}
    )
    header = header.encode() + b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + n_bytes)
    return path


def test_a_file_declaring_huge_kernels_is_refused_before_reading(tmp_path):
    import resource

    path = _sparse_safetensors(tmp_path / "huge.safetensors", (60_000_000, 1, 3, 3))  # 2.16 GB declared
    assert os.stat(path).st_blocks * 512 < 1 << 20  # almost nothing on disk
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(
        CheckpointError, match=r"declare 2,059.9 MiB of data, beyond the 256.0 MiB.*--max-bytes"
    ):
        kernels_from_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"--max-file-bytes"):
        read_checkpoint(path, max_file_bytes=2**30)  # the whole state dict (analyze --model)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: nothing was read


def test_the_bounds_are_settable(tmp_path):
    kernels = {"dw.weight": torch.randn(64, 1, 3, 3)}  # 2,304 bytes
    torch.save(kernels, tmp_path / "k.pt")
    with pytest.raises(CheckpointError, match="--max-bytes"):
        kernels_from_checkpoint(tmp_path / "k.pt", max_bytes=1000)
    assert len(kernels_from_checkpoint(tmp_path / "k.pt", max_bytes=2304)[0]) == 64
    with pytest.raises(CheckpointError, match="--max-bytes"):
        kernels_from_state_dict(kernels, max_bytes=1000)
    torch.save(kernels, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)  # read whole by torch
    with pytest.raises(CheckpointError, match=r"legacy torch format, read whole.*--max-file-bytes"):
        read_checkpoint(tmp_path / "legacy.pt", max_file_bytes=1000)


def test_analyze_takes_the_bounds_from_its_flags(tmp_path, capsys):
    import run

    torch.save({"dw.weight": torch.randn(64, 1, 3, 3)}, tmp_path / "k.pt")
    with pytest.raises(SystemExit) as exit_info:
        run.main(
            [
                "analyze",
                "--checkpoint",
                str(tmp_path / "k.pt"),
                "--out",
                str(tmp_path / "out"),
                "--max-bytes",
                "1000",
            ]
        )
    assert exit_info.value.code == 2
    assert "raise the bound with --max-bytes" in capsys.readouterr().err


def test_non_finite_kernels_are_reported_by_layer(tmp_path):
    state_dict = {
        "a.dw.weight": torch.randn(8, 1, 3, 3),
        "b.dw.weight": torch.randn(8, 1, 3, 3),
        "c.dw.weight": torch.randn(8, 1, 5, 5),
    }
    state_dict["a.dw.weight"][2, 0, 1, 1] = float("nan")
    state_dict["c.dw.weight"][0:3] = float("inf")
    with pytest.raises(
        AnalysisError,
        match=r"2 of the 3 depthwise layers .* NaN or infinite values: a.dw \(1 of 8 kernels\), "
        r"c.dw \(3 of 8 kernels\).*--layers",
    ):
        kernels_from_state_dict(state_dict)
    assert [layer.name for layer in kernels_from_state_dict(state_dict, name_filter="^b")] == ["b.dw"]
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4))
    with torch.no_grad():
        model[0].weight[1] = float("nan")
    with pytest.raises(AnalysisError, match=r"0 \(1 of 4 kernels\)"):
        kernels_from_module(model)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_no_depthwise_kernel_counts_every_entry(tmp_path, suffix):
    """A resnet-like state dict (no depthwise conv): the message counts its entries, not zero."""
    state_dict = {f"layer{i}.conv.weight": torch.randn(4, 4, 3, 3) for i in range(100)}
    path = tmp_path / f"resnet{suffix}"
    (save_file if suffix == ".safetensors" else torch.save)(state_dict, str(path))
    with pytest.raises(
        CheckpointError, match=r"no depthwise kernel .* among its 100 entries \(first tensors: layer"
    ):
        kernels_from_checkpoint(path)


# --------------------------------------------------------------------------------------------
# TorchScript archives: refused by content, never loaded


@pytest.fixture(scope="module")
def hostile_archive(tmp_path_factory):
    """A TorchScript archive whose scripted __setstate__ writes a marker file when loaded."""
    from tests.hostile_files import planted_archive

    return planted_archive(tmp_path_factory.mktemp("hostile"), "model.pt")


@pytest.mark.parametrize("name", ["model.pt", "model.ckpt", "model.bin", "model"])
def test_a_torchscript_archive_is_refused_by_content_and_runs_nothing(hostile_archive, tmp_path, name):
    archive, marker = hostile_archive
    renamed = tmp_path / name
    renamed.write_bytes(archive.read_bytes())
    for read in (read_checkpoint, kernels_from_checkpoint):
        with pytest.raises(CheckpointError, match="is a TorchScript archive .* save model.state_dict()"):
            read(renamed)
    assert not marker.exists()


def test_the_loader_itself_never_reaches_the_torchscript_loader(hostile_archive, monkeypatch):
    """The second guard: even past the content check (a file swapped after it), torch.jit.load
    is disabled while torch.load runs, in both the weights-only and the restricted load."""
    from neural_echos import checkpoints

    archive, marker = hostile_archive
    monkeypatch.setattr(
        checkpoints, "is_torchscript_archive", lambda *args, **kwargs: False
    )  # the content check
    with pytest.raises(CheckpointError, match="is a TorchScript archive"):
        read_checkpoint(archive)
    assert not marker.exists()
    assert torch.jit.load is not None and "refused" not in torch.jit.load.__name__  # restored


def test_a_plain_zip_or_torch_save_file_is_not_torchscript(tmp_path):
    import zipfile

    from neural_echos.collect import is_torchscript_archive

    torch.save({"w": torch.randn(4, 1, 3, 3)}, tmp_path / "sd.pt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("x/data.pkl", b"")
    (tmp_path / "random.pt").write_bytes(b"PK\x03\x04" + os.urandom(100))
    assert not any(is_torchscript_archive(tmp_path / n) for n in ("sd.pt", "other.zip", "random.pt"))
    with zipfile.ZipFile(tmp_path / "code.zip", "w") as archive:  # no constants.pkl, but scripted code
        archive.writestr("x/code/__torch__.py", b"")
    assert is_torchscript_archive(tmp_path / "code.zip")


def test_name_filter_errors_name_the_option(atto):
    state_dict = {"blocks.0.conv_dw.weight": torch.randn(4, 1, 3, 3)}
    with pytest.raises(ConfigError, match=r"^--layers '\(' is not a valid regular expression"):
        kernels_from_state_dict(state_dict, name_filter="(")
    with pytest.raises(NoDepthwiseLayersError, match=r"^--layers 'nope' matches none of .*drop --layers"):
        kernels_from_state_dict(state_dict, name_filter="nope")
    with pytest.raises(NoDepthwiseLayersError, match=r"^--snapshot.name_filter 'nope' matches none"):
        kernels_from_module(atto, "nope", filter_option="--snapshot.name_filter")


# --------------------------------------------------------------------------------------------
# tensors that are not dense float kernels


def test_a_state_dict_of_parameters_is_read(tmp_path):
    model = nn.Sequential(nn.Conv2d(8, 8, 3, groups=8), nn.Conv2d(8, 8, 5, groups=8))
    torch.save(dict(model.named_parameters()), tmp_path / "params.pt")
    layers = kernels_from_checkpoint(tmp_path / "params.pt")
    assert [layer.name for layer in layers] == ["0", "1"] and not any(
        layer.kernels.requires_grad for layer in layers
    )
    assert torch.equal(layers[1].kernels, model[1].weight.detach().reshape(8, 5, 5))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda w: w.to_sparse(),
            r"layer 0 of checkpoint .* is a sparse tensor \(torch.sparse_coo\).*to_dense",
        ),
        (lambda w: w.to("meta"), r"layer 0 of checkpoint .* is a meta tensor \(a shape without values\)"),
        (
            lambda w: (w * 10).to(torch.int8),
            r"tensors of depthwise shape \[C, 1, k, k\] but of dtype int8 \(e.g. 0.weight",
        ),
        (lambda w: w > 0, r"but of dtype bool .* dequantize the weights"),
    ],
)
def test_sparse_meta_and_integer_kernels_are_one_error_naming_what(make, message, tmp_path):
    torch.save({"0.weight": make(torch.randn(8, 1, 3, 3)), "1.bias": torch.zeros(8)}, tmp_path / "k.pt")
    with pytest.raises(CheckpointError, match=message):
        kernels_from_checkpoint(tmp_path / "k.pt")


def test_integer_kernels_in_safetensors_name_the_dtype(tmp_path):
    save_file({"0.weight": torch.zeros(8, 1, 3, 3, dtype=torch.int8)}, str(tmp_path / "k.safetensors"))
    with pytest.raises(CheckpointError, match=r"but of dtype I8 \(e.g. 0.weight \(I8\)\)"):
        kernels_from_checkpoint(tmp_path / "k.safetensors")


def test_the_restricted_unpickler_sets_no_attribute_of_a_class():
    """BUILD on an allowed class (not an instance) would change torch's own classes in this process."""
    import io
    import pickle

    from neural_echos.checkpoints import _restricted_load

    data = b"\x80\x02ctorch.storage\nTypedStorage\nN}X\x04\x00\x00\x00flagK\x01s\x86b0}."  # TypedStorage.flag = 1
    with pytest.raises(pickle.UnpicklingError, match="sets attributes of 'TypedStorage'"):
        _restricted_load(io.BytesIO(data))
    assert not hasattr(torch.storage.TypedStorage, "flag")
