"""Tests of ``neural_echos.report`` on synthetic TensorBoard runs with known accuracy curves."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neural_echos.report import ReportError, init_label, main, model_label, report

REPO = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 10
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

CONVNEXT = ("convnext_atto", {"drop_path_rate": 0.1, "kernel_sizes": 7})
CONVMIXER = ("convmixer", {"dim": 256, "depth": 8, "kernel_size": 5, "patch_size": 2})
KAIMING = {"method": "kaiming_normal", "gain": 1.4142135623730951}
DOG = {"method": "dog", "gamma_low": 0.0, "gamma_high": 1.0, "on_center_prob": 0.5, "dog_share": 1.0,
       "scale": "unit", "radius": "gamma*(k+1)/2", "name_filter": "None"}
DOG_ABLATION = {**DOG, "gamma_high": 0.5, "on_center_prob": 1.0}

# val/acc1 per epoch (fractions); best and final differ on purpose
MODELS = {"convnext": CONVNEXT, "convmixer": CONVMIXER}
CURVES = {
    ("convnext", "kaiming"): {0: [0.50, 0.60, 0.66, 0.64], 1: [0.52, 0.62, 0.68, 0.66], 2: [0.54, 0.64, 0.70, 0.68]},
    ("convnext", "dog"): {0: [0.55, 0.65, 0.71, 0.70], 1: [0.56, 0.66, 0.72, 0.71], 2: [0.58, 0.68, 0.76, 0.75]},
    ("convmixer", "kaiming"): {0: [0.40, 0.50, 0.60, 0.62], 1: [0.42, 0.52, 0.62, 0.64]},
    ("convmixer", "dog"): {0: [0.45, 0.55, 0.65, 0.61], 1: [0.47, 0.57, 0.67, 0.65]},
}
# expected rows of results.csv (%, 4 decimals; std over seeds with n - 1; delta vs kaiming_normal)
EXPECTED = {
    ("convnext_atto(drop_path_rate=0.1, kernel_sizes=7)", "kaiming_normal"):
        dict(n="3", seeds="0 1 2", best_acc1_mean="68.0000", best_acc1_std="2.0000", final_acc1_mean="66.0000",
             final_acc1_std="2.0000", delta_best="0.0000", delta_final="0.0000", epochs="4"),
    ("convnext_atto(drop_path_rate=0.1, kernel_sizes=7)", "dog"):
        dict(n="3", seeds="0 1 2", best_acc1_mean="73.0000", best_acc1_std="2.6458", final_acc1_mean="72.0000",
             final_acc1_std="2.6458", delta_best="5.0000", delta_final="6.0000", epochs="4"),
    ("convnext_atto(drop_path_rate=0.1, kernel_sizes=7)", "dog γ∈(0,0.5), on-only"):
        dict(n="1", seeds="7", best_acc1_mean="69.0000", best_acc1_std="", final_acc1_mean="67.0000",
             final_acc1_std="", delta_best="1.0000", delta_final="1.0000", epochs="4"),
    ("convmixer(depth=8, dim=256, kernel_size=5, patch_size=2)", "kaiming_normal"):
        dict(n="2", seeds="0 1", best_acc1_mean="63.0000", best_acc1_std="1.4142", final_acc1_mean="63.0000",
             final_acc1_std="1.4142", delta_best="0.0000", delta_final="0.0000", epochs="4"),
    ("convmixer(depth=8, dim=256, kernel_size=5, patch_size=2)", "dog"):
        dict(n="2", seeds="0 1", best_acc1_mean="66.0000", best_acc1_std="1.4142", final_acc1_mean="63.0000",
             final_acc1_std="2.8284", delta_best="3.0000", delta_final="0.0000", epochs="4"),
    ("convmixer(depth=8, dim=256, kernel_size=5, patch_size=2)", "dog γ∈(0,0.5), on-only"):
        dict(n="1", seeds="3", best_acc1_mean="50.0000", best_acc1_std="", final_acc1_mean="50.0000",
             final_acc1_std="", delta_best="-13.0000", delta_final="-13.0000", epochs="1"),
}


def write_run(
    run_dir: Path,
    model: tuple[str, dict],
    init: dict | None,
    seed: int,
    accs: list[float],
    *,
    config_init: dict | None = None,
    proportions: list[tuple[float, float, float]] | None = None,
    walltime: float = 2000.0,
    extra_hparams: dict | None = None,
) -> Path:
    """A run directory as Lightning writes it: events, hparams.yaml (init/* keys), config.yaml."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir.mkdir(parents=True, exist_ok=True)
    name, kwargs = model
    hparams = {"model_name": name, "model_kwargs": kwargs, "lr": 0.002, "batch_size": 128, "root": str(run_dir)}
    hparams.update(extra_hparams or {})
    if init is not None:
        hparams.update({f"init/{key}": value for key, value in init.items()})
        hparams.update({"init/seed": seed, "init/model": name})
    (run_dir / "hparams.yaml").write_text(yaml.safe_dump(hparams), encoding="utf-8")
    config = {"seed_everything": seed, "trainer": {"max_epochs": 4}, "init": config_init or {"method": None}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    writer = SummaryWriter(log_dir=str(run_dir))
    t = walltime
    if proportions:
        writer.add_scalar("epoch", 0, 0, walltime=t)
        for tag, value in zip(("on_center", "off_center", "other"), proportions[0]):
            writer.add_scalar(f"kernels/proportion/{tag}", value, 0, walltime=t)
    for epoch, acc in enumerate(accs):
        mid, end = epoch * STEPS_PER_EPOCH + 4, (epoch + 1) * STEPS_PER_EPOCH - 1
        t += 1
        writer.add_scalar("train/loss_step", 2.0 - epoch * 0.1, mid, walltime=t)
        writer.add_scalar("epoch", epoch, mid, walltime=t)
        writer.add_scalar("val/acc1", acc, end, walltime=t)
        writer.add_scalar("epoch", epoch, end, walltime=t)
        if proportions:
            for tag, value in zip(("on_center", "off_center", "other"), proportions[epoch + 1]):
                writer.add_scalar(f"kernels/proportion/{tag}", value, (epoch + 1) * STEPS_PER_EPOCH, walltime=t)
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
            if model == CONVMIXER and init_name == "dog" and seed == 1:
                # resumed fit: the callback logged no init/* keys; the init comes from config.yaml
                dog_args = {"gamma_range": [0.0, 1.0], "on_center_prob": 0.5, "dog_share": 1.0, "scale": "unit",
                            "radius": None}
                kwargs["config_init"] = {"method": {"class_path": "neural_echos.init.dog.DoGInit", "init_args": dog_args},
                                         "name_filter": None, "seed": None}
                write_run(run_dir, model, None, seed, accs, **kwargs)
                continue
            write_run(run_dir, model, init, seed, accs, **kwargs)
    # an ablation with n = 1 (Lightning's default version_N layout)
    write_run(logs / "ablation" / "version_0", CONVNEXT, DOG_ABLATION, 7, [0.50, 0.60, 0.69, 0.67])
    write_run(logs / "ablation" / "version_1", CONVMIXER, DOG_ABLATION, 3, [0.50])
    # an older run of the same (model, init, seed) as a newer one: superseded, not averaged
    write_run(logs / "convnext_atto_kaiming" / "seed0_old", CONVNEXT, KAIMING, 0, [0.1, 0.2, 0.3, 0.4], walltime=1000.0)
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


@pytest.mark.parametrize(
    ("init", "label"),
    [
        ({"method": "kaiming_normal", "seed": 0, "gain": 1.41}, "kaiming_normal"),
        (DOG, "dog"),
        ({**DOG, "gamma_high": 0.5}, "dog γ∈(0,0.5)"),
        ({**DOG, "on_center_prob": 1.0}, "dog on-only"),
        ({**DOG, "on_center_prob": 0.0}, "dog off-only"),
        ({**DOG, "on_center_prob": 0.7}, "dog on=0.7"),
        ({**DOG, "dog_share": 0.5}, "dog share=0.5"),
        ({**DOG, "scale": "kaiming"}, "dog scale=kaiming"),
        ({**DOG, "scale": "match", "dog_share": 0.5}, "dog share=0.5, scale=match"),
        ({**DOG, "radius": 2.0}, "dog radius=2"),
        ({"method": "dog"}, "dog"),  # unset settings are the defaults
        ({"method": "kaiming_normal", "name_filter": "stages.3"}, "kaiming_normal filter=stages.3"),
        ({"method": "gaussian_covariance", "scale": "kaiming"}, "gaussian_covariance"),
        ({"method": "gaussian_covariance", "scale": "match"}, "gaussian_covariance scale=match"),
        ({"method": "covariance", "scale": "match"}, "covariance scale=match"),  # logged before the rename
        ({"method": "none"}, "none"),
    ],
)
def test_init_label(init, label):
    assert init_label(init) == label


def test_model_label():
    assert model_label("convnext_tiny", {"kernel_sizes": 9, "drop_path_rate": 0.1}) == "convnext_tiny(drop_path_rate=0.1, kernel_sizes=9)"
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
    assert [row["init"] for row in rows[:3]] == ["kaiming_normal", "dog", "dog γ∈(0,0.5), on-only"]
    # the returned groups carry the same numbers unrounded
    dog = next(g for g in result["groups"] if g["model"].startswith("convnext") and g["init"] == "dog")
    assert dog["final_acc1_mean"] == pytest.approx(72.0, abs=1e-4)
    assert dog["final_acc1_std"] == pytest.approx(7 ** 0.5, abs=1e-4)
    assert dog["delta_final"] == pytest.approx(6.0, abs=1e-4)


def test_cluster_proportions_in_csv(reported):
    _, out, _ = reported
    rows = {(row["model"], row["init"]): row for row in read_csv(out / "results.csv")}
    convnext = "convnext_atto(drop_path_rate=0.1, kernel_sizes=7)"
    # final on-center share: 0.4 + 0.05 * seed + 0.04, averaged over seeds 0, 1, 2
    assert rows[(convnext, "dog")]["final_on_center"] == "0.4900"
    assert rows[(convnext, "dog")]["final_off_center"] == "0.3000"
    assert rows[(convnext, "kaiming_normal")]["final_on_center"] == "0.1400"
    # the ablation run logged none: blank, not a partial mean
    assert rows[(convnext, "dog γ∈(0,0.5), on-only")]["final_on_center"] == ""


def test_missing_baseline_says_na(tmp_path):
    logs = tmp_path / "logs"
    write_run(logs / "a" / "version_0", CONVNEXT, DOG, 0, [0.5, 0.6])
    write_run(logs / "a" / "version_1", CONVNEXT, DOG, 1, [0.5, 0.7])
    result = report([logs], tmp_path / "out")
    (row,) = read_csv(tmp_path / "out" / "results.csv")
    assert (row["delta_best"], row["delta_final"], row["baseline"]) == ("n/a", "n/a", "n/a")
    assert (row["final_acc1_mean"], row["final_acc1_std"]) == ("65.0000", "7.0711")
    assert result["groups"][0]["delta_final"] is None
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
    # ConvMixer runs logged no cluster proportions: the plot is skipped with a note
    notes = " ".join(result["notes"])
    assert "convmixer(depth=8, dim=256, kernel_size=5, patch_size=2): no kernel cluster proportions logged" in notes


def test_differing_settings_are_noted(tmp_path):
    logs = tmp_path / "logs"
    write_run(logs / "a" / "version_0", CONVNEXT, KAIMING, 0, [0.5, 0.6])
    write_run(logs / "b" / "version_0", CONVNEXT, DOG, 0, [0.5, 0.7], extra_hparams={"lr": 0.004})
    write_run(logs / "b" / "version_1", CONVNEXT, DOG, 1, [0.5])
    result = report([logs / "a", logs / "b" / "version_0", logs / "b" / "version_1"], tmp_path / "out")
    notes = "\n".join(result["notes"])
    assert "differ in more than the init" in notes and "lr (0.002, 0.004)" in notes
    assert "fewer validated epochs" in notes and "version_1 (1)" in notes


@pytest.mark.slow
def test_cli_through_run_py(reported, tmp_path):
    """``python run.py report`` once the lead wires it; until then ``python -m neural_echos.report``."""
    logs, _, _ = reported
    run_py = (REPO / "run.py").read_text(encoding="utf-8")
    command = [sys.executable, "run.py", "report"] if '"report"' in run_py else [sys.executable, "-m", "neural_echos.report"]
    done = subprocess.run([*command, str(logs), "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stdout and (tmp_path / "out" / "results.csv").exists()
    bad = subprocess.run([*command, str(tmp_path / "nope")], cwd=REPO, capture_output=True, text=True, timeout=300)
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
