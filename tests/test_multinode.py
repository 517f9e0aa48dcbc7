"""Multi-node DDP simulated on one machine: torchrun with 2 "nodes" x 1 process on 127.0.0.1
(gloo), through configs/trainer/ddp_multinode.yaml (accelerator and precision overridden for
the CPU): identical weights on both ranks, one set of logs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_nodes_one_process_each(cifar_root, tmp_path):
    port = str(_free_port())
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "NE_RANK_WEIGHTS_DIR": str(tmp_path),
        "OMP_NUM_THREADS": "1",
    }
    fit = [
        str(REPO / "run.py"),
        "fit",
        "--config",
        str(REPO / "configs/cifar10/quickstart.yaml"),
        "--config",
        str(REPO / "configs/trainer/ddp_multinode.yaml"),
        "--config",
        str(REPO / "configs/init/dog.yaml"),
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
        "--trainer.num_nodes",
        "2",
        "--trainer.precision",
        "32-true",
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.callbacks+=tests.helpers.save_rank_weights.SaveRankWeights",
        "--data.root",
        str(cifar_root),
        "--data.batch_size",
        "8",
    ]
    nodes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes",
                "2",
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(rank),
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                port,
                *fit,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, out in zip(nodes, outputs):
        assert node.returncode == 0, out[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in "".join(outputs)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    versions = list((tmp_path / "logs" / "quickstart" / "dog").iterdir())  # <recipe>/<init method>/<version>
    assert len(versions) == 1 and (versions[0] / "checkpoints" / "last.ckpt").exists()
    assert len(list(versions[0].glob("events.out.tfevents.*"))) == 1  # one writer: rank zero
