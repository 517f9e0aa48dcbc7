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

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "configs" / "cifar10").glob("*.yaml"))


def _run_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("NEURAL_ECHOS_TRACEBACK", None)
    return subprocess.run(
        [sys.executable, str(REPO / "run.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_recipe_runs_fast_dev_run(recipe, cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run.main(["fit", "--config", str(recipe), "--data.init_args.root", str(cifar_root),
              "--data.init_args.batch_size", "16", "--trainer.fast_dev_run", "true",
              "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"])


@pytest.mark.slow
def test_group_configs_compose_and_command_line_overrides(cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "printed.yaml"
    args = ["fit", "--config", str(REPO / "configs/trainer/cpu.yaml"), "--config", str(REPO / "configs/data/cifar10.yaml"),
            "--config", str(REPO / "configs/model/convmixer_256_8.yaml"), "--model.lr", "0.123", "--print_config"]
    result = _run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert config["trainer"]["accelerator"] == "cpu"  # from the trainer file
    assert config["data"]["init_args"]["root"] == "data/cifar10"  # from the data file
    assert config["model"]["model_name"] == "convmixer" and config["model"]["lr"] == 0.123  # model file + override
    out.write_text(result.stdout)
    again = _run_cli(["fit", "--config", str(out), "--print_config"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert yaml.safe_load(again.stdout) == config  # --print_config round-trips


@pytest.mark.slow
def test_config_typo_is_a_clear_error(tmp_path):
    result = _run_cli(["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"), "--trainer.max_epoks", "3"], tmp_path)
    assert result.returncode == 2
    assert "max_epoks" in result.stderr and "Traceback" not in result.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text("model:\n  learning_rate: 0.1\n")
    result = _run_cli(["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"), "--config", str(typo)], tmp_path)
    assert result.returncode == 2
    assert "learning_rate" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_wrong_data_root_is_one_error_line(tmp_path):
    result = _run_cli(["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"),
                       "--data.init_args.root", str(tmp_path / "nowhere"), "--data.init_args.download", "false",
                       "--trainer.fast_dev_run", "true"], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: CIFAR-10 root" in result.stderr and "--data.root" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_unknown_model_name_is_one_error_line(cifar_root, tmp_path):
    result = _run_cli(["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"),
                       "--data.init_args.root", str(cifar_root), "--model.model_name", "convnext_atoo",
                       "--trainer.fast_dev_run", "true"], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "unknown timm model 'convnext_atoo'" in result.stderr and "convnext_atto" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_out_of_range_parameter_is_one_error_line(cifar_root, tmp_path):
    result = _run_cli(["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"),
                       "--data.init_args.root", str(cifar_root), "--model.lr", "-1", "--trainer.fast_dev_run", "true"], tmp_path)
    assert result.returncode == 2
    assert "error: lr must be > 0" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_out_of_range_data_parameter_is_one_error_line(cifar_root, tmp_path):
    result = _run_cli(["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"),
                       "--data.root", str(cifar_root), "--data.val_split", "1.5", "--trainer.fast_dev_run", "true"], tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: val_split is a fraction" in result.stderr and "Traceback" not in result.stderr


def test_progress_bar_and_logger_can_be_switched_off(cifar_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run.main(["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"), "--data.init_args.root", str(cifar_root),
              "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--trainer.logger", "false"])


TRAINER_PRESETS = sorted((REPO / "configs" / "trainer").glob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("preset", TRAINER_PRESETS, ids=[p.stem for p in TRAINER_PRESETS])
def test_every_trainer_preset_parses(preset, tmp_path):
    result = _run_cli(["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"), "--config", str(preset),
                       "--print_config"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert yaml.safe_load(result.stdout)["trainer"]["accelerator"] in ("cpu", "gpu")


@pytest.mark.slow
def test_two_process_cpu_ddp_preset_runs(cifar_root, tmp_path):
    result = _run_cli(["fit", "--config", str(REPO / "configs/cifar10/quickstart.yaml"), "--config",
                       str(REPO / "configs/trainer/ddp_cpu.yaml"), "--config", str(REPO / "configs/init/dog.yaml"),
                       "--data.root", str(cifar_root), "--data.batch_size", "8", "--trainer.max_epochs", "1",
                       "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
                       "--trainer.enable_progress_bar", "false"], tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    versions = list((tmp_path / "logs" / "quickstart").iterdir())
    assert len(versions) == 1 and (versions[0] / "checkpoints" / "last.ckpt").exists()
