"""``run.py compare``: the transition table between two checkpoints of one model."""

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neural_echos.dog import dog_kernels
from neural_echos.tools.compare import main

REPO = Path(__file__).resolve().parents[3]

LAYERS = ("stages.0.blocks.0.conv_dw", "stages.1.blocks.0.conv_dw")


def _save(path, kernels_by_layer):
    torch.save({f"model.{name}.weight": k[:, None] for name, k in kernels_by_layer.items()}, path)
    return path


def _noise(seed, n=32, size=7):
    return torch.randn(n, size, size, generator=torch.Generator().manual_seed(seed))


def _table(out):
    with open(out / "transitions.csv") as f:
        rows = list(csv.reader(f))
    return np.array([[int(v) for v in row[1:]] for row in rows[1:]])


def test_the_same_checkpoint_twice_gives_a_diagonal_table(tmp_path, capsys):
    checkpoint = _save(tmp_path / "a.pt", {name: _noise(i) for i, name in enumerate(LAYERS)})
    assert main([str(checkpoint), str(checkpoint), "--out", str(tmp_path / "out")]) == 0
    table = _table(tmp_path / "out")
    assert table.sum() == 64 and (table == np.diag(np.diag(table))).all()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["retained"] == 1.0 and summary["drift"]["cosine_distance"] == 0.0
    assert (tmp_path / "out" / "transitions.png").stat().st_size > 0
    with open(tmp_path / "out" / "layers.csv") as f:
        assert [row["layer"] for row in csv.DictReader(f)] == list(LAYERS)
    assert "retained 100.0%" in capsys.readouterr().out


def test_kernels_that_became_dogs_are_counted_as_gained(tmp_path):
    noise = _noise(0)
    dogs = dog_kernels(torch.full((32,), 0.5), (7, 7))
    before = _save(tmp_path / "a.pt", {LAYERS[0]: noise})
    after = _save(tmp_path / "b.pt", {LAYERS[0]: dogs})
    main([str(before), str(after), "--out", str(tmp_path / "out")])
    table = _table(tmp_path / "out")
    assert table.sum(axis=0)[0] == 32  # every kernel on-center after
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["gained"] == pytest.approx(table[2:, 0].sum() / 32) and summary["gained"] > 0.8
    with open(tmp_path / "out" / "kernels.csv") as f:
        kernels = list(csv.DictReader(f))
    assert [int(row["channel"]) for row in kernels] == list(range(32))
    assert all(row["class_after"] == "on_center" for row in kernels)
    gained = [row for row in kernels if row["change"] == "gained on/off"]
    assert len(gained) == round(summary["gained"] * 32)  # the kernels behind the share, by channel


@pytest.mark.parametrize(
    "after, message",
    [
        ({LAYERS[0]: _noise(0)}, "has 2 depthwise layers, .* has 1"),
        (
            {LAYERS[0]: _noise(0), LAYERS[1]: _noise(1, size=5)},
            r"layer stages.1.blocks.0.conv_dw \[32, 7, 7\]",
        ),
    ],
)
def test_different_models_are_one_error_line(tmp_path, capsys, after, message):
    before = _save(tmp_path / "a.pt", {name: _noise(i) for i, name in enumerate(LAYERS)})
    other = _save(tmp_path / "b.pt", after)
    with pytest.raises(SystemExit) as exit_info:
        main([str(before), str(other), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the checkpoints hold different models")
    assert re.search(message, err[0])


def test_a_missing_file_and_a_bad_threshold_are_one_error_line(tmp_path, capsys):
    checkpoint = _save(tmp_path / "a.pt", {LAYERS[0]: _noise(0)})
    for argv, words in (
        ([str(checkpoint), str(tmp_path / "missing.pt")], "does not exist"),
        ([str(checkpoint), str(checkpoint), "--threshold", "high"], "--threshold must be"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--out", str(tmp_path / "out")])
        assert exit_info.value.code == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: ") and words in line


@pytest.mark.slow
def test_run_py_dispatches_compare(tmp_path):
    checkpoint = _save(tmp_path / "a.pt", {LAYERS[0]: _noise(0)})
    done = subprocess.run(
        [sys.executable, "run.py", "compare", str(checkpoint), str(tmp_path / "x.pt")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stderr.strip().startswith("error: checkpoint")


def test_the_classifier_and_its_options_are_taken_as_analyze_takes_them(tmp_path, capsys):
    checkpoint = _save(tmp_path / "a.pt", {name: _noise(i) for i, name in enumerate(LAYERS)})
    out = tmp_path / "out"
    argv = [str(checkpoint), str(checkpoint), "--out", str(out), "--classifier", "kmeans"]
    assert main([*argv, "--classifier.n_clusters", "3"]) == 0
    assert json.loads((out / "summary.json").read_text())["kernels"] == 64
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--classifier.n_clusterz", "3"])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "n_clusters" in line
