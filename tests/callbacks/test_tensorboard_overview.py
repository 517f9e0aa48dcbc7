"""What TensorBoard shows of a run, read back from the event files: an HParams session that tells
runs apart, the custom-scalars layout, run folders named by init, legible kernel pictures, and
snapshots at the steps of the validation metrics."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from jsonargparse import Namespace
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

import run
from callbacks.hparams_session import METRICS, init_option_keys
from neural_echos import logged_names as names
from neural_echos.cli.app import name_run_by_init
from neural_echos.grids import CLASS_COLOURS, WIDTH

REPO = Path(__file__).resolve().parents[2]


def fit(cifar_root, *extra):
    run.main(
        [
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            *extra,
            "--data.root",
            str(cifar_root),
            "--data.batch_size",
            "16",
            "--trainer.max_epochs",
            "2",
            "--trainer.limit_train_batches",
            "3",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.log_every_n_steps",
            "1",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
        ]
    )


def events(folder: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def plugin_data(accumulator: EventAccumulator, tag: str):
    return plugin_data_pb2.HParamsPluginData.FromString(accumulator.PluginTagToContent("hparams")[tag])


def session(accumulator: EventAccumulator) -> tuple[dict, list[str]]:
    start = plugin_data(accumulator, "_hparams_/session_start_info")
    experiment = plugin_data(accumulator, "_hparams_/experiment")
    params = {
        key: value.string_value or value.number_value
        for key, value in start.session_start_info.hparams.items()
    }
    metrics = [info.name.tag for info in experiment.experiment.metric_infos]
    return params, metrics


def shown_columns(experiment) -> list[str]:
    """The HParams columns TensorBoard 2.21 ticks: sorted by (not differs, name), the first five
    (backend_context._sort_and_reduce_to_hparams_limit and the dashboard's _computeHParams)."""
    infos = sorted(experiment.hparam_infos, key=lambda info: (not info.differs, info.name))
    return [info.name for info in infos[:5]]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from tests.conftest import write_cifar10_tree

    root = tmp_path_factory.mktemp("tb")
    cifar_root = write_cifar10_tree(root / "cifar10")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        fit(cifar_root, "--config", str(REPO / "configs/init/dog.yaml"))
        fit(cifar_root)
    return root / "logs" / "quickstart"


@pytest.mark.slow
def test_runs_are_named_by_init_and_their_hparams_sessions_tell_them_apart(two_runs):
    assert sorted(p.relative_to(two_runs).as_posix() for p in two_runs.glob("*/version_*")) == [
        "dog/version_0",
        "none/version_0",
    ]
    dog, _ = session(events(two_runs / "dog" / "version_0"))
    default, metrics = session(events(two_runs / "none" / "version_0"))
    assert dog["init/method"] == "dog" and default["init/method"] == "none"
    assert "init" not in dog  # the method under one key, as in hparams.yaml
    assert dog["init/gamma_high"] == "1" and default["init/gamma_high"] == names.NOT_APPLICABLE
    assert dog["init/settings"] == default["init/settings"] == "defaults"
    for params in (dog, default):
        assert params["model"] == "convnext_atto" and params["model/kernel_sizes"] == "7x7"
        assert (
            params["seed"] == 42 and params["data/batch_size"] == 16 and params["data"] == "CIFAR10DataModule"
        )
        assert params["snapshot/classifier"] == "template" and params["model/lr"] == 2e-3
    assert metrics == list(METRICS)
    for version in ("dog", "none"):  # the init's text, under the tag README names
        accumulator = events(two_runs / version / "version_0")
        assert "init/summary" in accumulator.Tags()["tensors"]
        text = accumulator.Tensors("init/summary")[0].tensor_proto.string_val[0].decode()
        prose = [line for line in text.splitlines() if "  " not in line.strip()]  # not table rows
        assert max(len(line) for line in prose) <= 100, text  # a code block does not wrap
        rows = [line for line in text.splitlines() if ".conv_dw" in line]
        assert all("->" in row for row in rows), text  # each layer's row stays one line


@pytest.mark.slow
def test_every_run_declares_every_init_option_so_tensorboard_lists_the_dog_settings(two_runs):
    # TensorBoard takes the HParams columns from the first run it finds with an experiment
    # summary (backend_context._find_experiment_tag): each run must declare the DoG options
    dog_options = {
        "init/gamma_low",
        "init/gamma_high",
        "init/on_center_prob",
        "init/dog_share",
        "init/radius",
    }
    declared, trials = [], []
    for init in ("dog", "none"):
        accumulator = events(two_runs / init / "version_0")
        experiment = plugin_data(accumulator, "_hparams_/experiment").experiment
        keys = [info.name for info in experiment.hparam_infos]
        assert dog_options <= set(keys) and set(init_option_keys()) <= set(keys), init
        assert shown_columns(experiment) == sorted(names.HPARAMS_SHOWN)
        declared.append(keys)
        trials.append(plugin_data(accumulator, "_hparams_/session_start_info").session_start_info.group_name)
        params, _ = session(accumulator)
        assert set(params) == set(keys)  # a value for every declared column, "-" where not applicable
    assert declared[0] == declared[1]
    assert trials == ["dog/v0", "none/v0"]  # short trial IDs that tell the runs apart


@pytest.mark.slow
def test_report_reads_the_init_back_from_the_sessions(two_runs):
    from neural_echos.tools.report import read_runs

    runs = read_runs([two_runs])[0]
    assert sorted(runs.init) == ["dog", "none"]
    assert set(runs.init_from) == {"session"}


@pytest.mark.slow
def test_custom_scalars_layout_and_aligned_steps(two_runs):
    accumulator = events(two_runs / "dog" / "version_0")
    (config,) = accumulator.Tensors("custom_scalars__config__")
    layout = layout_pb2.Layout.FromString(config.tensor_proto.string_val[0])
    charts = {
        (category.title, chart.title): list(chart.multiline.tag)
        for category in layout.category
        for chart in category.chart
    }
    scalars = accumulator.Tags()["scalars"]
    for category, classes, share, chance in (
        ("kernel classes: observed vs chance", names.CLASSES, names.SHARE, names.CHANCE),
        (
            "kernel taxonomy: observed vs chance",
            names.TAXONOMY_CLASSES,
            names.TAXONOMY_SHARE,
            names.TAXONOMY_CHANCE,
        ),
    ):
        for name in classes:  # one chart per class: its share and its chance share, nothing else
            regexes = charts[(category, f"{name}: observed vs chance")]
            matched = sorted(tag for tag in scalars if any(re.search(regex, tag) for regex in regexes))
            assert matched == sorted([share.format(name), chance.format(name)]), (category, name)
    assert charts[("training", "val/acc1")] == ["^val/acc1$"]
    val_steps = [e.step for e in accumulator.Scalars("val/acc1")]
    assert [e.step for e in accumulator.Scalars("kernels/proportion/on_center")] == [0, *val_steps]
    assert [e.step for e in accumulator.Images("kernels/grid/stages.0")] == [0, *val_steps]
    tags = accumulator.Tags()["scalars"]
    assert "train/lr" in tags and not any(
        tag.startswith("kernels/layer/") for tag in tags
    )  # behind an option


@pytest.mark.slow
def test_kernel_pictures_carry_their_legend(two_runs):
    accumulator = events(two_runs / "dog" / "version_0")
    images = accumulator.Tags()["images"]
    assert {"kernels/layers", "kernels/centroids", "kernels/taxonomy"} <= set(images)
    encoded = accumulator.Images("kernels/grid/stages.0")[0]
    picture = np.asarray(Image.open(io.BytesIO(encoded.encoded_image_string)).convert("RGB"))
    assert picture.shape[1] >= WIDTH
    legend = picture[-40:]  # the legend strip ends with the frame swatches
    for name in ("on_center", "off_center", "other"):
        assert ((legend.reshape(-1, 3) == CLASS_COLOURS[name]).all(axis=1)).sum() >= 5, name


def test_run_name_gets_the_init_once():
    def config(name, method, freeze=False):
        logger = Namespace(
            class_path="lightning.pytorch.loggers.TensorBoardLogger", init_args=Namespace(name=name)
        )
        return Namespace(trainer=Namespace(logger=logger), init=Namespace(method=method, freeze=freeze))

    dog = Namespace(class_path="DoGInit", init_args=Namespace())
    cases = [
        (config("quickstart", dog), "quickstart/dog"),
        (config("quickstart/dog", dog), "quickstart/dog"),
        (config("quickstart", None), "quickstart/none"),
        (
            config("x", Namespace(class_path="neural_echos.init.kaiming.KaimingNormalInit")),
            "x/kaiming_normal",
        ),
        (config("quickstart", dog, freeze=True), "quickstart/dog+frozen"),
        (config("quickstart/dog+frozen", dog, freeze=True), "quickstart/dog+frozen"),
        (config("quickstart", None, freeze=True), "quickstart/none+frozen"),
    ]
    for namespace, expected in cases:
        name_run_by_init(namespace)
        assert namespace.trainer.logger.init_args.name == expected
    no_logger = Namespace(trainer=Namespace(logger=False), init=Namespace(method=None))
    name_run_by_init(no_logger)
    assert no_logger.trainer.logger is False
