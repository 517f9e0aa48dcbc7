"""SLURM simulated on one machine (there is no SLURM here): scripts/slurm.sbatch run by bash as
the batch step of a 2-node x 1-task job, its ``srun`` a stand-in that starts the two tasks with
the SLURM_* variables srun sets (tests/helpers/slurm/srun), ``scontrol`` a stub that records the
requeue. Lightning's SLURMEnvironment wires the two processes (gloo, 127.0.0.1); SIGUSR1 makes
Lightning save ``hpc_ckpt_1.ckpt`` and call ``scontrol requeue``; the test then kills the job as
SLURM does and starts it again, same job id and command, and the run continues from the hpc
checkpoint in the same run folder. Not simulated: real multi-node networking, the scheduler."""

from __future__ import annotations

import os
import random
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

REPO = Path(__file__).resolve().parents[1]
SBATCH = REPO / "scripts" / "slurm.sbatch"
FAKE_BIN = REPO / "tests" / "helpers" / "slurm"
STEPS_PER_EPOCH, EPOCHS, SIGNAL_AT_STEP = 4, 2, 6  # the signal comes in the middle of the second epoch


def _job_id_with_free_port() -> str:
    """A job id whose last four digits give a free port: Lightning's SLURMEnvironment takes
    MASTER_PORT = 15000 + those digits when MASTER_PORT is unset."""
    for _ in range(100):
        port = random.randint(15000, 24999)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return f"7{port - 15000:04d}"
    raise RuntimeError("no free port in 15000-24999")


def _batch_env(submit: Path, job_id: str, **extra: str) -> dict[str, str]:
    """What the batch step of `sbatch --nodes=2 --ntasks-per-node=1 --cpus-per-task=1` sees."""
    launcher_vars = ("SLURM_", "MASTER_", "TORCHELASTIC_", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(launcher_vars)}
    nodes = "127.0.0.1,localhost"  # two names of this machine, as two nodes
    return {
        **clean,
        "PATH": f"{FAKE_BIN}{os.pathsep}{clean.get('PATH', '')}",
        "PYTHON": sys.executable,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "SLURM_JOB_ID": job_id,
        "SLURM_JOB_NAME": "neural-echos",
        "SLURM_SUBMIT_DIR": str(submit),
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS": "2",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_CPUS_PER_TASK": "1",
        "SLURM_JOB_NODELIST": nodes,
        "SLURM_NODELIST": nodes,
        **extra,
    }


