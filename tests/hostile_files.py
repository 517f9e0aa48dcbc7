"""Hostile input files for the readers' tests (a fixture, not library code)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


class _WritesAFile(nn.Module):
    """A scripted module whose ``__setstate__`` (run by ``torch.jit.load``) writes ``self.marker``."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        torch.save(torch.zeros(1), self.marker)  # aten::save: the archive writes a file when loaded


def torchscript_archive(path: Path, marker: Path) -> Path:
    """Write a TorchScript archive to ``path`` that writes ``marker`` whenever it is loaded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.script(_WritesAFile(str(marker))).save(str(path))
    return path


def check_archive_runs_code(path: Path, marker: Path) -> None:
    """The precondition of every test that feeds the archive: ``torch.jit.load`` does write the marker."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(path))
    assert marker.exists(), "the hostile archive did not write its marker: the test could not fail"
    marker.unlink()


def planted_archive(folder: Path, name: str) -> tuple[Path, Path]:
    """``(archive, marker)``: a TorchScript archive named ``name`` in ``folder`` whose loading writes
    ``marker``, checked to really do so (so that a test of its refusal can fail)."""
    archive = torchscript_archive(folder / name, folder / "marker")
    check_archive_runs_code(archive, folder / "marker")
    return archive, folder / "marker"
