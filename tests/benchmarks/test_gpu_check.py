"""benchmarks/gpu_check.py --smoke: every code path of the GPU check, on the CPU in tiny sizes,
so that the script cannot rot between the times it meets a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_smoke_runs_every_section():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for line in (
        "32-true ",
        "bf16-mixed ",
        "bf16-mixed + compile (aot_eager)",
        "pipeline=workers",
        "pipeline=device",
        "3. DoG init",
        "4. one kernel snapshot",
        "5. 1-device DDP fit",
    ):
        assert line in out, (line, out)
    assert "Traceback" not in result.stderr


def test_gpu_check_without_a_gpu_says_what_to_do():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "--smoke" in result.stderr and "Traceback" not in result.stderr
