"""Compare training runs: val top-1 per (model, init) over seeds, curves, kernel classes beside chance.

    python run.py report LOGDIR [LOGDIR...] [--out report_out] [--baseline kaiming_normal]

A run is a folder of TensorBoard event files, as ``run.py fit`` writes it
(``logs/<recipe>/<init method>/<version>/``); a LOGDIR is such a folder or any folder above it
(searched recursively, ``checkpoints/`` not entered). :func:`read_runs` reads them into pandas
DataFrames, one row per run and the curves in long form; :func:`report` groups the runs by
(model, init) and writes to ``out``:

- ``results.csv``: one row per (model, init) group: n, seeds, mean and sample std (n - 1) over
  seeds of the best and of the final ``val/acc1`` (in %), the difference of the means ("delta",
  percentage points) against the baseline init of the same model (``kaiming_normal`` unless
  ``--baseline`` says otherwise; "n/a" when the model has no such group), and the mean final
  kernel class shares, each with its chance share and the excess over chance.
- ``runs.csv``: one row per run found, used or skipped (with the reason), with its own numbers.
- ``results.md``: the tables, the plots, notes (differing settings, unfinished or superseded
  runs) and the skipped runs.
- ``val_acc1_<model>.png``: val top-1 against epochs trained, one line per init (mean over
  seeds, band min-max); ``kernel_clusters_<model>.png``: the on-center / off-center / other
  shares of the depthwise kernels the same way, each with its chance share as a dashed line.

What is read (a run's logged hyper-parameters, never a display string):

- the HParams session in the event files (TensorBoard's hparams plugin data, written by
  ``callbacks/hparams_session.py``; the keys of :mod:`neural_echos.logged_names`): ``init/method``
  (the init method's registry name, ``none`` for the model's own init; ``init`` in sessions logged
  before) and ``init/<setting>`` (``-`` where the method takes no such setting), ``model``,
  ``model/kwargs``, ``model/kernel_sizes``, ``data``, ``seed``;
- ``hparams.yaml``: the same for runs logged before the HParams session (``init/method``, the
  method's ``init/<setting>`` keys, the module's ``model_name`` and ``model_kwargs``), and always
  ``init/name_filter`` (a DepthwiseInit option the session lacks) and the other hyper-parameters
  (only to note runs that differ in more than the init);
- ``config.yaml``: ``seed_everything`` when the session has no seed; ``trainer.max_epochs``;
- scalars: ``val/acc1`` (a fraction; reported in %), ``epoch`` (Lightning's companion scalar,
  mapping steps to epochs), ``kernels/proportion/<class>`` and ``kernels/chance/<class>`` for
  the classes ``on_center``, ``off_center``, ``other`` (optional).

The init label is the method's registry name plus every logged setting that differs from the
method's defaults, the defaults taken from the method's class in :mod:`neural_echos.init` (its
``settings()`` when every option has a default, else its constructor's defaults; an option
without a default, such as covariance_transfer's ``checkpoint``, is always shown):
``dog``, ``dog gamma∈(0,0.5), on_center_prob=1``, ``covariance_transfer checkpoint=a.ckpt``.
Runs whose labels differ are never grouped together.

Runs of the same group and seed: the newest (latest event) is used and the others are listed as
superseded. Runs without ``val/acc1``, a model or an init are skipped with the reason; folders
with no scalar and no model logged (fits that failed at their start) are left out with a note.
"""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import json
import math
import numbers
import os
import re
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from neural_echos import logged_names as names
from neural_echos import safe_yaml
from neural_echos.errors import NeuralEchosError, OneLineArgumentParser, exits_on_user_error, one_line

ACC_TAG = names.ACC
EPOCH_TAG = names.EPOCH
CLASSES = names.CLASSES  # the kernel classes, as the scalar tags name them
SHARE_TAG = names.SHARE
CHANCE_TAG = names.CHANCE
EXCESS_CLASSES = names.EXCESS_CLASSES
BASELINE = "kaiming_normal"
EVENT_PREFIX = "events.out.tfevents."
# bounds of reading one events file: its size (read whole; a larger file makes the run skipped)
# and the bytes searched, one by one, for the next valid record header after damage (~2.7 s per
# MB: 8 MB of random bytes took 22 s, now 0.9 s); the rest of the file is then left out, counted
MAX_EVENT_FILE_BYTES = 1 << 30
MAX_RESYNC_BYTES = 256 << 10
# hparams that may differ between runs of one comparison without making it unfair
IGNORED_HPARAMS = {
    "root",
    "num_workers",
    "download",
    "_instantiator",
    "_class_path",
    "pin_memory",
    "persistent_workers",
}

SHARE_COLUMNS = [f"final_{c}" for c in CLASSES]
CHANCE_COLUMNS = [f"chance_{c}" for c in CLASSES]
EXCESS_COLUMNS = [f"excess_{c}" for c in EXCESS_CLASSES]
TAXONOMY = names.TAXONOMY_CLASSES
TAXONOMY_TAG = names.TAXONOMY_SHARE
TAXONOMY_CHANCE_TAG = names.TAXONOMY_CHANCE
TAXONOMY_COLUMNS = [f"taxonomy_{c}" for c in TAXONOMY] + [f"taxonomy_chance_{c}" for c in TAXONOMY]
KERNEL_COLUMNS = SHARE_COLUMNS + CHANCE_COLUMNS + EXCESS_COLUMNS + TAXONOMY_COLUMNS
RUN_COLUMNS = [
    "run",
    "status",
    "reason",
    "model",
    "init",
    "seed",
    "best_acc1",
    "best_epoch",
    "final_acc1",
    "epochs",
    *KERNEL_COLUMNS,
    "init_method",
    "init_settings",
    "model_name",
    "model_kwargs",
    "kernel_sizes",
    "data",
]
GROUP_COLUMNS = [
    "model",
    "init",
    "init_method",
    "init_settings",
    "model_name",
    "model_kwargs",
    "n",
    "seeds",
    "best_acc1_mean",
    "best_acc1_std",
    "final_acc1_mean",
    "final_acc1_std",
    "delta_best",
    "delta_final",
    "baseline",
    "epochs",
    *KERNEL_COLUMNS,
]
REQUIRED = object()  # stands for the default of a method option that has none


