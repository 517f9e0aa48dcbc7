"""The end of every run says where it went and what to do next; Ctrl-C ends with the resume command
and exit status 130, its last checkpoint intact."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import run

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "--model.model_name",
    "convmixer",
    "--model.model_kwargs",
    "{dim: 16, depth: 1, kernel_size: 5, patch_size: 4}",
    "--data.batch_size",
    "16",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]


def fit_args(cifar_root: Path, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        str(REPO / "configs/cifar10/quickstart.yaml"),
        "--data.root",
        str(cifar_root),
        *TINY,
        *extra,
    ]


@pytest.mark.slow
def test_a_fit_ends_with_where_it_went_and_what_to_run_next(cifar_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run.main(fit_args(cifar_root, "--trainer.max_epochs", "2"))
    out = capsys.readouterr().out
    tail = out[out.index("fit done") :].splitlines()
    folder = Path("logs/quickstart/none/version_0")
    assert tail[0] == "fit done: 2 epoch(s) trained, 4 steps"
    assert tail[1] == f"run folder: {folder}"
    assert tail[2].startswith("val/acc1: best ") and "best-epoch" in tail[2] and ", last " in tail[2]
    assert tail[3].startswith("kernels at the last snapshot: on_center ") and tail[3].count("(chance ") == 3
    commands = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1] for line in tail[5:]}
    assert commands["TensorBoard"].startswith("tensorboard --logdir logs")
    analyze = shlex.split(commands["analyze the kernels"])
    assert analyze[:4] == ["python", "run.py", "analyze", "--checkpoint"] and Path(analyze[4]).is_file()
    resume = shlex.split(commands["train on (raise --trainer.max_epochs)"])
    assert resume == [
        "python",
        "run.py",
        "fit",
        "--config",
        str(folder / "config.yaml"),
        "--ckpt_path",
        str(folder / "checkpoints/last.ckpt"),
        "--trainer.max_epochs",
        "4",
    ]
    run.main(resume[2:])  # the printed command trains on
    assert "fit done: 4 epoch(s) trained, 8 steps" in capsys.readouterr().out
    last = folder / "checkpoints/last.ckpt"
    run.main(["validate", "--config", str(folder / "config.yaml"), "--ckpt_path", str(last)])
    tail = capsys.readouterr().out.split("validate done")[1].splitlines()
    assert tail[1] == f"run folder: {folder}" and tail[2].startswith("val/acc1: last ")
    assert tail[-1] == f"  analyze the kernels: python run.py analyze --checkpoint {last}"


@pytest.mark.slow
def test_ctrl_c_ends_with_the_resume_command_and_status_130(cifar_root, tmp_path):
    wait_dir = tmp_path / "wait"
    wait_dir.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "NE_WAIT_AT_STEP": "3",
        "NE_WAIT_DIR": str(wait_dir),
        "OMP_NUM_THREADS": "1",
    }
    args = fit_args(
        cifar_root,
        "--trainer.max_epochs",
        "3",
        "--snapshot.every_n_epochs",
        "0",
        "--trainer.callbacks+=tests.helpers.wait_for_signal.WaitForSignal",
    )
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (wait_dir / "waiting-rank0").exists():  # step 3: epoch 2 of 3, after epoch 1's last.ckpt
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    folder = Path("logs/quickstart/none/version_0")
    last = folder / "checkpoints/last.ckpt"
    assert err.strip().splitlines()[-1] == (
        f"interrupted: resume with python run.py fit --config {folder / 'config.yaml'} --ckpt_path {last}"
    )
    checkpoint = torch.load(tmp_path / last, map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == 2 and checkpoint["epoch"] == 0  # epoch 1's, whole
    resume = [
        sys.executable,
        str(REPO / "run.py"),
        "fit",
        "--config",
        str(folder / "config.yaml"),
        "--ckpt_path",
        str(last),
        "--trainer.max_epochs",
        "2",
    ]
    resumed = subprocess.run(
        resume, cwd=tmp_path, env={**env, "NE_WAIT_AT_STEP": "-1"}, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "fit done: 2 epoch(s) trained, 4 steps" in resumed.stdout


def test_the_commands_name_the_interpreter_the_user_ran(tmp_path, monkeypatch):
    """After `make quickstart` the printed commands say .venv/bin/python (a bare `python` may be
    another interpreter, without the requirements); an interpreter elsewhere is left to PATH."""
    from callbacks import run_summary

    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    for name in ("python", "tensorboard"):
        (venv_bin / name).write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_summary.sys, "executable", str(venv_bin / "python"))
    assert run_summary._command("python") == ".venv/bin/python"
    assert run_summary._command("tensorboard") == ".venv/bin/tensorboard"
    monkeypatch.setattr(run_summary.sys, "executable", "/usr/bin/python3")
    assert run_summary._command("python") == "python"
