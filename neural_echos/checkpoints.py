"""The one reader of checkpoint files' safety checks, for every command that opens one.

``run.py fit/validate/test/predict --ckpt_path`` (:mod:`neural_echos.cli.resume`), ``run.py
analyze/survey --checkpoint`` and the covariance-transfer init (:mod:`neural_echos.collect`) and
``run.py analyze --weights`` (:mod:`neural_echos.tools.analyze`) all check a file here before any
load: it exists, is a file, is not empty, is in the format the caller reads (torch.save's zip
format for ``--ckpt_path``) and is no TorchScript archive (judged by content: ``torch.load`` hands
such an archive to ``torch.jit.load``, which runs the code inside it). Loads then run under
:func:`no_torchscript`, a second guard. A :class:`Reader` says how the messages name the file,
which error type they raise and what the user should pass instead; :func:`load_lightning_checkpoint`
adds what ``--ckpt_path`` needs (a Lightning checkpoint; for ``fit``, its optimizer and loop states).

Torch only: no Lightning import.
"""

from __future__ import annotations

import contextlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from neural_echos.errors import NeuralEchosError, one_line

ZIP_MAGIC = b"PK\x03\x04"  # what torch.load tests (torch.serialization._is_zipfile) before its zip reader


@dataclass(frozen=True)
class Reader:
    """Who reads a checkpoint file: how its messages name it and what they ask for.

    Attributes:
        what: the file as messages name it (``--ckpt_path``, ``checkpoint``, ``weights file``).
        error: the error type raised (a :class:`NeuralEchosError`).
        accepts: what to pass instead, completing "pass ..." (``a .ckpt file written by run.py fit``).
        missing_hint: what to do about a missing file.
        empty_hint: what to do about an empty file.
        zip_only: refuse anything but torch.save's zip format (``--ckpt_path``: loaded memory-mapped).
    """

    what: str
    error: type[NeuralEchosError]
    accepts: str
    missing_hint: str = "check the path"
    empty_hint: str = "Save or download it again"
    zip_only: bool = False


def check_file(path: str | Path, reader: Reader) -> Path:
    """Refuse ``path`` unless it is a non-empty file that ``reader`` may load; reads no data.

    Raises:
        reader.error: missing, a folder (or another non-file), empty, not torch.save's zip format
            (``reader.zip_only``), or a TorchScript archive.
    """
    file, shown = Path(path), f"{reader.what} {str(path)!r}"
    if not file.exists():
        raise reader.error(f"{shown} does not exist; {reader.missing_hint}")
    if file.is_dir():
        inside = sorted(file.glob("*.ckpt")) or sorted(file.glob("checkpoints/*.ckpt"))
        hint = f" (e.g. {str(inside[0])!r})" if inside else ""
        raise reader.error(f"{shown} is a folder; pass {reader.accepts}{hint}")
    if not file.is_file():
        raise reader.error(f"{shown} is not a file (a pipe or device); pass {reader.accepts}")
    if file.stat().st_size == 0:
        raise reader.error(f"{shown} cannot be read: it is empty (0 bytes), so its write was interrupted. "
                           f"{reader.empty_hint}")
    if reader.zip_only and not zipfile.is_zipfile(file):
        raise reader.error(
            f"cannot read {shown}: it is not a zip archive as torch.save writes them, so it is truncated or not a "
            f"checkpoint. Pass {reader.accepts}"
        )
    if is_torchscript_archive(file):
        raise reader.error(torchscript_message(file, reader.what))
    return file


def load_lightning_checkpoint(path: str | Path, reader: Reader, for_fit: bool, weights_only: bool = True) -> dict:
    """A Lightning checkpoint checked by :func:`check_file`, loaded memory-mapped (tensors stay on disk)
    with ``torch.load(weights_only=weights_only)`` and never the TorchScript loader.

    Raises:
        reader.error: the file checks; unreadable; not a Lightning checkpoint; ``for_fit`` and without
            the optimizer and loop states (saved with ``save_weights_only``).
    """
    file, shown = check_file(path, reader), f"{reader.what} {str(path)!r}"
    try:
        with no_torchscript(file, reader.what, reader.error):
            checkpoint = torch.load(file, map_location="cpu", weights_only=weights_only, mmap=True)
    except NeuralEchosError:
        raise
    except Exception as err:  # EOFError, UnpicklingError, RuntimeError (zip) ...
        if str(err).startswith("Weights only load failed"):
            reason = ("it holds Python objects that torch's safe loader refuses; if you trust the file, "
                      "pass --weights_only false")
        else:
            reason = f"{type(err).__name__}: {one_line(str(err), 200)}; it is truncated or not a torch checkpoint"
        raise reader.error(f"cannot read {shown}: {reason}") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "pytorch-lightning_version" not in checkpoint:
        raise reader.error(
            f"{shown} is not a Lightning checkpoint (no state_dict and pytorch-lightning_version): pass "
            f"{reader.accepts}; for a plain state dict use `run.py analyze --checkpoint`"
        )
    if for_fit and not checkpoint.get("optimizer_states") and "loops" not in checkpoint:
        raise reader.error(
            f"{shown} holds weights only (saved with save_weights_only), so a fit cannot resume from it; use it "
            "with validate/test/predict"
        )
    return checkpoint


def is_torchscript_archive(path: str | Path) -> bool:
    """True for a TorchScript archive (``torch.jit.save``), judged by content, reading no data.

    ``torch.load`` hands a zip whose records hold ``constants.pkl`` to ``torch.jit.load``, which
    runs the archive's scripted code (``__setstate__``, which may write and read files). The
    records are listed with torch's own zip reader (the one ``torch.load`` uses) and, if that
    cannot open the file, with :mod:`zipfile`; ``constants.pkl`` or a ``code/`` folder means
    TorchScript.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            if f.read(4) != ZIP_MAGIC:
                return False
            f.seek(0)
            records = list(torch._C.PyTorchFileReader(f).get_all_records())
    except Exception:  # noqa: BLE001  (not readable by torch's zip reader: torch.load cannot dispatch either)
        records = []
    try:
        with zipfile.ZipFile(path) as archive:  # names carry the archive's folder: "name/constants.pkl"
            records += [name.split("/", 1)[-1] for name in archive.namelist()]
    except (zipfile.BadZipFile, OSError, ValueError):
        pass
    return any(record == "constants.pkl" or record.startswith("code/") for record in records)


def torchscript_message(path: str | Path, what: str = "checkpoint") -> str:
    return (
        f"{what} {str(path)!r} is a TorchScript archive (torch.jit.save), whose loading runs the code inside it, so "
        "it is not read; only state dicts are: save model.state_dict() with torch.save (or "
        "safetensors.torch.save_file) and pass that file"
    )


@contextlib.contextmanager
def no_torchscript(path: str | Path, what: str = "checkpoint", error: type[NeuralEchosError] | None = None):
    """``torch.jit.load`` (which ``torch.load`` calls for TorchScript archives) raises ``error``
    (default: :class:`neural_echos.collect.CheckpointError`) inside this block: a second guard
    behind the content check of :func:`check_file`."""
    if error is None:
        from neural_echos.collect import CheckpointError

        error = CheckpointError
    jit = torch.jit
    original = jit.load

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise error(torchscript_message(path, what))

    jit.load = refused
    try:
        yield
    finally:
        jit.load = original


__all__ = [
    "Reader",
    "check_file",
    "is_torchscript_archive",
    "load_lightning_checkpoint",
    "no_torchscript",
    "torchscript_message",
]
