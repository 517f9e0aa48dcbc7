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
import io
import pickle
import types
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from neural_echos.errors import AnalysisError, NeuralEchosError, one_line

ZIP_MAGIC = b"PK\x03\x04"  # what torch.load tests (torch.serialization._is_zipfile) before its zip reader
DEFAULT_MAX_FILE_BYTES = 8 * 2**30


class CheckpointError(AnalysisError):
    """A checkpoint file is missing, unreadable, or holds no depthwise kernels."""


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
        trust_hint: how to load a trusted file unrestricted (``--ckpt_path``: ``--weights_only false``).
        state_dicts: the reader takes state dicts (a TorchScript archive's message says to save one).
    """

    what: str
    error: type[NeuralEchosError]
    accepts: str
    missing_hint: str = "check the path"
    empty_hint: str = "Save or download it again"
    zip_only: bool = False
    trust_hint: str | None = None
    state_dicts: bool = True


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
        raise reader.error(
            f"{shown} cannot be read: it is empty (0 bytes), so its write was interrupted. "
            f"{reader.empty_hint}"
        )
    if reader.zip_only and not zipfile.is_zipfile(file):
        raise reader.error(
            f"cannot read {shown}: it is not a zip archive as torch.save writes them, so it is truncated "
            f"or not a checkpoint. Pass {reader.accepts}"
        )
    if is_torchscript_archive(file):
        raise reader.error(
            torchscript_message(file, reader.what, None if reader.state_dicts else reader.accepts)
        )
    return file


def check_size(
    n_bytes: int, limit: int, flag: str, what: str, error: type[NeuralEchosError] = CheckpointError
) -> None:
    """Refuse to read ``what`` (``n_bytes`` declared) beyond ``limit``; ``flag`` raises the bound."""
    if n_bytes > limit:
        raise error(
            f"{what} declare {_mib(n_bytes)} of data, beyond the {_mib(limit)} that analyze reads at most "
            "(no depthwise model needs that much; a damaged or hostile file may declare any size). "
            f"If the file is genuine, raise the bound with {flag} BYTES"
        )


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


def load_torch_file(
    path: str | Path,
    reader: Reader,
    weights_only: bool = True,
    restricted_fallback: bool = False,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> tuple[Any, str]:
    """``torch.load`` of a file that passed :func:`check_file`: memory-mapped (zip format) or, in torch's
    legacy format, read whole within ``max_file_bytes``; with ``weights_only`` (unless the caller's user
    said they trust the file) then, if ``restricted_fallback``, with the restricted unpickler (module
    docstring of :mod:`neural_echos.collect`); never ``torch.jit.load``.

    Returns:
        The loaded object and the loader: ``"weights_only"``, ``"restricted_unpickler"`` or ``"full"``.

    Raises:
        reader.error: the file checks, a bound, or a file neither load can read.
    """
    file = check_file(path, reader)
    shown = f"{reader.what} {str(path)!r}"
    mmap = zipfile.is_zipfile(file)  # mmap needs the zip format of torch.save (the default since 1.6)
    if not mmap:  # the legacy format is read whole into memory
        check_size(
            file.stat().st_size,
            max_file_bytes,
            "--max-file-bytes",
            f"{str(path)!r} (legacy torch format, read whole)",
            reader.error,
        )
    try:
        with warnings.catch_warnings(), no_torchscript(file, reader.what, reader.error):
            # sparse kernels are refused later, with the layer's name
            warnings.filterwarnings("ignore", "Validating sparse tensor invariants")
            obj = torch.load(file, map_location="cpu", weights_only=weights_only, mmap=mmap)
        return obj, "weights_only" if weights_only else "full"
    except NeuralEchosError:
        raise
    except Exception as weights_only_error:  # noqa: BLE001  (torch raises many kinds for a bad file)
        first_error = weights_only_error
    refused = str(first_error).startswith("Weights only load failed")
    if not restricted_fallback:
        if refused and reader.trust_hint:
            reason = (
                "it holds Python objects that torch's safe loader refuses; if you trust the file, "
                f"{reader.trust_hint}"
            )
        else:
            reason = (
                f"{type(first_error).__name__}: {one_line(first_error, 200)}; it may be truncated or "
                "corrupt, or not a torch checkpoint"
            )
        raise reader.error(f"cannot read {shown}: {reason}. Pass {reader.accepts}") from first_error
    try:
        with warnings.catch_warnings(), no_torchscript(file, reader.what, reader.error):
            warnings.simplefilter("ignore")  # legacy files warn about the placeholders' source
            obj = torch.load(
                file, map_location="cpu", weights_only=False, mmap=mmap, pickle_module=_restricted_pickle
            )
        return obj, "restricted_unpickler"
    except NeuralEchosError:
        raise
    except Exception as err:
        # torch's weights_only message is long advice about trusting the file; the plain error is clearer
        error = err if refused else first_error
        raise reader.error(
            f"cannot read {shown} ({one_line(error, 240)}); is it a file written by torch.save, a "
            "Lightning .ckpt or a .safetensors file? It may be truncated or corrupt."
        ) from err


def load_lightning_checkpoint(
    path: str | Path, reader: Reader, for_fit: bool, weights_only: bool = True
) -> dict:
    """A Lightning checkpoint checked by :func:`check_file`, loaded memory-mapped (tensors stay on disk)
    with ``torch.load(weights_only=weights_only)`` and never the TorchScript loader.

    Raises:
        reader.error: the file checks; unreadable; not a Lightning checkpoint; ``for_fit`` and without
            the optimizer and loop states (saved with ``save_weights_only``).
    """
    shown = f"{reader.what} {str(path)!r}"
    checkpoint, _ = load_torch_file(path, reader, weights_only=weights_only)
    if (
        not isinstance(checkpoint, dict)
        or "state_dict" not in checkpoint
        or "pytorch-lightning_version" not in checkpoint
    ):
        raise reader.error(
            f"{shown} is not a Lightning checkpoint (no state_dict and pytorch-lightning_version): pass "
            f"{reader.accepts}; for a plain state dict use `run.py analyze --checkpoint`"
        )
    if for_fit and not checkpoint.get("optimizer_states") and "loops" not in checkpoint:
        raise reader.error(
            f"{shown} holds weights only (saved with save_weights_only), so a fit cannot resume from it; "
            "use it with validate/test/predict"
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


def torchscript_message(path: str | Path, what: str = "checkpoint", accepts: str | None = None) -> str:
    """Why a TorchScript archive is refused; what to pass instead (``accepts``; default: a state dict)."""
    state_dict = (
        "only state dicts are: save model.state_dict() with torch.save (or "
        "safetensors.torch.save_file) and pass that file"
    )
    instead = f"pass {accepts}" if accepts else state_dict
    return (
        f"{what} {str(path)!r} is a TorchScript archive (torch.jit.save), whose loading runs the code "
        f"inside it, so it is not read; {instead}"
    )


@contextlib.contextmanager
def no_torchscript(
    path: str | Path, what: str = "checkpoint", error: type[NeuralEchosError] = CheckpointError
):
    """``torch.jit.load`` (which ``torch.load`` calls for TorchScript archives) raises ``error``
    inside this block: a second guard behind the content check of :func:`check_file`."""
    jit = torch.jit
    original = jit.load

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise error(torchscript_message(path, what))

    jit.load = refused
    try:
        yield
    finally:
        jit.load = original


# ---------------------------------------------------------------- the restricted unpickler


class Placeholder:
    """Stands in for a class or function the restricted unpickler does not allow; does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # dict subclasses (e.g. AttributeDict)
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:  # list subclasses
        self.__dict__.setdefault("values", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("values", []).extend(values)


class _RestrictedUnpickler(pickle._Unpickler):  # the Python unpickler: its BUILD can be guarded
    """Pickle's documented way to restrict globals: ``find_class`` is the only door to code.

    BUILD (``__setstate__`` / attribute assignment) is refused on anything but an instance: on an
    allowed class or function it would set attributes of torch's own classes in this process.
    """

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)

    def load_build(self) -> None:
        target = self.stack[-2]  # below the state
        if isinstance(
            target, (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType)
        ):
            raise pickle.UnpicklingError(
                f"the file sets attributes of {getattr(target, '__name__', target)!r}"
            )
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals().get(f"{module}.{name}")
        if allowed is not None:
            return allowed
        return type(name, (Placeholder,), {"__module__": f"placeholder:{module}"})


def _allowed_globals() -> dict[str, Any]:
    """torch's own weights_only allow-list (tensor rebuild functions, dtypes, OrderedDict...)."""
    from torch import _weights_only_unpickler

    return _weights_only_unpickler._get_allowed_globals()


def _restricted_load(file: io.IOBase, **kwargs: Any) -> Any:
    return _RestrictedUnpickler(file, **kwargs).load()


_restricted_pickle = types.ModuleType("neural_echos_restricted_pickle")
_restricted_pickle.Unpickler = _RestrictedUnpickler
_restricted_pickle.load = _restricted_load
_restricted_pickle.__dict__["__name__"] = "neural_echos_restricted_pickle"


__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "CheckpointError",
    "Reader",
    "check_file",
    "check_size",
    "is_torchscript_archive",
    "load_lightning_checkpoint",
    "load_torch_file",
    "no_torchscript",
    "torchscript_message",
]
