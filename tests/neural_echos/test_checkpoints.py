"""The shared file checks of every checkpoint reader (neural_echos.checkpoints), one per role."""

import os

import pytest
import torch

from neural_echos.checkpoints import check_file
from neural_echos.cli.resume import CKPT_PATH
from neural_echos.collect import CHECKPOINT
from neural_echos.errors import ResumeError
from neural_echos.tools.analyze import WEIGHTS, AnalysisError


@pytest.mark.parametrize(
    ("reader", "error"), [(CKPT_PATH, ResumeError), (CHECKPOINT, AnalysisError), (WEIGHTS, AnalysisError)]
)
def test_every_reader_refuses_the_same_files_in_its_own_words(reader, error, tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe")
    for name, message in [
        ("missing.pt", "does not exist"),
        ("", "is a folder; pass"),
        ("empty.pt", "it is empty (0 bytes)"),
        ("pipe", "is not a file (a pipe or device)"),
    ]:
        with pytest.raises(error, match=f"{reader.what} .*{message.replace('(', '.').replace(')', '.')}"):
            check_file(tmp_path / name, reader)
    torch.save({"w": torch.zeros(2)}, tmp_path / "ok.pt")
    assert check_file(tmp_path / "ok.pt", reader) == tmp_path / "ok.pt"
    torch.save({"w": torch.zeros(2)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    if reader.zip_only:  # --ckpt_path is loaded memory-mapped: torch.save's zip format only
        with pytest.raises(error, match="not a zip archive"):
            check_file(tmp_path / "legacy.pt", reader)
    else:
        assert check_file(tmp_path / "legacy.pt", reader)
