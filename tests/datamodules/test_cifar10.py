import pickle
import urllib.error
import warnings

import numpy as np
import pytest
import torch

from datamodules.cifar10 import CIFAR10DataModule, CIFAR10FormatError, load_cifar10
from neural_echos.errors import ConfigError


def _quiet_load(root):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_cifar10(root)


def test_reads_official_layout(cifar_root):
    arrays = _quiet_load(cifar_root)
    assert arrays.train_images.shape == (200, 3, 32, 32) and arrays.train_images.dtype == torch.uint8
    assert arrays.test_images.shape == (40, 3, 32, 32)
    assert arrays.train_labels.dtype == torch.int64 and int(arrays.train_labels.max()) <= 9
    assert arrays.classes[0] == "airplane" and len(arrays.classes) == 10


def test_pixels_keep_the_rgb_plane_order(cifar_root):
    folder = cifar_root / "cifar-10-batches-py"
    with open(folder / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="latin1")
    arrays = _quiet_load(cifar_root)
    first = np.asarray(raw["data"][0])
    assert torch.equal(arrays.train_images[0, 0].flatten(), torch.from_numpy(first[:1024]))  # red plane
    assert torch.equal(arrays.train_images[0, 2].flatten(), torch.from_numpy(first[2048:]))  # blue plane


def test_root_may_be_the_batches_folder_itself(cifar_root):
    arrays = _quiet_load(cifar_root / "cifar-10-batches-py")
    assert len(arrays.train_labels) == 200


def test_non_official_checksums_warn_but_load(cifar_root):
    with pytest.warns(UserWarning, match="differ from the official release"):
        load_cifar10(cifar_root)


def test_missing_root_says_where_to_point(tmp_path):
    with pytest.raises(CIFAR10FormatError, match=r"does not exist.*--data.root.*download"):
        load_cifar10(tmp_path / "nowhere")


@pytest.mark.parametrize("download", [True, False])
def test_a_file_as_root_is_a_config_error(tmp_path, download):
    """Not "could not download ... copy the files into '<a file>'"."""
    a_file = tmp_path / "cifar.tar.gz"
    a_file.write_bytes(b"not a folder")
    with pytest.raises(ConfigError, match=r"data.root .*cifar.tar.gz' is a file, not a folder"):
        CIFAR10DataModule(root=str(a_file), download=download)


def test_wrong_layout_lists_missing_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CIFAR10FormatError, match=r"missing.*data_batch_1.*test_batch.*batches.meta"):
        load_cifar10(tmp_path / "empty")


def test_one_missing_batch_is_named(cifar_root):
    (cifar_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(CIFAR10FormatError, match=r"missing.*data_batch_3"):
        load_cifar10(cifar_root)


def test_truncated_batch_is_named(cifar_root):
    path = cifar_root / "cifar-10-batches-py" / "data_batch_2"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CIFAR10FormatError, match=r"data_batch_2.*truncated or corrupt"):
        _quiet_load(cifar_root)


