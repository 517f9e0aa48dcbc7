"""run.py: every shipped recipe runs (fast_dev_run), configs compose and round-trip, and bad
input ends in one clear error line with exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import run
from neural_echos import cli  # noqa: F401  (Lightning imported here: its log handlers take the real stderr, not one test's capture)

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs" / "cifar10").glob("*.yaml"))


def _run_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NEURAL_ECHOS_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_runs_fast_dev_run(recipe, cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run.main(
        [
            "fit",
            "--config",
            str(recipe),
            "--data.init_args.root",
            str(cifar_root),
            "--data.init_args.batch_size",
            "16",
            "--trainer.fast_dev_run",
            "true",
            "--trainer.accelerator",
            "cpu",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )


@pytest.mark.slow
def test_group_configs_compose_and_command_line_overrides(cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "printed.yaml"
    args = [
        "fit",
        "--config",
        str(REPO / "configs/trainer/cpu.yaml"),
        "--config",
        str(REPO / "configs/data/cifar10.yaml"),
        "--config",
        str(REPO / "configs/model/convmixer_256_8.yaml"),
        "--model.lr",
        "0.123",
        "--print_config",
    ]
    result = _run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["trainer"]["accelerator"] == "cpu"  # from the trainer file
    assert config["data"]["init_args"]["root"] == "data/cifar10"  # from the data file
    assert (
        config["model"]["model_name"] == "convmixer" and config["model"]["lr"] == 0.123
    )  # model file + override
    out.write_text(result.stdout)
    again = _run_cli(["fit", "--config", str(out), "--print_config"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert yaml.safe_load(again.stdout) == config  # --print_config round-trips


@pytest.mark.slow
def test_config_typo_is_a_clear_error(tmp_path):
    result = _run_cli(
        ["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"), "--trainer.max_epoks", "3"],
        tmp_path,
    )
    assert result.returncode == 2
    assert "max_epoks" in result.stderr and "Traceback" not in result.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  learning_rate: 0.1\n")
    result = _run_cli(
        ["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"), "--config", str(typo)], tmp_path
    )
    assert result.returncode == 2
    assert "learning_rate" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_wrong_data_root_is_one_error_line(tmp_path):
    result = _run_cli(
        [
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--data.init_args.root",
            str(tmp_path / "nowhere"),
            "--data.init_args.download",
            "false",
            "--trainer.fast_dev_run",
            "true",
        ],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: CIFAR-10 root" in result.stderr and "--data.root" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_unknown_model_name_is_one_error_line(cifar_root, tmp_path):
    result = _run_cli(
        [
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--data.init_args.root",
            str(cifar_root),
            "--model.model_name",
            "convnext_atoo",
            "--trainer.fast_dev_run",
            "true",
        ],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "unknown timm model 'convnext_atoo'" in result.stderr and "convnext_atto" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_kernel_size_that_breaks_the_model_is_one_error_line(cifar_root, tmp_path):
    result = _run_cli(
        [
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--data.init_args.root",
            str(cifar_root),
            "--model.model_kwargs.kernel_sizes",
            "4",
            "--trainer.fast_dev_run",
            "true",
        ],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert (
        "error: timm model 'convnext_atto' with model_kwargs {'drop_path_rate': 0.1, 'kernel_sizes': 4} fails"
        in result.stderr
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "logs").exists()


@pytest.mark.slow
def test_out_of_range_parameter_is_one_error_line(cifar_root, tmp_path):
    result = _run_cli(
        [
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--data.init_args.root",
            str(cifar_root),
            "--model.lr",
            "-1",
            "--trainer.fast_dev_run",
            "true",
        ],
        tmp_path,
    )
    assert result.returncode == 2
    assert "error: lr must be > 0" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_out_of_range_data_parameter_is_one_error_line(cifar_root, tmp_path):
    result = _run_cli(
        [
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--data.root",
            str(cifar_root),
            "--data.val_split",
            "1.5",
            "--trainer.fast_dev_run",
            "true",
        ],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: val_split is a fraction" in result.stderr and "Traceback" not in result.stderr


def test_progress_bar_and_logger_can_be_switched_off(cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run.main(
        [
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--data.init_args.root",
            str(cifar_root),
            "--trainer.fast_dev_run",
            "true",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
            "--trainer.logger",
            "false",
        ]
    )


TRAINER_PRESETS = sorted((REPO / "configs" / "trainer").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("preset", TRAINER_PRESETS, ids=[p.stem for p in TRAINER_PRESETS])
def test_every_trainer_preset_parses(preset, tmp_path):
    result = _run_cli(
        [
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--config",
            str(preset),
            "--print_config",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert yaml.safe_load(result.stdout)["trainer"]["accelerator"] in ("cpu", "gpu")


@pytest.mark.slow
def test_two_process_cpu_ddp_preset_runs(cifar_root, tmp_path):
    result = _run_cli(
        [
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--config",
            str(REPO / "configs/trainer/ddp_cpu.yaml"),
            "--config",
            str(REPO / "configs/init/dog.yaml"),
            "--data.root",
            str(cifar_root),
            "--data.batch_size",
            "8",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "2",
            "--trainer.limit_val_batches",
            "1",
            "--trainer.enable_progress_bar",
            "false",
        ],
        tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    versions = list((tmp_path / "logs" / "quickstart" / "dog").iterdir())  # <recipe>/<init method>/<version>
    assert len(versions) == 1 and (versions[0] / "checkpoints" / "last.ckpt").exists()


# --------------------------------------------------------------------------------------------
# one error path: `error: ...` on one line, exit status 2, for every subcommand (in-process)


def _one_error_line(capsys, args: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run.main(args)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), captured.err
    assert "usage:" not in captured.err and "Traceback" not in captured.err, captured.err
    return lines[-1]


TINY_MODEL = [
    "--model.model_name",
    "convmixer",
    "--model.model_kwargs",
    "{dim: 16, depth: 1, kernel_size: 3, patch_size: 4}",
]


def test_no_or_unknown_subcommand_names_all_of_them(capsys):
    line = _one_error_line(capsys, [])
    assert "no subcommand" in line and "analyze" in line and "report" in line
    assert "unknown subcommand 'fot' (did you mean 'fit'?)" in _one_error_line(capsys, ["fot"])


def test_help_mentions_analyze_and_report(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "run.py analyze --help" in out and "run.py report --help" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--trainer.max_epoks", "3"],
            (
                "unrecognized arguments: --trainer.max_epoks 3; did you mean --trainer.max_epochs? (run "
                "`python run.py fit --help`"
            ),
        ),
        (["--model.lr", "abc"], "Parser key \"model.lr\": Expected a <class 'float'>. Got value: abc"),
        (["--config", "typo.yaml"], "does not accept option 'model.learning_rate'"),
        (["--config", "bad.yaml"], "config file 'bad.yaml' is not valid YAML at line 3"),
        (["--config", "nowhere.yaml"], "File does not exist"),
    ],
    ids=["typo", "type", "typo-in-file", "yaml", "missing-file"],
)
def test_config_errors_are_one_line_with_a_hint(extra, message, cifar_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "typo.yaml").write_text("model:\n  learning_rate: 0.1\n")
    (tmp_path / "bad.yaml").write_text("model:\n  lr: [1\n")
    line = _one_error_line(capsys, ["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"), *extra])
    assert message in line


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--trainer.max_epochs", "-5"],
            "`max_epochs` must be a non-negative integer or -1. You passed in -5",
        ),
        (["--trainer.devices", "0"], "Lightning trainer setting"),
    ],
    ids=["max_epochs", "devices"],
)
def test_lightning_misconfiguration_is_one_line(extra, message, cifar_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--config",
        str(REPO / "configs/cifar10/quickstart.yaml"),
        "--data.root",
        str(cifar_root),
        *TINY_MODEL,
    ]
    line = _one_error_line(capsys, [*args, *extra])
    assert message in line and "run.py fit --help" in line


def test_gpu_accelerator_without_a_gpu_is_one_line(cifar_root, tmp_path, monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)
    line = _one_error_line(
        capsys,
        [
            "fit",
            "--config",
            str(REPO / "configs/cifar10/quickstart.yaml"),
            "--data.root",
            str(cifar_root),
            *TINY_MODEL,
            "--trainer.accelerator",
            "gpu",
        ],
    )
    assert "gpu" in line.lower() and "Lightning trainer setting" in line


def test_neural_echos_traceback_keeps_the_traceback(tmp_path, monkeypatch):
    from neural_echos.cli.parse_errors import ConfigParseError

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEURAL_ECHOS_TRACEBACK", "1")
    with pytest.raises(ConfigParseError, match="max_epoks"):
        run.main(
            ["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"), "--trainer.max_epoks", "3"]
        )
    with pytest.raises(Exception, match="no subcommand"):
        run.main([])


def test_file_system_errors_of_analyze_are_one_line(tmp_path, capsys):
    """A full disk under --out (summary.json on /dev/full: ENOSPC) and a file where a folder should be."""
    import torch

    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    torch.save({"dw.weight": torch.randn(8, 1, 3, 3)}, tmp_path / "k.pt")
    full = tmp_path / "full"
    full.mkdir()
    (full / "summary.json").symlink_to("/dev/full")
    line = _one_error_line(capsys, ["analyze", "--checkpoint", str(tmp_path / "k.pt"), "--out", str(full)])
    assert "No space left on device" in line and "free space" in line
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "layers").write_text("a file where analyze puts a folder")
    assert "cannot create output folder" in _one_error_line(
        capsys, ["analyze", "--checkpoint", str(tmp_path / "k.pt"), "--out", str(blocked)]
    )


def test_report_with_a_missing_folder_is_one_line(tmp_path, capsys):
    assert "does not exist" in _one_error_line(capsys, ["report", str(tmp_path / "nowhere")])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["analyze", "--model", "convnext_tiny", "--treshold", "0.6"],
            (
                "error: unrecognized arguments: --treshold 0.6; did you mean --threshold? (run `python "
                "run.py analyze --help`"
            ),
        ),
        (["analyze", "--max-bytes", "-5"], "error: argument --max-bytes: must be a positive whole number"),
        (["survey", "--modle", "x"], "error: unrecognized arguments: --modle x; did you mean --model?"),
        (["report", "--outt", "x"], "error: unrecognized arguments: --outt; did you mean --out?"),
        (
            ["report"],
            "error: the following arguments are required: LOGDIR (run `python run.py report --help`",
        ),
    ],
    ids=["analyze-typo", "analyze-negative-bound", "survey-typo", "report-typo", "report-no-logdir"],
)
def test_argparse_subcommands_give_one_error_line(args, message, capsys):
    assert _one_error_line(capsys, args).startswith(message)


def test_report_with_a_file_as_logdir_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a log folder")
    assert "is a file, not a log directory" in _one_error_line(
        capsys, ["report", str(tmp_path / "notes.txt")]
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model.optimizer", "sgd", "--model.momentum", "-1"], "error: momentum must be >= 0, got -1"),
        (
            ["--model.warmup_lr", "-1"],
            "error: warmup_lr (the learning rate the warmup starts from) must be >= 0",
        ),
        (
            ["--model.in_chans", "1"],
            (
                "error: --model.in_chans 1, but CIFAR10DataModule yields 3-channel images: set "
                "--model.in_chans 3"
            ),
        ),
        (
            ["--model.mixup_alpha", "0.8", "--data.batch_size", "7"],
            "the batch size must be even; got --data.batch_size 7",
        ),
        (
            ["--trainer.precision", "64-true"],
            "error: --trainer.precision 64-true: the data pipelines give float32",
        ),
        (["--seed_everything", "99999999999"], "error: --seed_everything 99999999999 is out of range"),
    ],
    ids=["momentum", "warmup_lr", "in_chans", "mixup-odd-batch", "precision-64", "seed"],
)
def test_settings_that_failed_inside_the_run_are_one_line(
    extra, message, cifar_root, tmp_path, monkeypatch, capsys
):
    """Each was a traceback from inside the first step (or trained silently: warmup_lr -1)."""
    monkeypatch.chdir(tmp_path)
    args = [
        "fit",
        "--config",
        str(REPO / "configs/cifar10/quickstart.yaml"),
        "--data.root",
        str(cifar_root),
        *TINY_MODEL,
        "--trainer.fast_dev_run",
        "true",
        "--trainer.logger",
        "false",
    ]
    line = _one_error_line(capsys, [*args, *extra])
    assert line.startswith(message) or message in line