def _wait_for(condition, what: str, job: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if job.poll() is not None:
            pytest.fail(f"the job ended (status {job.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


def _sbatch_command(tmp_path: Path, *args: str) -> list[str]:
    """The srun command scripts/slurm.sbatch runs in a 2-node x 8-GPU job (the #SBATCH header's)."""
    printed = tmp_path / "srun-command"
    env = _batch_env(
        REPO,
        "123",
        FAKE_SRUN_PRINT=str(printed),
        SLURM_NTASKS="16",
        SLURM_NTASKS_PER_NODE="8",
        SLURM_CPUS_PER_TASK="10",
    )
    done = subprocess.run(["bash", str(SBATCH), *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return printed.read_text().splitlines()


def _parsed(command: list[str], capsys, monkeypatch) -> dict:
    """The config run.py would train with: the command's arguments parsed by run.py's CLI."""
    assert command[:3] == [sys.executable, "run.py", "fit"], command
    from neural_echos import cli

    monkeypatch.chdir(REPO)  # the submit directory: the configs are relative to it
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        cli.main([*command[2:], "--print_config"])
    assert done.value.code == 0
    return yaml.safe_load(capsys.readouterr().out)


def test_the_sbatch_script_runs_a_command_that_follows_the_allocation(tmp_path, capsys, monkeypatch):
    assert subprocess.run(["bash", "-n", str(SBATCH)]).returncode == 0
    header = [line.split()[1] for line in SBATCH.read_text().splitlines() if line.startswith("#SBATCH")]
    assert "--requeue" in header and "--signal=SIGUSR1@90" in header
    # the usage in the script's header (and README): a recipe that sets `devices: 8` and no num_nodes
    usage = [
        "--config",
        "configs/experiments/imagenet/convnext_tiny_k7.yaml",
        "--config",
        "configs/init/dog.yaml",
        "--data.root",
        "/path/to/imagenet",
    ]
    config = _parsed(_sbatch_command(tmp_path, *usage), capsys, monkeypatch)
    trainer = config["trainer"]
    # devices as given on a command line (a string; Lightning reads "8" as 8 devices)
    allocation = (trainer["num_nodes"], str(trainer["devices"]), trainer["strategy"], trainer["accelerator"])
    assert allocation == (2, "8", "ddp", "gpu")
    assert (
        trainer["sync_batchnorm"] is True and trainer["max_epochs"] == 50
    )  # the preset's, then the recipe's
    assert trainer["logger"]["init_args"]["version"] == "slurm-123"  # the requeued job (same id) writes there
    data = config["data"]["init_args"]
    assert data["num_workers"] == 9 and data["root"] == "/path/to/imagenet"


def test_sweep_jobs_through_the_sbatch_script_keep_the_sweeps_run_names(tmp_path, capsys, monkeypatch):
    env = {**os.environ, "SBATCH_SCRIPT": "scripts/slurm.sbatch"}
    sweep = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "sweep.sh"),
            "--slurm",
            "--dry-run",
            "--inits",
            "dog",
            "--seeds",
            "1",
            "--tag",
            "t1",
            "configs/experiments/imagenet/convnext_tiny_k7.yaml",
            "--",
            "--data.init_args.root",
            "/data/imagenet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sweep.returncode == 0, sweep.stderr
    submit = shlex.split(sweep.stdout.splitlines()[-1])
    args = submit[submit.index("scripts/slurm.sbatch") + 1 :]
    assert args[0] == "fit"  # sweep.sh gives the job script run.py's arguments
    config = _parsed(_sbatch_command(tmp_path, *args), capsys, monkeypatch)
    assert config["trainer"]["logger"]["init_args"]["version"] == "seed1-t1"
    assert config["seed_everything"] == 1
    assert (config["trainer"]["num_nodes"], str(config["trainer"]["devices"])) == (2, "8")


@pytest.mark.slow
def test_sigusr1_saves_an_hpc_checkpoint_requeues_and_the_job_resumes_into_the_same_run(cifar_root, tmp_path):
    submit = tmp_path / "submit"  # the submit directory: a checkout's run.py and configs/
    submit.mkdir()
    for name in ("run.py", "configs"):
        (submit / name).symlink_to(REPO / name)
    waits, weights = tmp_path / "waits", tmp_path / "weights"
    waits.mkdir(), weights.mkdir()
    job_id = _job_id_with_free_port()
    requeues = tmp_path / "scontrol.log"
    env = _batch_env(
        submit,
        job_id,
        FAKE_SCONTROL_LOG=str(requeues),
        NE_WAIT_DIR=str(waits),
        NE_RANK_WEIGHTS_DIR=str(weights),
    )
    args = [
        "--config",
        "configs/cifar10/quickstart.yaml",
        "--config",
        "configs/init/dog.yaml",
        "--data.root",
        str(cifar_root),
        "--data.batch_size",
        "8",
        "--trainer.max_epochs",
        str(EPOCHS),
        "--trainer.limit_train_batches",
        str(STEPS_PER_EPOCH),
        "--trainer.limit_val_batches",
        "1",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks+=tests.helpers.wait_for_signal.WaitForSignal",
        "--trainer.callbacks+=tests.helpers.save_rank_weights.SaveRankWeights",
    ]

    # the job: both tasks stop at step 6; SIGUSR1 to every task, as `sbatch --signal=SIGUSR1@90` sends it
    log1 = tmp_path / "job1.log"
    with open(log1, "w") as out:
        job = subprocess.Popen(
            ["bash", str(SBATCH), *args],
            cwd=submit,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "NE_WAIT_AT_STEP": str(SIGNAL_AT_STEP)},
        )
    ready = [waits / f"waiting-rank{r}" for r in (0, 1)]
    _wait_for(
        lambda: all(p.exists() and p.read_text() for p in ready),
        f"both ranks at step {SIGNAL_AT_STEP}",
        job,
        log1,
    )
    pids = [int(p.read_text()) for p in ready]
    for pid in pids:
        os.kill(pid, signal.SIGUSR1)
    _wait_for(lambda: requeues.exists() and requeues.read_text(), "scontrol requeue", job, log1, timeout=120)
    # what SLURM does to a requeued job: SIGTERM to every task, SIGKILL after KillWait
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    try:
        job.wait(timeout=60)  # SLURM's KillWait is 30 s by default; the CI cores are shared
    except subprocess.TimeoutExpired:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the tasks did not stop within 60 s of SIGTERM:\n{log1.read_text()[-4000:]}")

    text1 = log1.read_text()
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in text1, text1[-3000:]
    assert requeues.read_text().splitlines() == [f"requeue {job_id}"]  # once, by rank zero
    run = submit / "logs" / "quickstart" / "dog" / f"slurm-{job_id}"  # logs/<name>/<init>/<version>
    hpc = run / "hpc_ckpt_1.ckpt"
    assert hpc.is_file(), sorted(str(p.relative_to(submit)) for p in submit.rglob("*.ckpt"))
    assert not list(submit.glob("hpc_ckpt_*"))  # not in the submit directory, Lightning's default
    saved = torch.load(hpc, map_location="cpu", weights_only=True)
    assert (saved["global_step"], saved["epoch"]) == (SIGNAL_AT_STEP, 1)
    first_events = set(run.glob("events.out.tfevents.*"))

    # the requeued job: same job id, command and submit directory; SLURM counts the restart
    log2 = tmp_path / "job2.log"
    with open(log2, "w") as out:
        job2 = subprocess.run(
            ["bash", str(SBATCH), *args],
            cwd=submit,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**env, "SLURM_RESTART_COUNT": "1"},
            timeout=600,
        )
    text2 = log2.read_text()
    assert job2.returncode == 0, text2[-4000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in text2
    assert f"Restoring states from the checkpoint path at {hpc.relative_to(submit)}" in text2, text2[-4000:]

    # one set of logs: one run folder, its config saved once and the resume's beside it
    assert list((submit / "logs").glob("*/*/*")) == [run]
    assert sorted(p.name for p in run.glob("config*.yaml")) == ["config.resume-1.yaml", "config.yaml"]
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == EPOCHS * STEPS_PER_EPOCH

    def steps(files, tag):
        found = []
        for file in sorted(files):
            events = EventAccumulator(str(file))
            events.Reload()
            found += [e.step for e in events.Scalars(tag)] if tag in events.Tags()["scalars"] else []
        return found

    second_events = set(run.glob("events.out.tfevents.*")) - first_events
    assert second_events
    # every step logged once: the first job up to the checkpoint, the requeued one from there
    assert steps(first_events, "train/loss_step") == list(range(SIGNAL_AT_STEP))
    total = EPOCHS * STEPS_PER_EPOCH
    assert steps(second_events, "train/loss_step") == list(range(SIGNAL_AT_STEP, total))
    # the kernel snapshots continue: step 0 and each epoch end, once each
    assert steps(first_events, "kernels/proportion/other") == [0, STEPS_PER_EPOCH - 1]
    assert steps(second_events, "kernels/proportion/other") == [total - 1]
    assert steps(first_events | second_events, "val/acc1") == [STEPS_PER_EPOCH - 1, total - 1]

    # identical weights on both ranks, and those of the run's last checkpoint
    rank0, rank1 = (torch.load(weights / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys() == last["state_dict"].keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(rank0[key], last["state_dict"][key], rtol=0, atol=0, msg=key)