def test_garbage_batch_is_named(cifar_root):
    (cifar_root / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle at all" * 100)
    with pytest.raises(CIFAR10FormatError, match=r"test_batch.*truncated or corrupt"):
        _quiet_load(cifar_root)


def test_pickle_that_is_not_a_batch(cifar_root):
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_4", "wb") as f:
        pickle.dump({"something": 1}, f)
    with pytest.raises(CIFAR10FormatError, match=r"data_batch_4.*not a CIFAR-10 batch"):
        _quiet_load(cifar_root)


class _RunsCode:
    """What a hostile batch file holds: unpickling it calls os.system."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


@pytest.mark.parametrize("name", ["data_batch_1", "test_batch", "batches.meta"])
@pytest.mark.parametrize("protocol", [2, 5])
def test_a_batch_file_that_would_run_code_is_refused(cifar_root, tmp_path, name, protocol):
    marker = tmp_path / "ran"
    folder = cifar_root / "cifar-10-batches-py"
    evil = {
        "data": np.zeros((2, 3072), np.uint8),
        "labels": [0, 1],
        "x": _RunsCode(f"touch {marker}"),
        "label_names": [],
    }
    with open(folder / name, "wb") as f:
        pickle.dump(evil, f, protocol=protocol)
    with pytest.raises(
        CIFAR10FormatError,
        match=rf"refusing to load .*{name}.*posix.system|refusing to load .*{name}.*nt.system",
    ):
        _quiet_load(cifar_root)
    assert not marker.exists()


@pytest.mark.parametrize("payload", ["bytes(n)", "codecs"])
def test_the_allowed_helpers_only_do_what_cifar_needs(cifar_root, payload):
    import _codecs

    class Bytes:  # bytes(10**12) would allocate a terabyte
        def __reduce__(self):
            return (bytes, (10**12,))

    class Codec:  # any codec other than latin-1 is refused
        def __reduce__(self):
            return (_codecs.encode, ("x", "rot13"))

    with open(cifar_root / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({"data": Bytes() if payload == "bytes(n)" else Codec(), "labels": []}, f, protocol=2)
    with pytest.raises(CIFAR10FormatError, match="refusing to load"):
        _quiet_load(cifar_root)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batches_repickled_by_numpy_2_load(cifar_root, protocol):
    folder = cifar_root / "cifar-10-batches-py"
    data = np.arange(3 * 3072, dtype=np.uint8).reshape(3, 3072)
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(
            {"data": data, "labels": [1, 2, 3], "filenames": [b"a.png", b"", "c.png"]}, f, protocol=protocol
        )
    arrays = _quiet_load(cifar_root)
    assert torch.equal(arrays.train_images[:3].reshape(3, -1), torch.from_numpy(data))


def test_a_meta_file_that_is_a_list_is_named(cifar_root):
    with open(cifar_root / "cifar-10-batches-py" / "batches.meta", "wb") as f:
        pickle.dump(["airplane"] * 10, f, protocol=2)
    with pytest.raises(CIFAR10FormatError, match=r"batches.meta.*no list of 10 'label_names'"):
        _quiet_load(cifar_root)


def test_the_real_batches_load_with_the_restricted_unpickler(cifar10_mini):
    arrays = _quiet_load(cifar10_mini)
    assert (
        arrays.classes[0] == "airplane"
        and arrays.train_images.dtype == torch.uint8
        and len(arrays.test_labels) > 0
    )


def test_batch_with_wrong_shape(cifar_root):
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_5", "wb") as f:
        pickle.dump({"data": np.zeros((4, 100), np.uint8), "labels": [0, 1, 2, 3]}, f)
    with pytest.raises(CIFAR10FormatError, match=r"data_batch_5.*N x 3072"):
        _quiet_load(cifar_root)


def test_batch_with_bad_labels(cifar_root):
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_5", "wb") as f:
        pickle.dump({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 12]}, f)
    with pytest.raises(CIFAR10FormatError, match=r"labels.*0\.\.9"):
        _quiet_load(cifar_root)


def test_download_failure_says_where_to_put_the_files(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", offline)
    dm = CIFAR10DataModule(root=str(tmp_path / "c10"), download=True)
    with pytest.raises(
        CIFAR10FormatError, match=r"could not download.*copy the extracted cifar-10-batches-py"
    ):
        dm.prepare_data()


def test_download_is_skipped_when_files_exist(cifar_root, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    monkeypatch.setattr(tv_utils, "download_and_extract_archive", lambda *a, **k: pytest.fail("downloaded"))
    CIFAR10DataModule(root=str(cifar_root), download=True).prepare_data()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"val_split": 1.0}, "val_split"),
        ({"val_split": -0.1}, "val_split"),
        ({"padding": -1}, "padding"),
        ({"num_workers": -2}, "num_workers"),
    ],
)
def test_out_of_range_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CIFAR10DataModule(**kwargs)


def _setup(root, **kwargs):
    dm = CIFAR10DataModule(root=str(root), **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm.setup("fit")
    return dm


def test_seeded_validation_split(cifar_root):
    a = _setup(cifar_root, val_split=0.1, split_seed=3)
    b = _setup(cifar_root, val_split=0.1, split_seed=3)
    c = _setup(cifar_root, val_split=0.1, split_seed=4)
    assert len(a.val_set) == 20 and len(a.train_set) == 180
    assert torch.equal(a.val_set.images, b.val_set.images)
    assert not torch.equal(a.val_set.images, c.val_set.images)
    train_rows = {bytes(x.flatten().numpy()) for x in a.train_set.images}
    assert not any(bytes(x.flatten().numpy()) in train_rows for x in a.val_set.images)


def test_without_split_validation_uses_the_test_batch(cifar_root):
    dm = _setup(cifar_root)
    assert dm.val_set is dm.test_set and len(dm.train_set) == 200


def test_loaders_yield_uint8_batches(cifar_root):
    dm = _setup(cifar_root, batch_size=64)
    train = list(dm.train_dataloader())
    assert len(train) == 3  # 200 // 64, the incomplete batch dropped (Mixup needs even batches)
    images, labels = train[0]
    assert images.shape == (64, 3, 32, 32) and images.dtype == torch.uint8 and labels.shape == (64,)
    val = list(dm.val_dataloader())
    assert sum(len(y) for _, y in val) == 40  # evaluation keeps every image


def test_augmentation_only_while_training(cifar_root):
    from types import SimpleNamespace

    dm = _setup(cifar_root, batch_size=64)
    batch = next(iter(dm.val_dataloader()))
    dm.trainer = SimpleNamespace(training=False)
    x_eval, _ = dm.on_after_batch_transfer(batch, 0)
    x_eval_again, _ = dm.on_after_batch_transfer(batch, 0)
    assert x_eval.dtype == torch.float32 and torch.equal(x_eval, x_eval_again)
    dm.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    x_train, _ = dm.on_after_batch_transfer(batch, 0)
    assert x_train.shape == x_eval.shape and not torch.equal(x_train, x_eval)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["0", "1", "2", "3"], r"'labels' should be 4 integers in 0\.\.9, got \(4,\) <U1"),
        (
            np.array([0, 1, 2, None], dtype=object),
            r"'labels' should be 4 integers in 0\.\.9, got \(4,\) object",
        ),
        ([0.0, 1.0, float("nan"), 3.0], r"'labels' should be 4 integers in 0\.\.9, got \(4,\) float64"),
        ([[0], [1, 2], 3, 4], r"not a CIFAR-10 batch \('data' or 'labels' is not an array"),
    ],
)
def test_labels_that_are_not_integers_are_named(cifar_root, labels, message):
    """Strings, an object array and a ragged list gave 50-line tracebacks; NaN floats passed the
    check and crashed in training (IndexError)."""
    with open(cifar_root / "cifar-10-batches-py" / "data_batch_5", "wb") as f:
        pickle.dump({"data": np.zeros((4, 3072), np.uint8), "labels": labels}, f)
    with pytest.raises(CIFAR10FormatError, match=r"data_batch_5.*" + message):
        _quiet_load(cifar_root)


def test_an_empty_test_batch_is_an_error(cifar_root):
    root = cifar_root
    with open(root / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": np.zeros((0, 3072), np.uint8), "labels": []}, f)
    dm = CIFAR10DataModule(root=str(root), download=False)
    with pytest.warns(UserWarning), pytest.raises(CIFAR10FormatError, match=r"test_batch' holds no images"):
        dm.setup("fit")


@pytest.mark.parametrize("download", [True, False])
def test_a_root_one_level_too_high_names_the_folder_below_and_downloads_nothing(
    cifar_root, download, monkeypatch
):
    """``--data.root ../shared/data`` for ``../shared/data/cifar10-mini``: named, not downloaded next to it."""
    from datamodules import cifar10

    def no_download(root):
        raise AssertionError(f"tried to download into {root}")

    monkeypatch.setattr(cifar10, "download_cifar10", no_download)
    data = CIFAR10DataModule(root=str(cifar_root.parent), download=download)
    message = (
        rf"no CIFAR-10 in '{cifar_root.parent}', but '{cifar_root}' one level down holds it: pass --data.root"
    )
    with pytest.raises(CIFAR10FormatError, match=message):
        data.prepare_data()
        data.setup("fit")
