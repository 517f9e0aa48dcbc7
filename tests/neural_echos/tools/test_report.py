"""Tests of ``neural_echos.tools.report`` on synthetic TensorBoard runs with known accuracy curves."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from neural_echos.tools.report import (
    REQUIRED,
    ReportError,
    init_label,
    main,
    method_defaults,
    model_label,
    report,
)

REPO = Path(__file__).resolve().parents[3]
STEPS_PER_EPOCH = 10
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CONVNEXT = ("convnext_atto", {"drop_path_rate": 0.1, "kernel_sizes": 7})
CONVMIXER = ("convmixer", {"dim": 256, "depth": 8, "kernel_size": 5, "patch_size": 2})
# (registry name, settings as the method logs them)
KAIMING = ("kaiming_normal", {"gain": 1.4142135623730951})
DOG = (
    "dog",
    {
        "gamma_low": 0.0,
        "gamma_high": 1.0,
        "on_center_prob": 0.5,
        "dog_share": 1.0,
        "scale": "unit",
        "radius": "gamma*(k+1)/2",
    },
)
DOG_ABLATION = ("dog", {**DOG[1], "gamma_high": 0.5, "on_center_prob": 1.0})
ABLATION = "dog gamma∈(0,0.5), on_center_prob=1"

# val/acc1 per epoch (fractions); best and final differ on purpose
MODELS = {"convnext": CONVNEXT, "convmixer": CONVMIXER}
CURVES = {
    ("convnext", "kaiming"): {
        0: [0.50, 0.60, 0.66, 0.64],
        1: [0.52, 0.62, 0.68, 0.66],
        2: [0.54, 0.64, 0.70, 0.68],
    },
    ("convnext", "dog"): {
        0: [0.55, 0.65, 0.71, 0.70],
        1: [0.56, 0.66, 0.72, 0.71],
        2: [0.58, 0.68, 0.76, 0.75],
    },
    ("convmixer", "kaiming"): {0: [0.40, 0.50, 0.60, 0.62], 1: [0.42, 0.52, 0.62, 0.64]},
    ("convmixer", "dog"): {0: [0.45, 0.55, 0.65, 0.61], 1: [0.47, 0.57, 0.67, 0.65]},
}
# expected rows of results.csv (%, 4 decimals; std over seeds with n - 1; delta vs kaiming_normal)
EXPECTED = {
    ("convnext_atto(drop_path_rate=0.1, kernel_sizes=7)", "kaiming_normal"): {
        "n": "3",
        "seeds": "0 1 2",
        "best_acc1_mean": "68.0000",
        "best_acc1_std": "2.0000",
        "final_acc1_mean": "66.0000",
        "final_acc1_std": "2.0000",
        "delta_best": "0.0000",
        "delta_final": "0.0000",
        "epochs": "4",
    },
    ("convnext_atto(drop_path_rate=0.1, kernel_sizes=7)", "dog"): {
        "n": "3",
        "seeds": "0 1 2",
        "best_acc1_mean": "73.0000",
        "best_acc1_std": "2.6458",
        "final_acc1_mean": "72.0000",
        "final_acc1_std": "2.6458",
        "delta_best": "5.0000",
        "delta_final": "6.0000",
        "epochs": "4",
    },
    ("convnext_atto(drop_path_rate=0.1, kernel_sizes=7)", ABLATION): {
        "n": "1",
        "seeds": "7",
        "best_acc1_mean": "69.0000",
        "best_acc1_std": "",
        "final_acc1_mean": "67.0000",
        "final_acc1_std": "",
        "delta_best": "1.0000",
        "delta_final": "1.0000",
        "epochs": "4",
    },
    ("convmixer(depth=8, dim=256, kernel_size=5, patch_size=2)", "kaiming_normal"): {
        "n": "2",
        "seeds": "0 1",
        "best_acc1_mean": "63.0000",
        "best_acc1_std": "1.4142",
        "final_acc1_mean": "63.0000",
        "final_acc1_std": "1.4142",
        "delta_best": "0.0000",
        "delta_final": "0.0000",
        "epochs": "4",
    },
    ("convmixer(depth=8, dim=256, kernel_size=5, patch_size=2)", "dog"): {
        "n": "2",
        "seeds": "0 1",
        "best_acc1_mean": "66.0000",
        "best_acc1_std": "1.4142",
        "final_acc1_mean": "63.0000",
        "final_acc1_std": "2.8284",
        "delta_best": "3.0000",
        "delta_final": "0.0000",
        "epochs": "4",
    },
    ("convmixer(depth=8, dim=256, kernel_size=5, patch_size=2)", ABLATION): {
        "n": "1",
        "seeds": "3",
        "best_acc1_mean": "50.0000",
        "best_acc1_std": "",
        "final_acc1_mean": "50.0000",
        "final_acc1_std": "",
        "delta_best": "-13.0000",
        "delta_final": "-13.0000",
        "epochs": "1",
    },
}
CHANCE = (0.02, 0.03, 0.95)


def _session_value(value):
    """As callbacks/hparams_session.py logs a value: bool/int/float/str as they are, the rest as JSON."""
    return (
        value
        if isinstance(value, (bool, int, float, str))
        else json.dumps(value, sort_keys=True, default=str)
    )


def write_run(
    run_dir: Path,
    model: tuple[str, dict],
    init: tuple[str, dict] | None,
    seed: int,
    accs: list[float],
    *,
    session: bool = True,
    hparams_init: bool = True,
    name_filter: str | None = None,
    proportions: list[tuple[float, float, float]] | None = None,
    chance: tuple[float, float, float] | None = None,
    walltime: float = 2000.0,
    extra_hparams: dict | None = None,
    session_extra: dict | None = None,
) -> Path:
    """A run directory as ``run.py fit`` writes it: events with an HParams session (the
    HParamsSession callback's keys) and scalars, hparams.yaml (the module's hyper-parameters and
    the DepthwiseInit callback's ``init/*``: settings, seed, model and summary totals), config.yaml.

    ``session=False``: a run logged before the HParams session; ``hparams_init=False``:
    hparams.yaml without ``init/*``.
    """
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    run_dir.mkdir(parents=True, exist_ok=True)
    name, kwargs = model
    hparams = {
        "model_name": name,
        "model_kwargs": kwargs,
        "lr": 0.002,
        "batch_size": 128,
        "root": str(run_dir),
    }
    hparams.update(extra_hparams or {})
    if init is not None and hparams_init:
        method, settings = init
        hparams.update({"init/method": method, "init/model": name, "init/seed": seed})
        hparams.update(
            {
                f"init/{key}": (str(value) if isinstance(value, (list, tuple)) else value)
                for key, value in settings.items()
            }
        )
        # summary totals, which differ between seeds and must not split groups
        hparams.update({"init/n_layers": 12, "init/n_kernels": 1840, "init/n_initialized": 1840})
        if method == "dog":
            hparams.update({"init/gamma_mean": 0.5 + 0.01 * seed, "init/n_on": 900 + seed})
        if name_filter is not None:
            hparams["init/name_filter"] = name_filter
    (run_dir / "hparams.yaml").write_text(yaml.safe_dump(hparams, allow_unicode=True), encoding="utf-8")
    config = {"seed_everything": seed, "trainer": {"max_epochs": 4}, "init": {"method": None}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    writer = SummaryWriter(log_dir=str(run_dir))
    if session:
        params = {
            "model": name,
            "model/kwargs": json.dumps(kwargs, sort_keys=True),
            "model/lr": 0.002,
            "model/kernel_sizes": "7x7",
            "data": "CIFAR10DataModule",
            "data/batch_size": 128,
            "seed": seed,
        }
        params.update(session_extra or {})
        if init is not None:
            params["init"] = init[0]
            params.update({f"init/{key}": _session_value(value) for key, value in init[1].items()})
        for summary in hparams_summary(params, {"val/acc1": 0.0}):
            writer._get_file_writer().add_summary(summary)
    t = walltime

    def snapshot(index: int, step: int, t: float) -> None:
        for tag, value in zip(("on_center", "off_center", "other"), proportions[index]):
            writer.add_scalar(f"kernels/proportion/{tag}", value, step, walltime=t)
        for tag, value in zip(("on_center", "off_center", "other"), chance or ()):
            writer.add_scalar(f"kernels/chance/{tag}", value, step, walltime=t)

    if proportions:
        writer.add_scalar("epoch", 0, 0, walltime=t)
        snapshot(0, 0, t)
    for epoch, acc in enumerate(accs):
        mid, end = epoch * STEPS_PER_EPOCH + 4, (epoch + 1) * STEPS_PER_EPOCH - 1
        t += 1
        writer.add_scalar("train/loss_step", 2.0 - epoch * 0.1, mid, walltime=t)
        writer.add_scalar("epoch", epoch, mid, walltime=t)
        writer.add_scalar("val/acc1", acc, end, walltime=t)
        writer.add_scalar("epoch", epoch, end, walltime=t)
        if proportions:
            snapshot(epoch + 1, end, t)  # the epoch's snapshot at its validation's step
    writer.close()
    return run_dir


def make_logs(root: Path) -> Path:
    logs = root / "logs"
    for (model_key, init_name), seeds in CURVES.items():
        model = MODELS[model_key]
        init = KAIMING if init_name == "kaiming" else DOG
        for seed, accs in seeds.items():
            run_dir = logs / f"{model[0]}_{init_name}" / f"seed{seed}_20250101-000000"
            kwargs = {}
            if model == CONVNEXT:
                on = 0.4 + 0.05 * seed if init_name == "dog" else 0.1
                kwargs["proportions"] = [(on + 0.01 * e, 0.3, 0.7 - on - 0.01 * e) for e in range(5)]
                kwargs["chance"] = CHANCE
            if model == CONVMIXER and init_name == "dog" and seed == 1:
                kwargs["hparams_init"] = False  # no init/* in hparams.yaml: the init from the HParams session
            write_run(run_dir, model, init, seed, accs, **kwargs)
    # an ablation with n = 1 (Lightning's default version_N layout); version_0 logged before the
    # HParams session: its init comes from hparams.yaml, the summary totals left out
    write_run(
        logs / "ablation" / "version_0", CONVNEXT, DOG_ABLATION, 7, [0.50, 0.60, 0.69, 0.67], session=False
    )
    write_run(logs / "ablation" / "version_1", CONVMIXER, DOG_ABLATION, 3, [0.50])
    # an older run of the same (model, init, seed) as a newer one: superseded, not averaged
    write_run(
        logs / "convnext_atto_kaiming" / "seed0_old",
        CONVNEXT,
        KAIMING,
        0,
        [0.1, 0.2, 0.3, 0.4],
        walltime=1000.0,
    )
    # a run that crashed before validating
    write_run(logs / "crashed" / "version_0", CONVNEXT, DOG, 5, [])
    return logs


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    logs = make_logs(root)
    out = root / "out"
    result = report([logs], out)
    return logs, out, result


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------------
# labels (fast)


DOG_SETTINGS = DOG[1]


@pytest.mark.parametrize(
    ("method", "settings", "label"),
    [
        ("kaiming_normal", {"gain": 1.4142135623730951}, "kaiming_normal"),
        ("kaiming_normal", {"gain": 1.0}, "kaiming_normal gain=1"),
        ("torch_default", {"gain": 0.5773502691896257}, "torch_default"),
        ("dog", DOG_SETTINGS, "dog"),
        ("dog", {**DOG_SETTINGS, "gamma_high": 0.5}, "dog gamma∈(0,0.5)"),
        ("dog", {**DOG_SETTINGS, "gamma_low": 0.5}, "dog gamma∈(0.5,1)"),
        ("dog", {**DOG_SETTINGS, "on_center_prob": 1.0}, "dog on_center_prob=1"),
        ("dog", {**DOG_SETTINGS, "on_center_prob": 0.7}, "dog on_center_prob=0.7"),
        ("dog", {**DOG_SETTINGS, "dog_share": 0.5}, "dog dog_share=0.5"),
        ("dog", {**DOG_SETTINGS, "scale": "match", "dog_share": 0.5}, "dog dog_share=0.5, scale=match"),
        ("dog", {**DOG_SETTINGS, "radius": 2.0}, "dog radius=2"),
        # as the HParams session logs numbers (floats, 1 for 1.0) and hparams.yaml strings
        ("dog", {**DOG_SETTINGS, "gamma_high": 1, "dog_share": "1.0"}, "dog"),
        ("dog", {}, "dog"),  # unset settings are the defaults
        ("kaiming_normal", {"name_filter": "stages.3"}, "kaiming_normal name_filter=stages.3"),
        # lists: JSON in the session, str() in hparams.yaml, None as null / None
        (
            "gaussian_covariance",
            {"scale": "kaiming", "sigma": "[1.0, 2.0]", "tau": "null", "eps": 0.001},
            "gaussian_covariance",
        ),
        (
            "gaussian_covariance",
            {"scale": "kaiming", "sigma": "(1.0, 2.0)", "tau": "None", "eps": 0.001},
            "gaussian_covariance",
        ),
        ("gaussian_covariance", {"sigma": "[2.0, 2.0]"}, "gaussian_covariance sigma=(2,2)"),
        ("gaussian_covariance", {"scale": "match"}, "gaussian_covariance scale=match"),
        # an option without a default is always shown; the others against the constructor's
        (
            "covariance_transfer",
            {"checkpoint": "a.ckpt", "depth_bins": 3.0, "scale": "checkpoint"},
            "covariance_transfer checkpoint=a.ckpt",
        ),
        (
            "covariance_transfer",
            {"checkpoint": "a.ckpt", "depth_bins": 1, "scale": "kaiming"},
            "covariance_transfer checkpoint=a.ckpt, depth_bins=1, scale=kaiming",
        ),
        ("covariance", {"scale": "match"}, "covariance scale=match"),  # not registered: every setting shown
        ("none", {}, "none"),
        # frozen depthwise weights (init.freeze): "+frozen" after the method, the settings as before
        ("dog", {**DOG_SETTINGS, "freeze": True}, "dog+frozen"),
        ("dog", {**DOG_SETTINGS, "gamma_high": 0.5, "freeze": True}, "dog+frozen gamma∈(0,0.5)"),
        ("none", {"freeze": True}, "none+frozen"),
        ("impulse", {"position": "random", "noise": 0.0, "scale": "paper"}, "impulse"),
        (
            "master_key",
            {"filters": "[7, 8]", "flip_prob": 0.5, "scale": "unit", "freeze": True},
            "master_key+frozen filters=(7,8)",
        ),
    ],
)
def test_init_label(method, settings, label):
    assert init_label(method, settings) == label


def test_defaults_come_from_the_method_classes():
    from neural_echos.init import REGISTRY, InitMethod
    from neural_echos.init.covariance_transfer import CovarianceTransferInit
    from neural_echos.init.dog import DoGInit

    assert method_defaults("dog") == DoGInit().settings()
    defaults = method_defaults("covariance_transfer")
    assert defaults["checkpoint"] is REQUIRED
    import inspect

    assert (
        defaults["depth_bins"] == inspect.signature(CovarianceTransferInit).parameters["depth_bins"].default
    )
    assert method_defaults("no_such_method") is None

    # a method added to the registry is labelled with no change to the report
    class _Blur(InitMethod, name="test_report_blur"):
        def __init__(self, width: float = 1.5):
            self.width = width

        def settings(self):
            return {"width": self.width}

        def init_layers(self, layers, generator):
            return []

    try:
        assert init_label("test_report_blur", {"width": 1.5}) == "test_report_blur"
        assert init_label("test_report_blur", {"width": 3.0}) == "test_report_blur width=3"
    finally:
        del REGISTRY["test_report_blur"]
        method_defaults.cache_clear()


def test_ablation_configs_get_the_labels_they_document():
    """Each ablation in configs/experiments/ablations/ gets its own label, the one its header and
    docs/experiments.md give."""
    from neural_echos.init import REGISTRY, method_name

    docs = (REPO / "docs" / "experiments.md").read_text(encoding="utf-8")
    labels = {}
    for path in sorted((REPO / "configs" / "experiments" / "ablations").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        method = yaml.safe_load(text)["init"]["method"]
        name = method_name(method["class_path"])
        labels[path.name] = init_label(name, REGISTRY[name](**method.get("init_args", {})).settings())
        assert f'(report label "{labels[path.name]}")' in text, path.name
        assert f"| `{path.name}` |" in docs and f"| `{labels[path.name]}` |" in docs, path.name
    assert len(set(labels.values())) == len(labels) >= 7 and "dog" not in labels.values()


def test_model_label():
    assert (
        model_label("convnext_tiny", {"kernel_sizes": 9, "drop_path_rate": 0.1})
        == "convnext_tiny(drop_path_rate=0.1, kernel_sizes=9)"
    )
    assert model_label("hornet_tiny_7x7", {}) == "hornet_tiny_7x7"
    assert model_label("hornet_tiny_7x7", None) == "hornet_tiny_7x7"


# --------------------------------------------------------------------------------------------
# error paths (fast)


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(ReportError, match="does not exist"):
        report([tmp_path / "nope"], tmp_path / "out")


def test_empty_dir_is_an_error(tmp_path):
    (tmp_path / "logs" / "quickstart" / "version_0").mkdir(parents=True)
    with pytest.raises(ReportError, match="no TensorBoard runs"):
        report([tmp_path / "logs"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_main_exits_2_with_error_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err


def test_a_file_as_logdir_is_an_error(tmp_path):
    (tmp_path / "notes.txt").write_text("not a log folder")
    with pytest.raises(ReportError, match="is a file, not a log directory"):
        report([tmp_path / "notes.txt"], tmp_path / "out")


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            [],
            "error: the following arguments are required: LOGDIR (run `python run.py report --help` for the options)",
        ),
        (["logs", "--outt", "x"], "error: unrecognized arguments: --outt x; did you mean --out?"),
        (["logs", "--baseline"], "error: argument --baseline: expected one argument"),
    ],
    ids=["no-logdir", "typo", "missing-value"],
)
def test_argparse_errors_are_one_line_without_usage(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "usage:" not in err, err


def test_help_still_prints_the_full_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith("usage: run.py report") and "--baseline" in out


# --------------------------------------------------------------------------------------------
# on synthetic runs


def test_no_usable_run_is_an_error(tmp_path):
    write_run(tmp_path / "logs" / "a" / "version_0", CONVNEXT, DOG, 0, [])
    with pytest.raises(ReportError, match=r"no usable run.*no val/acc1"):
        report([tmp_path / "logs"], tmp_path / "out")


def test_results_csv_numbers(reported):
    _, out, result = reported
    rows = read_csv(out / "results.csv")
    got = {(row["model"], row["init"]): row for row in rows}
    assert set(got) == set(EXPECTED)
    for key, expected in EXPECTED.items():
        assert {field: got[key][field] for field in expected} == expected, key
        assert got[key]["baseline"] == "kaiming_normal"
    # baseline first within each model, then dog, then the ablations
    assert [row["init"] for row in rows[:3]] == ["kaiming_normal", "dog", ABLATION]
    # the returned groups (a DataFrame) carry the same numbers unrounded
    groups = result["groups"]
    assert isinstance(groups, pd.DataFrame)
    (dog,) = groups[groups.model.str.startswith("convnext") & (groups.init == "dog")].to_dict("records")
    assert dog["final_acc1_mean"] == pytest.approx(72.0, abs=1e-4)
    assert dog["final_acc1_std"] == pytest.approx(7**0.5, abs=1e-4)
    assert dog["delta_final"] == pytest.approx(6.0, abs=1e-4)
    assert json.loads(dog["init_settings"]) == DOG[1]


def test_kernel_shares_and_their_chance_in_csv(reported):
    _, out, result = reported
    rows = {(row["model"], row["init"]): row for row in read_csv(out / "results.csv")}
    convnext = "convnext_atto(drop_path_rate=0.1, kernel_sizes=7)"
    # final on-center share: 0.4 + 0.05 * seed + 0.04, averaged over seeds 0, 1, 2
    assert rows[(convnext, "dog")]["final_on_center"] == "0.4900"
    assert rows[(convnext, "dog")]["final_off_center"] == "0.3000"
    assert rows[(convnext, "kaiming_normal")]["final_on_center"] == "0.1400"
    # every share carries its chance share, and on/off their excess over it
    assert [rows[(convnext, "dog")][f"chance_{c}"] for c in ("on_center", "off_center", "other")] == [
        "0.0200",
        "0.0300",
        "0.9500",
    ]
    assert rows[(convnext, "dog")]["excess_on_center"] == "0.4700"
    assert rows[(convnext, "dog")]["excess_off_center"] == "0.2700"
    assert rows[(convnext, "kaiming_normal")]["excess_on_center"] == "0.1200"
    # the ablation run logged none: blank, not a partial mean
    assert (
        rows[(convnext, ABLATION)]["final_on_center"] == rows[(convnext, ABLATION)]["chance_on_center"] == ""
    )
    runs = {
        Path(row["run"]).parent.name + "/" + Path(row["run"]).name: row for row in read_csv(out / "runs.csv")
    }
    seed2 = runs["convnext_atto_dog/seed2_20250101-000000"]
    assert (seed2["final_on_center"], seed2["chance_on_center"], seed2["excess_on_center"]) == (
        "0.5400",
        "0.0200",
        "0.5200",
    )
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "| on-center | on-center chance | on-center excess |" in md
    assert "| 0.490 | 0.020 | +0.470 | 0.300 | 0.030 | +0.270 | 0.210 | 0.950 |" in md
    # the curves: shares and chance per snapshot, at epochs trained (0 = the initialised kernels)
    curves = result["curves"]
    one = curves[curves.run.str.endswith("convnext_atto_dog/seed2_20250101-000000")]
    shares = one[one.tag == "kernels/proportion/on_center"]
    assert list(shares.x) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert list(one[one.tag == "kernels/chance/other"].value.round(6)) == [0.95] * 5


def test_missing_baseline_says_na(tmp_path):
    logs = tmp_path / "logs"
    write_run(logs / "a" / "version_0", CONVNEXT, DOG, 0, [0.5, 0.6])
    write_run(logs / "a" / "version_1", CONVNEXT, DOG, 1, [0.5, 0.7])
    result = report([logs], tmp_path / "out")
    (row,) = read_csv(tmp_path / "out" / "results.csv")
    assert (row["delta_best"], row["delta_final"], row["baseline"]) == ("n/a", "n/a", "n/a")
    assert (row["final_acc1_mean"], row["final_acc1_std"]) == ("65.0000", "7.0711")
    assert pd.isna(result["groups"].loc[0, "delta_final"])
    assert "no run has the baseline init 'kaiming_normal'" in " ".join(result["notes"])
    assert "| n/a |" in (tmp_path / "out" / "results.md").read_text(encoding="utf-8")


def test_skipped_and_superseded_runs_are_listed(reported):
    logs, out, result = reported
    reasons = {Path(s["run"]).relative_to(logs.resolve()).as_posix(): s["reason"] for s in result["skipped"]}
    assert set(reasons) == {"crashed/version_0", "convnext_atto_kaiming/seed0_old"}
    assert "no val/acc1" in reasons["crashed/version_0"]
    assert "superseded" in reasons["convnext_atto_kaiming/seed0_old"]
    runs = read_csv(out / "runs.csv")
    assert sum(row["status"] == "skipped" for row in runs) == 2
    assert sum(row["status"] == "used" for row in runs) == 12
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "## Skipped runs" in md and "no val/acc1" in md and "superseded" in md
    assert "73.00 ± 2.65 | +5.00 | 72.00 ± 2.65 | +6.00" in md


def test_plots_are_pngs(reported):
    _, out, result = reported
    pngs = sorted(path.name for path in out.glob("*.png"))
    assert pngs == [
        "kernel_clusters_convnext_atto_drop_path_rate_0.1_kernel_sizes_7.png",
        "val_acc1_convmixer_depth_8_dim_256_kernel_size_5_patch_size_2.png",
        "val_acc1_convnext_atto_drop_path_rate_0.1_kernel_sizes_7.png",
    ]
    from PIL import Image

    for name in pngs:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        with Image.open(out / name) as image:
            image.verify()
            assert image.size[0] > 300 and image.size[1] > 200
        assert f"]({name})" in (out / "results.md").read_text(encoding="utf-8")
    assert {str(out / name) for name in pngs} <= set(result["files"])
    # ConvMixer runs logged no kernel class shares: the plot is skipped with a note
    notes = " ".join(result["notes"])
    assert "convmixer(depth=8, dim=256, kernel_size=5, patch_size=2): no kernel class shares logged" in notes


def test_differing_settings_are_noted(tmp_path):
    logs = tmp_path / "logs"
    write_run(logs / "a" / "version_0", CONVNEXT, KAIMING, 0, [0.5, 0.6])
    write_run(logs / "b" / "version_0", CONVNEXT, DOG, 0, [0.5, 0.7], extra_hparams={"lr": 0.004})
    write_run(logs / "b" / "version_1", CONVNEXT, DOG, 1, [0.5])
    result = report([logs / "a", logs / "b" / "version_0", logs / "b" / "version_1"], tmp_path / "out")
    notes = "\n".join(result["notes"])
    assert "differ in more than the init" in notes and "lr (0.002, 0.004)" in notes
    assert "fewer validated epochs" in notes and "version_1 (1)" in notes


def _runs_by_name(out: Path) -> dict[str, dict[str, str]]:
    return {Path(row["run"]).name: row for row in read_csv(out / "runs.csv")}


def test_init_label_from_the_logged_hyperparameters(tmp_path):
    """The init comes from the HParams session (else hparams.yaml's init/*), never from a display string."""
    logs = tmp_path / "logs"
    gamma = ("dog", {**DOG[1], "gamma_high": 0.5})
    # the session alone, hparams.yaml alone (summary totals beside the settings), and both
    write_run(logs / "session_only", CONVNEXT, gamma, 0, [0.5, 0.6], hparams_init=False)
    write_run(logs / "hparams_only", CONVNEXT, gamma, 1, [0.5, 0.6], session=False)
    write_run(logs / "both", CONVNEXT, gamma, 2, [0.5, 0.6], name_filter="stages.3")
    # hparams.yaml saying one thing and the session another: the session (TensorBoard's) counts
    write_run(logs / "disagree", CONVNEXT, DOG, 3, [0.5, 0.6])
    disagree = yaml.safe_load((logs / "disagree" / "hparams.yaml").read_text(encoding="utf-8"))
    disagree["init/method"] = "none (model default)"
    (logs / "disagree" / "hparams.yaml").write_text(yaml.safe_dump(disagree), encoding="utf-8")
    result = report([logs], tmp_path / "out")
    runs = _runs_by_name(tmp_path / "out")
    assert runs["session_only"]["init"] == runs["hparams_only"]["init"] == "dog gamma∈(0,0.5)"
    assert runs["both"]["init"] == "dog gamma∈(0,0.5), name_filter=stages.3"
    assert runs["disagree"]["init"] == "dog"
    assert json.loads(runs["hparams_only"]["init_settings"]) == gamma[1]  # the totals are no settings
    assert runs["hparams_only"]["init_method"] == "dog" and runs["session_only"]["kernel_sizes"] == "7x7"
    groups = result["groups"]
    assert sorted(zip(groups.init, groups.n)) == [
        ("dog", 1),
        ("dog gamma∈(0,0.5)", 2),
        ("dog gamma∈(0,0.5), name_filter=stages.3", 1),
    ]


def test_a_run_without_a_logged_init_is_skipped(tmp_path):
    logs = tmp_path / "logs"
    write_run(logs / "a", CONVNEXT, KAIMING, 0, [0.5, 0.6])
    write_run(logs / "b", CONVNEXT, None, 0, [0.5, 0.6])
    result = report([logs], tmp_path / "out")
    (skipped,) = result["skipped"]
    assert Path(skipped["run"]).name == "b" and "no init logged" in skipped["reason"]


def test_covariance_transfer_runs_of_other_checkpoints_are_other_groups(tmp_path):
    logs = tmp_path / "logs"
    for name, checkpoint, extra in [
        ("a0", "ckpts/a.ckpt", {}),
        ("a1", "ckpts/a.ckpt", {}),
        ("b0", "ckpts/b.ckpt", {}),
        ("a0_bins1", "ckpts/a.ckpt", {"depth_bins": 1}),
    ]:
        settings = {"checkpoint": checkpoint, "depth_bins": 3, "scale": "checkpoint", **extra}
        write_run(logs / name, CONVNEXT, ("covariance_transfer", settings), int(name[1]), [0.5, 0.6])
    result = report([logs], tmp_path / "out")
    groups = result["groups"]
    assert sorted(zip(groups.init, groups.n, groups.seeds)) == [
        ("covariance_transfer checkpoint=ckpts/a.ckpt", 2, "0 1"),
        ("covariance_transfer checkpoint=ckpts/a.ckpt, depth_bins=1", 1, "0"),
        ("covariance_transfer checkpoint=ckpts/b.ckpt", 1, "0"),
    ]
    assert result["skipped"] == []  # same model and seed, other checkpoint: not superseded


def test_baseline_option(tmp_path, capsys):
    logs = tmp_path / "logs"
    write_run(logs / "a", CONVNEXT, KAIMING, 0, [0.5, 0.6])
    write_run(logs / "b", CONVNEXT, DOG, 0, [0.5, 0.7])
    write_run(logs / "c", CONVNEXT, ("dog", {**DOG[1], "gamma_high": 0.5}), 0, [0.5, 0.65])
    result = main([str(logs), "--out", str(tmp_path / "out"), "--baseline", "dog gamma∈(0,0.5)"])
    deltas = dict(zip(result["groups"].init, result["groups"].delta_final))
    assert deltas == pytest.approx({"kaiming_normal": -5.0, "dog": 5.0, "dog gamma∈(0,0.5)": 0.0})
    assert result["groups"].init.iloc[0] == "dog gamma∈(0,0.5)"  # the baseline first
    assert "(baseline)" in (tmp_path / "out" / "results.md").read_text(encoding="utf-8")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(logs), "--out", str(tmp_path / "out2"), "--baseline", "kaiming"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(
        "error: --baseline 'kaiming' is no init of these runs"
    )
    assert "did you mean 'kaiming_normal'?" in err and "'dog gamma∈(0,0.5)'" in err
    assert not (tmp_path / "out2").exists()


def test_shares_without_their_chance_are_noted(tmp_path):
    logs = tmp_path / "logs"
    proportions = [(0.1, 0.1, 0.8)] * 3
    write_run(logs / "a", CONVNEXT, KAIMING, 0, [0.5, 0.6], proportions=proportions, chance=CHANCE)
    write_run(
        logs / "b", CONVNEXT, KAIMING, 1, [0.5, 0.6], proportions=proportions
    )  # logged before the calibration
    result = report([logs], tmp_path / "out")
    (row,) = read_csv(tmp_path / "out" / "results.csv")
    assert (
        row["final_on_center"] == "0.1000" and row["chance_on_center"] == "" and row["excess_on_center"] == ""
    )
    notes = " ".join(result["notes"])
    assert "without their chance shares" in notes and str(Path("logs") / "b") in notes


@pytest.mark.slow
def test_cli_through_run_py(reported, tmp_path):
    """``python run.py report`` once the lead wires it; until then ``python -m neural_echos.tools.report``."""
    logs, _, _ = reported
    run_py = (REPO / "run.py").read_text(encoding="utf-8")
    command = (
        [sys.executable, "run.py", "report"]
        if '"report"' in run_py
        else [sys.executable, "-m", "neural_echos.tools.report"]
    )
    done = subprocess.run(
        [*command, str(logs), "--out", str(tmp_path / "out")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and (tmp_path / "out" / "results.csv").exists()
    bad = subprocess.run(
        [*command, str(tmp_path / "nope")], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("error: ")


# --------------------------------------------------------------------------------------------
# damaged logs, through `run.py report` and its output files


def _record_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, length) of the data of each TFRecord in an events file (8-byte length, 4-byte CRC, data, CRC)."""
    import struct

    spans, pos = [], 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        spans.append((pos + 12, length))
        pos += 12 + length + 4
    return spans


def _report_cli(logs: Path, out: Path) -> None:
    import run

    run.main(["report", str(logs), "--out", str(out)])


def test_one_corrupt_event_record_loses_that_record_only(tmp_path):
    logs = tmp_path / "logs"
    run_dir = write_run(logs / "a" / "version_0", CONVNEXT, DOG, 0, [0.5, 0.6, 0.7, 0.65])
    events = next(run_dir.glob("events.out.tfevents.*"))
    data = bytearray(events.read_bytes())
    spans = _record_spans(bytes(data))
    start, length = spans[len(spans) // 3]  # a record in the first epochs: every later one used to be lost
    data[start + length // 2] ^= 0xFF
    events.write_bytes(bytes(data))
    _report_cli(logs, tmp_path / "out")
    (row,) = read_csv(tmp_path / "out" / "runs.csv")
    assert row["status"] == "used" and row["final_acc1"] == "65.0000"
    assert int(row["epochs"]) >= 3  # at most the epoch of the damaged record is missing
    assert "corrupt" in (tmp_path / "out" / "results.md").read_text(encoding="utf-8")


def test_folders_of_runs_that_failed_at_start_are_left_out(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    logs = tmp_path / "logs"
    write_run(logs / "a" / "version_0", CONVNEXT, DOG, 0, [0.5, 0.6])
    # what a fit that failed in setup leaves: an events file with no scalar, an empty hparams.yaml
    failed = logs / "a" / "version_1"
    SummaryWriter(log_dir=str(failed)).close()
    (failed / "hparams.yaml").write_text("{}\n", encoding="utf-8")
    _report_cli(logs, tmp_path / "out")
    runs = read_csv(tmp_path / "out" / "runs.csv")
    assert [Path(row["run"]).name for row in runs] == ["version_0"]
    md = (tmp_path / "out" / "results.md").read_text(encoding="utf-8")
    assert "Skipped runs" not in md and "left out 1 folders with no scalar logged" in md


def test_a_non_utf8_hparams_yaml_skips_that_run_with_a_warning(tmp_path, capsys):
    logs = tmp_path / "logs"
    write_run(logs / "a" / "version_0", CONVNEXT, DOG, 0, [0.5, 0.6])
    bad = write_run(logs / "a" / "version_1", CONVNEXT, DOG, 1, [0.5, 0.7])
    (bad / "hparams.yaml").write_bytes((bad / "hparams.yaml").read_bytes() + b"note: \xff\xfe\n")
    _report_cli(logs, tmp_path / "out")
    runs = _runs_by_name(tmp_path / "out")
    assert runs["version_0"]["status"] == "used" and runs["version_1"]["status"] == "skipped"
    assert "unreadable hparams.yaml (not UTF-8 text)" in runs["version_1"]["reason"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and "version_1" in warnings[0] and "not UTF-8" in warnings[0]


def test_a_garbage_events_file_costs_a_bounded_time(tmp_path):
    import time

    from neural_echos.tools import report as report_module

    logs = tmp_path / "logs"
    run_dir = write_run(logs / "a" / "version_0", CONVNEXT, DOG, 0, [0.5, 0.6])
    (run_dir / "events.out.tfevents.0.garbage").write_bytes(os.urandom(8 << 20))  # 8 MB: ~17 s unbounded
    start = time.perf_counter()
    scalars, _, corrupt = report_module._read_events(run_dir)
    assert time.perf_counter() - start < 5 and corrupt >= 1 and not scalars.empty


def test_a_folder_of_unrelated_event_files_is_said_plainly(tmp_path):
    (tmp_path / "logs" / "x").mkdir(parents=True)
    (tmp_path / "logs" / "x" / "events.out.tfevents.1.junk").write_bytes(b"not an event")
    with pytest.raises(ReportError) as info:
        report(tmp_path / "logs", tmp_path / "out")
    message = str(info.value)
    assert "(;" not in message and "the 1 folder(s) with event files log no scalar and no model" in message


def test_frozen_runs_are_their_own_groups_beside_the_trained_ones(tmp_path):
    """A run with init.freeze logs init/freeze in hparams.yaml; report files it as <method>+frozen."""
    logs = tmp_path / "logs"
    write_run(logs / "kaiming", CONVNEXT, KAIMING, 0, [0.5, 0.6])
    write_run(logs / "dog", CONVNEXT, DOG, 0, [0.5, 0.7])
    write_run(logs / "dog_frozen", CONVNEXT, DOG, 0, [0.4, 0.55], extra_hparams={"init/freeze": True})
    write_run(
        logs / "kaiming_frozen",
        CONVNEXT,
        KAIMING,
        0,
        [0.3, 0.5],
        session=False,
        extra_hparams={"init/freeze": True},
    )
    result = report([logs], tmp_path / "out")
    runs = _runs_by_name(tmp_path / "out")
    assert [runs[name]["init"] for name in ("kaiming", "dog", "dog_frozen", "kaiming_frozen")] == [
        "kaiming_normal",
        "dog",
        "dog+frozen",
        "kaiming_normal+frozen",
    ]
    assert all(runs[name]["status"] == "used" for name in runs)  # same seed, other init: none superseded
    deltas = dict(zip(result["groups"].init, result["groups"].delta_final))
    assert deltas["dog+frozen"] == pytest.approx(-5.0)
    assert deltas["kaiming_normal+frozen"] == pytest.approx(-10.0)
