"""The analysis budget: the cost model and its bounds, checked from the shapes before any data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from neural_echos.budget import (
    CALIBRATION_KERNELS,
    DEFAULT_MAX_MEMORY,
    BudgetError,
    analysis_bytes,
    check_budget,
    n_templates,
)
from neural_echos.classifiers import base
from neural_echos.templates import template_bank

REPO = Path(__file__).resolve().parents[2]


def test_the_cost_model_follows_the_classifier():
    assert CALIBRATION_KERNELS == base.CALIBRATION_KERNELS
    for size in [(3, 3), (7, 7), (4, 4), (5, 3), (31, 31)]:  # the bank as it is at run time, counted unbuilt
        assert n_templates(*size) == len(template_bank(size)) > 0, size
    # per kernel size: the calibration rows dominate small inputs; the pixels count squared
    assert analysis_bytes([(16, 31, 31)]) > 20 * analysis_bytes([(16, 7, 7)]) // 10
    assert analysis_bytes([(16, 201, 201)]) > 16 * 2**30  # measured: 20.5 GB
    # per layer: 20,000 tiny layers cost gigabytes (measured: 3.8 GB)
    assert analysis_bytes([(2, 3, 3)] * 20_000) > 4 * 2**30 > DEFAULT_MAX_MEMORY - 1
    # sizes are classified one after another: two sizes cost the larger, not the sum
    one, two = analysis_bytes([(16, 31, 31)]), analysis_bytes([(16, 31, 31), (16, 7, 7)])
    assert two < one + analysis_bytes([(16, 7, 7)]) // 2


@pytest.mark.parametrize(
    ("layers", "options", "message"),
    [
        ([("big", 16, 201, 201)], {}, r"larger than 31x31 \(e.g. big \(201x201\)\).*--max-kernel-side"),
        ([("l", 2, 3, 3)] * 1001, {}, "has 1,001 depthwise layers, beyond the 1,000 .*--max-layers"),
        (
            [("big", 16, 51, 51)],
            {"max_kernel_side": 64, "max_memory": 2**30},
            "about 2.4 GiB .* --max-memory",
        ),
    ],
)
def test_each_bound_is_refused_with_its_option(layers, options, message):
    with pytest.raises(BudgetError, match=message):
        check_budget(layers, "the file", **options)


def test_the_bounds_admit_real_models():
    # convnext_xxlarge: 39 layers of 7x7, 11.1 MiB of kernels; RepLKNet-31B: 31x31
    check_budget([("stage", 1536, 7, 7)] * 39, "convnext")
    check_budget([("stage", 1024, 31, 31)] * 24, "replknet")


@pytest.mark.slow
def test_analyze_stays_within_an_address_space_limit(tmp_path):
    """The hostile cases of issue 19 (16 kernels of 201x201: 20.5 GB; 101x101: > 6 GB; 20,000
    layers of [2, 1, 3, 3]: 3.8 GB) are refused under a 2 GiB address-space limit (beyond the
    libraries), with one
    error line; a 31x31 file within the budget is analysed under the same limit."""
    files = {}
    for name, tensors in {
        "k201": {"b.0.weight": torch.randn(16, 1, 201, 201)},
        "k101": {"b.0.weight": torch.randn(16, 1, 101, 101)},
        "many": {f"b.{i}.weight": torch.randn(2, 1, 3, 3) for i in range(20_000)},
        "k31": {"b.0.weight": torch.randn(16, 1, 31, 31)},
    }.items():
        files[name] = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(files[name]))
    runs = [
        ["--checkpoint", str(files["k201"])],
        ["--checkpoint", str(files["k101"])],
        ["--checkpoint", str(files["many"])],
        ["--checkpoint", str(files["k201"]), "--max-kernel-side", "256", "--max-memory", str(2**30)],
        ["--checkpoint", str(files["k31"])],
    ]
    argv = [json.dumps([*run, "--out", str(tmp_path / f"out{i}")]) for i, run in enumerate(runs)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, str(REPO / "tests/helpers/analyze_under_limit.py"), "2048", *argv],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    outcomes = [json.loads(line) for line in result.stdout.splitlines()]
    for outcome, expected in zip(
        outcomes[:4], ["--max-kernel-side", "--max-kernel-side", "--max-layers", "--max-memory"]
    ):
        assert outcome["code"] == 2 and outcome["err"].count("\n") == 1 and expected in outcome["err"], (
            outcome
        )
    assert outcomes[4] == {"code": 0, "err": outcomes[4]["err"]} and "error" not in outcomes[4]["err"]
    assert not (tmp_path / "out2" / "layers").exists()  # refused before writing any per-layer file