class ReportError(NeuralEchosError):
    """The log directories hold nothing to report (missing path, no runs, no usable run), or the
    baseline names no init of the runs."""


# --------------------------------------------------------------------------------------------
# labels


def model_label(model_name: str, model_kwargs: dict[str, Any] | None) -> str:
    """``convnext_tiny(drop_path_rate=0.1, kernel_sizes=9)``: the name and every model_kwarg."""
    kwargs = model_kwargs or {}
    if not kwargs:
        return model_name
    return f"{model_name}({', '.join(f'{key}={_fmt_value(kwargs[key])}' for key in sorted(kwargs))})"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt_value(v) for v in value) + "]"
    return str(value)


@functools.cache
def method_defaults(method: str) -> dict[str, Any] | None:
    """The settings of the registered init ``method`` at their defaults, as the method logs them
    (its ``settings()`` of an instance built with no option), or None for no registered method.

    A method with an option that has no default (covariance_transfer's checkpoint) cannot be
    built so: its constructor's defaults stand in, the option without one as :data:`REQUIRED`.
    """
    from neural_echos.init import init_methods

    cls = init_methods().get(method)
    if cls is None:
        return None
    parameters = {
        name: p
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    if any(p.default is p.empty for p in parameters.values()):
        return {name: REQUIRED if p.default is p.empty else p.default for name, p in parameters.items()}
    return dict(cls().settings())


def _canon(value: Any) -> Any:
    """A logged value in one comparable form, however it was logged: the HParams session writes
    numbers as floats and lists as JSON, hparams.yaml writes None and tuples with ``str()``."""
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "None", "null"):
            return None
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)  # "(0.0, 0.5)", "True"
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                return text
        if isinstance(value, str):
            return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple)):
        return tuple(_canon(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _canon(v)) for k, v in value.items()))
    return str(value)


def _same(a: Any, b: Any) -> bool:
    a, b = _canon(a), _canon(b)
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _fmt_setting(value: Any) -> str:
    value = _canon(value)
    if isinstance(value, float):
        return f"{value:.12g}"  # 12 digits: settings that differ get labels that differ
    if isinstance(value, tuple):
        return "(" + ",".join(_fmt_setting(v) for v in value) + ")"
    return str(value)


def init_label(method: str, settings: dict[str, Any]) -> str:
    """The method and every setting that differs from its defaults (:func:`method_defaults`).

    Settings in the method's own order, then the others (e.g. ``name_filter``) by name; a pair
    ``<x>_low``/``<x>_high`` reads as ``<x>∈(low,high)``: ``dog gamma∈(0,0.5), on_center_prob=1``.
    A run with frozen depthwise weights (``freeze``) gets ``+frozen`` after the method: ``dog+frozen``.
    """
    if settings.get("freeze") is True:
        label = init_label(method, {key: value for key, value in settings.items() if key != "freeze"})
        return f"{method}+frozen{label[len(method) :]}"
    defaults = method_defaults(method) or {}
    order = {key: index for index, key in enumerate(defaults)}
    keys = sorted(settings, key=lambda key: (order.get(key, len(order)), key))
    differing = {
        key
        for key in keys
        if key not in defaults or defaults[key] is REQUIRED or not _same(settings[key], defaults[key])
    }
    parts, done = [], set()
    for key in keys:
        if key in done:
            continue
        stem = key[: -len("_low")] if key.endswith("_low") else None
        if stem and f"{stem}_high" in settings:
            high = f"{stem}_high"
            done.add(high)
            if differing & {key, high}:
                parts.append(f"{stem}∈({_fmt_setting(settings[key])},{_fmt_setting(settings[high])})")
        elif key in differing and not (key.endswith("_high") and f"{key[:-5]}_low" in settings):
            parts.append(f"{key}={_fmt_setting(settings[key])}")
    return method + (" " + ", ".join(parts) if parts else "")


def init_from_hparams(session: dict[str, Any], hparams: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(method, settings) of a run from its HParams session, else from hparams.yaml's ``init/*``.

    hparams.yaml holds the init summary's totals (``init/n_kernels``, ``init/gamma_mean``, ...)
    beside the settings: only the keys the method's defaults name are settings there. The
    ``name_filter`` option of the DepthwiseInit callback comes from hparams.yaml in either case
    (the session does not log it). (None, {}) when neither logged an init.
    """
    session_method = session.get(names.INIT_METHOD, session.get(names.LEGACY_INIT_METHOD))
    if session_method is not None:
        method = str(session_method)
        # the method, its one-line label, and freeze (read below, from either file)
        derived = {names.INIT_METHOD, names.INIT_SETTINGS, names.INIT_FREEZE}
        settings = {
            key[len("init/") :]: value
            for key, value in session.items()
            if key.startswith("init/") and key not in derived and value != names.NOT_APPLICABLE
        }
    elif hparams.get(names.INIT_METHOD) is not None:
        method = str(hparams[names.INIT_METHOD])
        options = method_defaults(method) or {}
        settings = {
            key: hparams[names.INIT_SETTING.format(key)]
            for key in options
            if names.INIT_SETTING.format(key) in hparams
        }
    else:
        return None, {}
    name_filter = _canon(hparams.get(names.INIT_SETTING.format("name_filter")))
    if name_filter is not None:
        settings["name_filter"] = name_filter
    frozen = (hparams.get(names.INIT_FREEZE), session.get(names.INIT_FREEZE))  # DepthwiseInit(freeze=True)
    if any(_canon(value) is True for value in frozen):  # the depthwise weights stayed fixed
        settings["freeze"] = True
    return method, settings


# --------------------------------------------------------------------------------------------
# reading runs


class _LenientLoader(yaml.SafeLoader):
    """safe_load that reads python/* and other unknown tags as plain YAML instead of failing."""


def _construct_unknown(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_LenientLoader.add_multi_constructor("", _construct_unknown)


def _load_yaml(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data = safe_yaml.load_file(path, safe_yaml.bounded(_LenientLoader))  # size, depth, aliases bounded
    return data if isinstance(data, dict) else {}


def _find_beside(run_dir: Path, name: str) -> Path:
    """``name`` in the run directory, or in its parent (a logger ``sub_dir`` puts events below it)."""
    if (run_dir / name).is_file() or not (run_dir.parent / name).is_file():
        return run_dir / name
    return run_dir.parent / name


def find_run_dirs(logdirs: list[str | os.PathLike]) -> list[Path]:
    """Every directory holding TensorBoard event files at or below the given paths."""
    found: set[Path] = set()
    for logdir in logdirs:
        path = Path(logdir)
        if not path.exists():
            raise ReportError(f"log directory {str(path)!r} does not exist")
        if path.is_file():
            if not path.name.startswith(EVENT_PREFIX):
                raise ReportError(
                    f"{str(path)!r} is a file, not a log directory (give logs/ or logs/<name>/<version>/)"
                )
            found.add(path.parent.resolve())
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d != "checkpoints")
            if any(name.startswith(EVENT_PREFIX) for name in files):
                found.add(Path(root).resolve())
    if not found:
        where = ", ".join(repr(str(p)) for p in logdirs)
        raise ReportError(
            f"no TensorBoard runs under {where}: expected version directories such as "
            f"logs/<recipe>/<init method>/version_0/ holding {EVENT_PREFIX}* files (train with "
            "`python run.py fit ...` first)"
        )
    return sorted(found)


def _read_events(run_dir: Path) -> tuple[pd.DataFrame, dict[str, Any], int]:
    """The scalars of every events file in ``run_dir`` (name order, i.e. creation order) as a
    DataFrame ``[wall_time, tag, step, value]`` in the order written, the first HParams session's
    hyper-parameters, and the number of corrupt records skipped.

    Read here rather than with tbparse or TensorBoard's EventAccumulator (which tbparse uses)
    because that one stops reading a file at its first corrupt record, so one flipped byte
    dropped the rest of a run. The events themselves are decoded by TensorBoard's protobufs and
    its hparams plugin (``metadata.parse_session_start_info_plugin_data``).
    """
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import metadata as hparams_metadata

    rows: list[tuple[float, str, int, float]] = []
    session: dict[str, Any] | None = None
    corrupt = 0
    for path in sorted(p for p in run_dir.iterdir() if p.name.startswith(EVENT_PREFIX) and p.is_file()):
        if path.stat().st_size > MAX_EVENT_FILE_BYTES:
            raise OSError(
                f"events file {path.name} is {path.stat().st_size / 2**30:.1f} GiB, beyond the "
                f"{MAX_EVENT_FILE_BYTES / 2**30:.0f} GiB that report reads (MAX_EVENT_FILE_BYTES)"
            )
        records, bad = _tfrecords(path.read_bytes())
        corrupt += bad
        for record in records:
            try:
                event = event_pb2.Event.FromString(record)
            except Exception:  # noqa: BLE001  (a record that passed its checksum but is no Event)
                corrupt += 1
                continue
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    rows.append((event.wall_time, value.tag, int(event.step), float(value.simple_value)))
                elif (
                    session is None
                    and value.tag == hparams_metadata.SESSION_START_INFO_TAG
                    and value.metadata.plugin_data.plugin_name == hparams_metadata.PLUGIN_NAME
                ):
                    try:
                        info = hparams_metadata.parse_session_start_info_plugin_data(
                            value.metadata.plugin_data.content
                        )
                    except Exception:  # noqa: BLE001  (undecodable plugin data: as if absent)
                        corrupt += 1
                        continue
                    session = {name: _struct_value(v) for name, v in info.hparams.items()}
    scalars = pd.DataFrame(rows, columns=["wall_time", "tag", "step", "value"])
    return scalars, session or {}, corrupt


def _struct_value(value: Any) -> Any:
    """A ``google.protobuf.Value`` of the HParams session as a Python value."""
    kind = value.WhichOneof("kind")
    if kind == "list_value":
        return [_struct_value(v) for v in value.list_value.values]
    if kind in (None, "null_value"):
        return None
    return getattr(value, kind)


def _tfrecords(data: bytes) -> tuple[list[bytes], int]:
    """The records of a TFRecord file whose checksums hold, and how many were corrupt.

    TFRecord framing: length (8 bytes), its masked CRC-32C, data, the data's masked CRC-32C. A
    record whose data fails its CRC is skipped; a length that fails its CRC is searched past,
    byte by byte, to the next valid header, for at most :data:`MAX_RESYNC_BYTES` in a file (then
    the rest of the file counts as one more corrupt record). A truncated last record (a killed
    writer) ends the file without counting as corrupt.
    """
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    records: list[bytes] = []
    corrupt, pos, lost_sync, searched = 0, 0, False, 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        (length_crc,) = struct.unpack_from("<I", data, pos + 8)
        if masked_crc32c(data[pos : pos + 8]) != length_crc:
            corrupt += not lost_sync
            lost_sync, pos, searched = True, pos + 1, searched + 1
            if searched > MAX_RESYNC_BYTES:
                return records, corrupt + 1  # garbage: the rest of the file is not searched
            continue
        lost_sync = False
        end = pos + 12 + length
        if end + 4 > len(data):
            break  # truncated tail
        record = data[pos + 12 : end]
        (data_crc,) = struct.unpack_from("<I", data, end)
        if masked_crc32c(record) == data_crc:
            records.append(record)
        else:
            corrupt += 1
        pos = end + 4
    return records, corrupt


def _seed(session: dict[str, Any], config: dict[str, Any], hparams: dict[str, Any]) -> int | None:
    """The run's seed: the session's (-1 when the fit set none), else config.yaml's
    ``seed_everything``, else the init's ``init/seed``."""
    init_seed = hparams.get(names.INIT_SETTING.format("seed"))
    for value in (session.get(names.SEED), config.get("seed_everything"), init_seed):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            continue
        if value >= 0 and float(value).is_integer():
            return int(value)
    return None


def _epochs(scalars: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(step -> epoch, epoch -> its last step) from Lightning's ``epoch`` scalar."""
    marks = scalars[scalars.tag == EPOCH_TAG]
    epoch = marks.value.round().astype(int)
    return epoch.groupby(marks.step).max(), marks.step.groupby(epoch).max().sort_index()


def _steps_per_epoch(last_step: pd.Series) -> float | None:
    """Optimizer steps per epoch from the steps at which Lightning logged each epoch's end."""
    complete = last_step.iloc[:-1] if len(last_step) > 2 else last_step  # the last may be cut short
    consecutive = complete.index.to_series().diff() == 1
    diffs = complete.diff()[consecutive.to_numpy()]
    if len(diffs):
        return float(diffs.median())
    if len(last_step) and last_step.index[0] == 0 and last_step.iloc[0] >= 0:
        return float(last_step.iloc[0] + 1)
    return None


def _epoch_of_steps(steps: pd.Series, step_epoch: pd.Series, last_step: pd.Series) -> pd.Series:
    """The epoch of each step: Lightning's ``epoch`` at that step, else the first epoch whose
    end is not before it (one past the last epoch for a step after every end)."""
    epoch = steps.map(step_epoch)
    missing = epoch.isna()
    if missing.any():
        index = np.searchsorted(last_step.to_numpy(), steps[missing].to_numpy(), side="left")
        ends = last_step.index.to_numpy()
        epoch[missing] = np.where(index < len(ends), ends[np.minimum(index, len(ends) - 1)], ends[-1] + 1)
    return epoch.astype(int)


def read_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run: its row of the run table (``reason`` set when unusable) and its curves, a
    DataFrame ``[tag, step, x, value]``: val/acc1 per epoch, the kernel shares and chance shares
    per snapshot, ``x`` in epochs trained (the global step when the steps per epoch are unknown,
    ``steps_per_epoch`` then empty)."""
    row: dict[str, Any] = {
        "run": str(run_dir),
        "reason": None,
        "corrupt_records": 0,
        "failed_at_start": False,
    }
    curves = pd.DataFrame(columns=["tag", "step", "x", "value"])
    try:
        scalars, session, row["corrupt_records"] = _read_events(run_dir)
    except OSError as err:
        row["reason"] = f"cannot read the event files: {type(err).__name__}: {err}"
        return row, curves
    for name in ("hparams.yaml", "config.yaml"):
        try:
            loaded = _load_yaml(_find_beside(run_dir, name))
        except (OSError, yaml.YAMLError, ValueError) as err:  # ValueError: UnicodeDecodeError (not UTF-8)
            what = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else one_line(str(err), 200)
            row["reason"] = row["warning"] = (
                f"unreadable {name} ({what}): fix or delete the file to report this run"
            )
            return row, curves
        if name == "hparams.yaml":
            hparams = loaded
        else:
            config = loaded or {}
    hparams = hparams or {}
    model_name = session.get(names.MODEL) or hparams.get("model_name")
    if scalars.empty and not model_name:
        # nothing logged, not even the model: a run that failed at its start
        row.update(
            failed_at_start=True, reason="no scalar and no model logged (a run that failed at its start)"
        )
        return row, curves
    if not model_name:
        row["reason"] = (
            "no model logged (no HParams session, no model_name in hparams.yaml): not a `run.py fit` run?"
        )
        return row, curves
    kwargs = hparams.get("model_kwargs") or {}
    if names.MODEL in session and isinstance(session.get(names.MODEL_KWARGS), str):
        try:
            kwargs = json.loads(session[names.MODEL_KWARGS])
        except ValueError:
            pass  # written by another version: hparams.yaml's stands
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    method, settings = init_from_hparams(session, hparams)
    trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    row.update(
        model=model_label(str(model_name), kwargs),
        model_name=str(model_name),
        model_kwargs=json.dumps(kwargs, sort_keys=True, default=str),
        kernel_sizes=session.get(names.MODEL_KERNEL_SIZES),
        data=session.get(names.DATA),
        classifier=session.get(names.SNAPSHOT_CLASSIFIER),
        init_method=method,
        init_settings=json.dumps(settings, sort_keys=True, default=str),
        init=None if method is None else init_label(method, settings),
        init_registered=method is None or method == "none" or method_defaults(method) is not None,
        init_from="session"
        if {names.INIT_METHOD, names.LEGACY_INIT_METHOD} & set(session)
        else "hparams.yaml",
        seed=_seed(session, config, hparams),
        hparams={
            **{k: v for k, v in hparams.items() if not str(k).startswith("init/")},
            "trainer.max_epochs": trainer.get("max_epochs"),
        },
        last_wall_time=float(scalars.wall_time.max()) if len(scalars) else 0.0,
    )
    if method is None:
        row["reason"] = "no init logged (no HParams session, no init/method in hparams.yaml)"
        return row, curves
    acc = scalars[scalars.tag == ACC_TAG].sort_values("step", kind="stable")
    if acc.empty:
        row["reason"] = f"no {ACC_TAG} scalar (crashed or stopped before the first validation?)"
        return row, curves

    step_epoch, last_step = _epochs(scalars)
    if len(last_step):
        acc = acc.assign(epoch=_epoch_of_steps(acc.step, step_epoch, last_step))
    else:
        acc = acc.assign(epoch=np.arange(len(acc)))
    per_epoch = acc.drop_duplicates("epoch", keep="last").set_index("epoch").value.sort_index()
    spe = _steps_per_epoch(last_step)
    row.update(
        best_acc1=100 * per_epoch.max(),
        best_epoch=int(per_epoch.idxmax()),  # idxmax: the earliest best
        final_acc1=100 * acc.value.iloc[-1],
        epochs=len(per_epoch),
        steps_per_epoch=spe,
    )
    ends = acc.drop_duplicates("epoch", keep="last").set_index("epoch").step.sort_index()
    parts = [
        pd.DataFrame(
            {
                "tag": ACC_TAG,
                "step": ends.to_numpy(),
                "x": per_epoch.index + 1.0,
                "value": per_epoch.to_numpy(),
            }
        )
    ]

    kernel_tags = [tag.format(c) for tag in (SHARE_TAG, CHANCE_TAG) for c in CLASSES]
    kernels = scalars[scalars.tag.isin(kernel_tags)].sort_values("step", kind="stable")
    kernels = kernels.drop_duplicates(["tag", "step"], keep="last")
    if len(kernels):
        # a snapshot at an epoch's last step is that epoch's (epochs trained = epoch + 1), others
        # are placed by steps per epoch (step 0: the initialised kernels)
        end_of_epoch = pd.Series(last_step.index + 1.0, index=last_step.to_numpy())
        end_of_epoch = end_of_epoch[~end_of_epoch.index.duplicated(keep="last")]
        x = kernels.step.map(end_of_epoch).fillna(kernels.step / spe) if spe else kernels.step.astype(float)
        parts.append(pd.DataFrame({"tag": kernels.tag, "step": kernels.step, "x": x, "value": kernels.value}))
        final = kernels.groupby("tag").value.last()
        for c in CLASSES:
            row[f"final_{c}"] = final.get(SHARE_TAG.format(c), np.nan)
            row[f"chance_{c}"] = final.get(CHANCE_TAG.format(c), np.nan)
        for c in EXCESS_CLASSES:
            row[f"excess_{c}"] = row[f"final_{c}"] - row[f"chance_{c}"]
    taxonomy_tags = [tag.format(c) for tag in (TAXONOMY_TAG, TAXONOMY_CHANCE_TAG) for c in TAXONOMY]
    taxonomy = scalars[scalars.tag.isin(taxonomy_tags)].sort_values("step", kind="stable")
    if len(taxonomy):  # runs logged before the taxonomy have none
        final = taxonomy.groupby("tag").value.last()
        for c in TAXONOMY:
            row[f"taxonomy_{c}"] = final.get(TAXONOMY_TAG.format(c), np.nan)
            row[f"taxonomy_chance_{c}"] = final.get(TAXONOMY_CHANCE_TAG.format(c), np.nan)
    return row, pd.concat(parts, ignore_index=True)


def read_runs(logdirs: list[str | os.PathLike]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every run below ``logdirs``: the run table (one row per run folder, ``reason`` set for
    the unusable ones) and the curves (``[run, tag, step, x, value]``, see :func:`read_run`)."""
    rows, curves = [], []
    for path in find_run_dirs(list(logdirs)):
        row, run_curves = read_run(path)
        rows.append(row)
        if len(run_curves):
            curves.append(run_curves.assign(run=row["run"]))
    runs = pd.DataFrame(rows)
    objects = ("hparams", "init_registered", "init_from", "warning", "classifier")
    for column in RUN_COLUMNS + ["steps_per_epoch", "last_wall_time", *objects]:
        if column not in runs:
            runs[column] = None if column in objects else np.nan
    for column in ("seed", "best_epoch", "epochs"):
        runs[column] = runs[column].astype("Int64")
    columns = ["run", "tag", "step", "x", "value"]
    return runs, pd.concat(curves, ignore_index=True)[columns] if curves else pd.DataFrame(columns=columns)


# --------------------------------------------------------------------------------------------
# the report


def _drop_superseded(runs: pd.DataFrame) -> pd.DataFrame:
    """Mark all but the newest run of each (model, init, seed) as skipped."""
    keys = ["model", "init", "seed"]
    known = runs[runs.reason.isna() & runs.seed.notna()].sort_values("last_wall_time", kind="stable")
    newest = known.groupby(keys).run.last()
    for index in known.index[known.duplicated(keys, keep="last")]:
        model, init, seed = runs.loc[index, keys]
        runs.loc[index, "reason"] = (
            f"superseded by the newer run {_rel(newest[(model, init, seed)])} "
            f"(same model, init and seed {seed})"
        )
    return runs


def _order(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per model: the baseline first, then by method, each method's default settings first."""
    key = pd.DataFrame(
        {
            "model": table.model,
            "not_base": table.init != baseline,
            "method": table.init_method,
            "variant": table.init != table.init_method,
            "init": table.init,
        }
    )
    return table.loc[key.sort_values(list(key.columns), kind="stable").index]


def summarise(used: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One row per (model, init) of the used runs: n, seeds, mean/std of best and final val/acc1
    (%), deltas against ``baseline`` of the same model, mean final kernel shares with chance and
    excess (blank unless every run of the group logged them)."""
    used = used.sort_values(["seed", "run"], na_position="last", kind="stable")
    groups = used.groupby(["model", "init"], sort=False)
    table = groups.agg(
        init_method=("init_method", "first"),
        init_settings=("init_settings", "first"),
        model_name=("model_name", "first"),
        model_kwargs=("model_kwargs", "first"),
        n=("run", "size"),
        seeds=("seed", lambda s: " ".join("?" if pd.isna(v) else str(v) for v in s)),
        best_acc1_mean=("best_acc1", "mean"),
        best_acc1_std=("best_acc1", "std"),
        final_acc1_mean=("final_acc1", "mean"),
        final_acc1_std=("final_acc1", "std"),
        epochs=("epochs", lambda s: str(s.min()) if s.min() == s.max() else f"{s.min()}-{s.max()}"),
    )
    kernel = groups[KERNEL_COLUMNS]
    table[KERNEL_COLUMNS] = kernel.mean().where(kernel.count().eq(groups.size(), axis=0))  # no partial means
    table = table.reset_index()
    base = table[table.init == baseline].set_index("model")
    for kind in ("best", "final"):
        table[f"delta_{kind}"] = table[f"{kind}_acc1_mean"] - table.model.map(base[f"{kind}_acc1_mean"])
    table["baseline"] = np.where(table.model.isin(base.index), baseline, "n/a")
    return _order(table, baseline)[GROUP_COLUMNS].reset_index(drop=True)


def _notes(used: pd.DataFrame, groups: pd.DataFrame) -> list[str]:
    notes = []
    settings = pd.DataFrame(
        [
            {k: json.dumps(v, sort_keys=True, default=str) for k, v in h.items() if k not in IGNORED_HPARAMS}
            for h in used.hparams
        ],
        index=used.index,
    )
    for model, part in settings.groupby(used.model, sort=True):
        part = part.fillna("null")
        differing = [
            f"{key} ({', '.join(sorted(set(part[key])))})"
            for key in sorted(part.columns[part.nunique() > 1], key=str)
        ]
        if differing:
            notes.append(
                f"{model}: the runs differ in more than the init, so the deltas mix effects: {'; '.join(differing)}"
            )
    for (model, init), part in used.groupby(["model", "init"], sort=True):
        short = part[part.epochs < part.epochs.max()]
        if len(short):
            listed = ", ".join(f"{_rel(r.run)} ({r.epochs})" for r in short.itertuples())
            notes.append(
                f"{model} / {init}: runs with fewer validated epochs than the others (unfinished?): {listed}"
            )
        unknown = part[part.seed.isna()]
        if len(unknown):
            notes.append(
                f"{model} / {init}: seed unknown (no HParams session seed, no config.yaml "
                f"seed_everything, no init/seed) for {', '.join(_rel(r) for r in unknown.run)}"
            )
    for method, part in used[~used.init_registered.astype(bool)].groupby("init_method"):
        how = (
            "its label lists every logged setting"
            if (part.init_from == "session").all()
            else "runs without an HParams session get its name alone"
        )
        notes.append(
            f"init method {method!r} is not in neural_echos.init's registry, so its defaults are "
            f"unknown: {how}"
        )
    with_shares = used[used[SHARE_COLUMNS].notna().any(axis=1)]
    readers = sorted({str(c) for c in with_shares.classifier if isinstance(c, str)})
    if readers:  # which classifier produced the kernel shares (the HParams session's snapshot/classifier)
        notes.append(
            f"kernel shares read by the {' and '.join(readers)} classifier"
            + ("s: the runs differ in it, so their shares do not compare" if len(readers) > 1 else "")
        )
    no_chance = with_shares[with_shares[CHANCE_COLUMNS].isna().any(axis=1)]
    if len(no_chance):
        notes.append(
            f"runs that logged kernel shares without their chance shares ({CHANCE_TAG.format('*')}, "
            "logged by the KernelSnapshot callback since the calibration), so their shares cannot "
            f"be read against chance: {', '.join(_rel(r) for r in no_chance.run)}"
        )
    return notes


def report(
    logdirs: list[str | os.PathLike] | str | os.PathLike, out: str | os.PathLike, baseline: str | None = None
) -> dict[str, Any]:
    """Read every run below ``logdirs``, write results.csv/.md, runs.csv and PNG plots to ``out``.

    ``baseline``: the init label the deltas are taken against (default ``kaiming_normal``; one
    given explicitly must be the label of some group). Returns ``{"groups": DataFrame (the rows
    of results.csv, unrounded, in %), "runs": DataFrame (runs.csv), "curves": DataFrame,
    "skipped": [{"run", "reason"}], "notes": [...], "files": [...]}``.
    Raises :class:`ReportError` for a missing path, no runs, no usable run, an unknown baseline.
    """
    if isinstance(logdirs, (str, os.PathLike)):
        logdirs = [logdirs]
    if not logdirs:
        raise ReportError("no log directory given")
    runs, curves = read_runs(list(logdirs))
    # folders of runs that failed at their start hold no scalar: they are not runs to list
    empty = runs[runs["failed_at_start"].astype(bool)]
    runs = runs[~runs["failed_at_start"].astype(bool)].reset_index(drop=True)
    if runs.empty:
        where = ", ".join(repr(str(p)) for p in logdirs)
        raise ReportError(
            f"no usable run under {where}: the {len(empty)} folder(s) with event files log no scalar and no model "
            f"(runs that failed at their start, or event files not written by run.py fit): "
            f"{', '.join(_rel(run) for run in empty.run[:5])}. Train with `python run.py fit ...` first"
        )
    if runs.reason.notna().all():
        reasons = "; ".join(f"{_rel(r.run)}: {r.reason}" for r in runs.itertuples())
        left_out = f"; {len(empty)} folders with no scalar logged left out" if len(empty) else ""
        raise ReportError(f"no usable run among {len(runs)} found ({reasons}{left_out})")
    runs = _drop_superseded(runs)
    used = runs[runs.reason.isna()]
    explicit = baseline is not None
    baseline = BASELINE if baseline is None else baseline
    labels = sorted(set(used.init))
    if explicit and baseline not in labels:
        close = difflib.get_close_matches(baseline, labels, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ReportError(
            f"--baseline {baseline!r} is no init of these runs{hint}; choose one of "
            f"{', '.join(repr(label) for label in labels)}"
        )
    groups = summarise(used, baseline)

    notes = _notes(used, groups)
    if baseline not in labels:
        notes.append(
            f"no run has the baseline init {baseline!r}, so every delta is n/a "
            f"(--baseline picks another: {', '.join(repr(label) for label in labels)})"
        )
    for r in runs[runs.corrupt_records > 0].itertuples():
        notes.append(
            f"{_rel(r.run)}: {r.corrupt_records} corrupt event records skipped (failed their checksum)"
        )
    if len(empty):
        notes.append(
            f"left out {len(empty)} folders with no scalar logged (runs that failed at their start): "
            + ", ".join(_rel(run) for run in empty.run)
        )

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "results.csv", out / "runs.csv", out / "results.md"]
    _csv(groups, n_a=["delta_best", "delta_final"]).to_csv(files[0], index=False)
    listed = runs.assign(status=np.where(runs.reason.isna(), "used", "skipped"))
    listed = listed.sort_values(["status", "run"], ascending=[False, True], kind="stable")[RUN_COLUMNS]
    _csv(listed).to_csv(files[1], index=False)
    plots, plot_notes = _plot(used, curves, groups, out)
    notes += plot_notes
    files += [path for path, _ in plots]
    skipped = runs[runs.reason.notna()]
    (out / "results.md").write_text(
        _markdown(groups, skipped, notes, plots, logdirs, baseline, len(used)), encoding="utf-8"
    )
    return {
        "groups": groups,
        "runs": listed.reset_index(drop=True),
        "curves": curves[curves.run.isin(used.run)].reset_index(drop=True),
        "skipped": [{"run": r.run, "reason": r.reason} for r in skipped.itertuples()],
        "warnings": [
            f"skipped {_rel(r.run)}: {r.warning}" for r in runs.itertuples() if isinstance(r.warning, str)
        ],
        "notes": notes,
        "files": [str(path) for path in files],
    }


def _csv(table: pd.DataFrame, n_a: list[str] = ()) -> pd.DataFrame:
    """Floats with 4 decimals (no "-0.0000"), blank where missing; ``n_a`` columns say "n/a"."""
    table = table.copy()
    for column in table.columns:
        if pd.api.types.is_float_dtype(table[column]):
            rounded = table[column].round(4) + 0.0
            blank = "n/a" if column in n_a else ""
            table[column] = rounded.map(lambda v, blank=blank: blank if pd.isna(v) else f"{v:.4f}")
    return table


def _rel(path: str | Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------
# plots


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _band(curves: pd.DataFrame, tag: str) -> pd.DataFrame:
    """Mean, min and max over runs at each x any run has (``curves`` of one init)."""
    part = curves[curves.tag == tag]
    return part.groupby(part.x.round(6)).value.agg(["mean", "min", "max", "count"])


def _plot(
    used: pd.DataFrame, curves: pd.DataFrame, groups: pd.DataFrame, out: Path
) -> tuple[list[tuple[Path, str]], list[str]]:
    """val_acc1_<model>.png and kernel_clusters_<model>.png per model (inits in the table's order)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    plots: list[tuple[Path, str]] = []
    notes: list[str] = []
    curves = curves.merge(used[["run", "model", "init", "steps_per_epoch"]], on="run")
    used_slugs: set[str] = set()
    for model, model_groups in groups.groupby("model", sort=True):
        order = list(model_groups.init)  # the table's order
        n_runs = dict(zip(model_groups.init, model_groups.n))
        slug = _slug(model)
        while slug in used_slugs:
            slug += "_"
        used_slugs.add(slug)
        model_curves = curves[curves.model == model]

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label in order:
            band = _band(model_curves[model_curves.init == label], ACC_TAG) * [100, 100, 100, 1]
            marker = "o" if len(band) < 30 else None
            (line,) = ax.plot(
                band.index, band["mean"], marker=marker, ms=3, label=f"{label} (n={n_runs[label]})"
            )
            if n_runs[label] > 1:
                ax.fill_between(
                    band.index, band["min"], band["max"], color=line.get_color(), alpha=0.2, linewidth=0
                )
        ax.set(
            xlabel="epochs trained", ylabel="val top-1 (%)", title=f"{model}\nmean over seeds, band: min-max"
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"val_acc1_{slug}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        plots.append((path, f"{model}: val top-1 per epoch"))

        model_runs = used[used.model == model]
        share_tags = [SHARE_TAG.format(c) for c in CLASSES]
        with_shares = set(model_curves.run[model_curves.tag.isin(share_tags)])
        if not with_shares:
            notes.append(
                f"{model}: no kernel class shares logged ({', '.join(share_tags)}); kernel class plot skipped"
            )
            continue
        by_epoch = model_runs[model_runs.run.isin(with_shares)].steps_per_epoch.notna().all()
        if not by_epoch:  # some runs' steps per epoch are unknown: every run by global step
            model_curves = model_curves.assign(
                x=model_curves.x.where(model_curves.tag == ACC_TAG, model_curves.step)
            )
        fig, axes = plt.subplots(1, len(CLASSES), figsize=(13, 4.2), sharey=True)
        any_chance = False
        for ax, name in zip(axes, CLASSES):
            for index, label in enumerate(order):
                part = model_curves[model_curves.init == label]
                color = f"C{index % 10}"
                observed = _band(part, SHARE_TAG.format(name))
                if observed.empty:
                    continue
                marker = "o" if len(observed) < 30 else None
                n = part.run[part.tag == SHARE_TAG.format(name)].nunique()
                ax.plot(
                    observed.index,
                    observed["mean"],
                    color=color,
                    marker=marker,
                    ms=3,
                    label=f"{label} (n={n})",
                )
                if n > 1:
                    ax.fill_between(
                        observed.index, observed["min"], observed["max"], color=color, alpha=0.2, linewidth=0
                    )
                chance = _band(part, CHANCE_TAG.format(name))
                if len(chance):
                    any_chance = True
                    ax.plot(
                        chance.index, chance["mean"], color=color, linestyle="--", linewidth=1.2, alpha=0.9
                    )
            ax.set(
                title=name.replace("_", "-"),
                xlabel="epochs trained (0: the initialised kernels)" if by_epoch else "global step",
            )
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("share of depthwise kernels")
        handles, _ = axes[0].get_legend_handles_labels()
        if any_chance:
            handles.append(
                Line2D([], [], color="0.3", linestyle="--", label="dashed: chance share (same colour)")
            )
        axes[0].legend(handles=handles, fontsize=8)
        fig.suptitle(
            f"{model}\nkernel classes (solid, mean over seeds, band min-max) and their chance shares (dashed)"
        )
        fig.tight_layout()
        path = out / f"kernel_clusters_{slug}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        plots.append((path, f"{model}: kernel class shares and their chance shares"))
        missing = model_runs.run[~model_runs.run.isin(with_shares)]
        if len(missing):
            notes.append(
                f"{model}: runs without kernel class shares, left out of that plot: "
                f"{', '.join(_rel(r) for r in missing)}"
            )
    return plots, notes


# --------------------------------------------------------------------------------------------
# markdown and CLI


def _pm(mean: float, std: float) -> str:
    return f"{mean:.2f}" if pd.isna(std) else f"{mean:.2f} ± {std:.2f}"


def _delta(group: Any, kind: str, baseline: str) -> str:
    value = group[f"delta_{kind}"]
    if pd.isna(value):
        return "n/a"
    if group["init"] == baseline:
        return "(baseline)"
    return f"{value:+.2f}"


def _md_table(table: pd.DataFrame, right: tuple[str, ...] = ()) -> list[str]:
    """A DataFrame of display strings as Markdown rows (DataFrame.to_markdown would need the
    tabulate package for these few lines)."""
    cells = table.astype(str).map(lambda text: text.replace("|", "\\|"))
    lines = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "|".join("---:" if column in right else "---" for column in table.columns) + "|",
    ]
    return lines + ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]


def _markdown(groups, skipped, notes, plots, logdirs, baseline, n_used) -> str:
    accuracy = pd.DataFrame(
        {
            "model": groups.model,
            "init": groups.init,
            "n": groups.n,
            "seeds": groups.seeds,
            "best": [_pm(m, s) for m, s in zip(groups.best_acc1_mean, groups.best_acc1_std)],
            "Δ best": [_delta(g, "best", baseline) for _, g in groups.iterrows()],
            "final": [_pm(m, s) for m, s in zip(groups.final_acc1_mean, groups.final_acc1_std)],
            "Δ final": [_delta(g, "final", baseline) for _, g in groups.iterrows()],
            "epochs": groups.epochs,
        }
    )
    lines = [
        "# Neural Echos: results",
        "",
        (
            f"{n_used} runs from {', '.join(f'`{d}`' for d in logdirs)}. Top-1 on the validation set "
            f"(`{ACC_TAG}`) in %, mean ± sample std over seeds; best = highest over epochs, final = last "
            f"validation. Δ = difference of means against `{baseline}` init of the same model, "
            "in percentage points."
        ),
        "",
        *_md_table(accuracy, right=("n", "best", "Δ best", "final", "Δ final", "epochs")),
    ]
    kernels = groups[groups[SHARE_COLUMNS].notna().all(axis=1)]
    if len(kernels):
        fmt = lambda values: ["" if pd.isna(v) else f"{v:.3f}" for v in values]
        table = pd.DataFrame({"model": kernels.model, "init": kernels.init})
        for c in CLASSES:
            name = c.replace("_", "-")
            table[name] = fmt(kernels[f"final_{c}"])
            table[f"{name} chance"] = fmt(kernels[f"chance_{c}"])
            if c in EXCESS_CLASSES:
                table[f"{name} excess"] = [f"{v:+.3f}" if pd.notna(v) else "" for v in kernels[f"excess_{c}"]]
        lines += [
            "",
            (
                "Final kernel classes (share of depthwise kernels, mean over seeds), each beside its "
                "chance share (what the same classifier gives the kernels' pixel-permuted nulls) and the "
                "excess over chance; a share means something only where it stands above its chance:"
            ),
            "",
            *_md_table(table, right=tuple(table.columns[2:])),
        ]
    taxonomy = groups[groups[TAXONOMY_COLUMNS].notna().all(axis=1)]
    if len(taxonomy):
        table = pd.DataFrame({"model": taxonomy.model, "init": taxonomy.init})
        for c in TAXONOMY:
            table[c.replace("_", " ")] = [
                f"{v:.3f} ({w:.3f})"
                for v, w in zip(taxonomy[f"taxonomy_{c}"], taxonomy[f"taxonomy_chance_{c}"])
            ]
        caption = (
            "Final kernel taxonomy (share of depthwise kernels by their best template, mean over seeds; "
            "chance share in brackets):"
        )
        lines += ["", caption, "", *_md_table(table, right=tuple(table.columns[2:]))]
    if plots:
        lines += ["", "## Plots", ""]
        for path, title in plots:
            lines += [f"![{title}]({path.name})", ""]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {note.replace('|', chr(92) + '|')}" for note in notes]
    if len(skipped):
        table = pd.DataFrame({"run": [f"`{_rel(r)}`" for r in skipped.run], "reason": list(skipped.reason)})
        lines += ["", "## Skipped runs", "", *_md_table(table)]
    return "\n".join(lines) + "\n"


@exits_on_user_error
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = OneLineArgumentParser(
        prog="run.py report",
        description="Tabulate and plot val top-1 (best/final, mean ± std over seeds, delta vs a baseline "
        "init) and the kernel class shares beside their chance shares, per (model, init), from TensorBoard logs.",
    )
    parser.add_argument(
        "logdirs", nargs="+", metavar="LOGDIR", help="run directories or folders above them (e.g. logs/)"
    )
    parser.add_argument("--out", default="report_out", help="output folder (default: report_out)")
    parser.add_argument(
        "--baseline",
        default=None,
        help=f"init label the deltas are taken against (default: {BASELINE}; e.g. 'none' for the model's own init, "
        "or a label with settings such as 'dog gamma∈(0,0.5)')",
    )
    args = parser.parse_args(argv)
    result = report(args.logdirs, args.out, baseline=args.baseline)  # a ReportError exits as one error line
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    groups, baseline = result["groups"], args.baseline or BASELINE
    model_width, init_width = groups.model.str.len().max(), groups.init.str.len().max()
    for _, g in groups.iterrows():
        print(
            f"{g['model']:<{model_width}}  {g['init']:<{init_width}}  n={g['n']}  "
            f"best {_pm(g['best_acc1_mean'], g['best_acc1_std']):>14} Δ {_delta(g, 'best', baseline).strip('()'):<8}  "
            f"final {_pm(g['final_acc1_mean'], g['final_acc1_std']):>14} Δ {_delta(g, 'final', baseline).strip('()')}"
        )
    if result["skipped"]:
        print(f"{len(result['skipped'])} run(s) skipped: see {Path(args.out) / 'results.md'}")
    print(f"wrote {', '.join(result['files'])}")
    return result


if __name__ == "__main__":
    main()
