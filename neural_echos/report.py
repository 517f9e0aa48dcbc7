"""Compare training runs: best/final val top-1 per (model, init) over seeds, curves, kernel clusters.

    python run.py report logs/ [more LOGDIRs...] [--out report_out] [--baseline kaiming_normal]

Each run is a Lightning ``TensorBoardLogger`` version directory (``logs/<name>/<version>/``)
holding ``events.out.tfevents.*``, ``hparams.yaml`` and ``config.yaml``; a LOGDIR may be such a
directory or any folder above it (searched recursively). :func:`report` writes to ``out``:

- ``results.csv``: one row per (model, init) group: n, seeds, mean and sample std (n - 1) of the
  best and of the final ``val/acc1`` over seeds (in %), and the difference of the means ("delta",
  in percentage points) against the baseline init of the same model (``kaiming_normal`` unless
  ``--baseline`` says otherwise; "n/a" when the model has no such group); the mean final kernel
  cluster proportions when the runs logged them.
- ``runs.csv``: one row per run found, used or skipped (with the reason).
- ``results.md``: the table, the plots, notes (differing settings, unfinished or superseded
  runs) and the skipped runs.
- ``val_acc1_<model>.png``: val top-1 against epochs trained, one line per init (mean over
  seeds) with a min-max band; ``kernel_clusters_<model>.png``: the on-center / off-center /
  other proportions of the depthwise kernels in the same way (only when logged).

What is read, and from where (exact keys):

- model: ``model_name`` and ``model_kwargs`` in ``hparams.yaml`` (the LightningModule's
  hyper-parameters); a group is one ``(model_name, model_kwargs)`` and one init label.
- init: the ``init/*`` keys the DepthwiseInit callback logs to ``hparams.yaml``
  (``init/method``, ``init/gamma_low``, ``init/gamma_high``, ``init/on_center_prob``,
  ``init/dog_share``, ``init/scale``, ``init/radius``, ``init/name_filter``, gaussian_covariance's
  ``init/sigma``, ``init/tau``, ``init/eps``); when absent (a fit resumed from a checkpoint logs
  none), the ``init:`` section of ``config.yaml`` (``method: {class_path, init_args}``). The label
  is the method, plus whatever differs from the method's defaults: "dog", "dog γ∈(0,0.5)", "dog
  on-only", "dog share=0.5", ...
- seed: ``seed_everything`` in ``config.yaml`` (the run's seed; LightningCLI writes it there),
  else ``init/seed``. config.yaml comes first because ``init.seed`` may be pinned while the run
  seed varies, and then ``init/seed`` would make distinct runs look like one seed.
- scalars: ``val/acc1`` (a fraction; reported in %), ``epoch`` (Lightning's companion scalar, to
  map steps to epochs), ``kernels/proportion/on_center``, ``kernels/proportion/off_center``,
  ``kernels/proportion/other`` (optional).

Runs of the same group and seed: the newest (latest event) is used and the others are listed as
superseded. Runs without ``val/acc1`` or without ``model_name`` are skipped with the reason.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import statistics
import struct
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neural_echos.errors import NeuralEchosError

ACC_TAG = "val/acc1"
EPOCH_TAG = "epoch"
PROPORTION_TAGS = {
    "on-center": "kernels/proportion/on_center",
    "off-center": "kernels/proportion/off_center",
    "other": "kernels/proportion/other",
}
BASELINE = "kaiming_normal"
EVENT_PREFIX = "events.out.tfevents."
DOG_DEFAULTS = {
    "gamma_low": 0.0, "gamma_high": 1.0, "on_center_prob": 0.5, "dog_share": 1.0, "scale": "unit",
    "radius": "gamma*(k+1)/2",
}
# hparams that may differ between runs of one comparison without making it unfair
IGNORED_HPARAMS = {"root", "num_workers", "download", "_instantiator", "_class_path", "pin_memory", "persistent_workers"}
METHOD_ORDER = {"kaiming_normal": 0, "dog": 1}
CSV_FIELDS = [
    "model", "init", "init_method", "model_name", "model_kwargs", "n", "seeds",
    "best_acc1_mean", "best_acc1_std", "final_acc1_mean", "final_acc1_std",
    "delta_best", "delta_final", "baseline", "epochs",
    "final_on_center", "final_off_center", "final_other",
]
RUN_FIELDS = ["run", "status", "reason", "model", "init", "seed", "best_acc1", "best_epoch", "final_acc1", "epochs"]


class ReportError(NeuralEchosError):
    """The log directories hold nothing to report (missing path, no runs, no usable run)."""


# --------------------------------------------------------------------------------------------
# runs


@dataclass
class Run:
    path: Path
    model_name: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    hparams: dict[str, Any] = field(default_factory=dict)
    max_epochs: Any = None
    acc: list[tuple[int, float]] = field(default_factory=list)  # (epoch index, val/acc1) per epoch
    final: float = math.nan
    best: float = math.nan
    best_epoch: int | None = None
    steps_per_epoch: float | None = None
    proportions: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # name -> (step, value)
    last_wall_time: float = 0.0
    skip_reason: str | None = None
    corrupt_records: int = 0  # event records that failed their checksum, skipped
    empty: bool = False  # no scalar logged at all: a run that failed at its start

    @property
    def model_label(self) -> str:
        return model_label(self.model_name, self.model_kwargs)

    @property
    def init_label(self) -> str:
        return init_label(self.init)

    @property
    def group(self) -> tuple[str, str]:
        return (self.model_label, self.init_label)


def model_label(model_name: str, model_kwargs: dict[str, Any] | None) -> str:
    """``convnext_tiny(drop_path_rate=0.1, kernel_sizes=9)``: the name and every model_kwarg."""
    kwargs = model_kwargs or {}
    if not kwargs:
        return model_name
    return f"{model_name}({', '.join(f'{key}={_fmt_value(kwargs[key])}' for key in sorted(kwargs))})"


def init_label(init: dict[str, Any]) -> str:
    """The method, plus the settings that differ from its defaults (``dog γ∈(0,0.5), on-only``)."""
    method = str(init.get("method", "unknown"))
    parts: list[str] = []
    if method == "dog":
        low = _float(init.get("gamma_low"), DOG_DEFAULTS["gamma_low"])
        high = _float(init.get("gamma_high"), DOG_DEFAULTS["gamma_high"])
        if (low, high) != (DOG_DEFAULTS["gamma_low"], DOG_DEFAULTS["gamma_high"]):
            parts.append(f"γ∈({low:g},{high:g})")
        on = _float(init.get("on_center_prob"), DOG_DEFAULTS["on_center_prob"])
        if on == 1.0:
            parts.append("on-only")
        elif on == 0.0:
            parts.append("off-only")
        elif on != DOG_DEFAULTS["on_center_prob"]:
            parts.append(f"on={on:g}")
        share = _float(init.get("dog_share"), DOG_DEFAULTS["dog_share"])
        if share != DOG_DEFAULTS["dog_share"]:
            parts.append(f"share={share:g}")
        scale = _str(init.get("scale")) or DOG_DEFAULTS["scale"]
        if scale != DOG_DEFAULTS["scale"]:
            parts.append(f"scale={scale}")
        radius = _str(init.get("radius")) or DOG_DEFAULTS["radius"]
        if radius != DOG_DEFAULTS["radius"]:
            parts.append(f"radius={radius}")
    elif method in ("gaussian_covariance", "covariance"):  # (logged as "covariance" before its rename)
        scale = _str(init.get("scale")) or "kaiming"
        if scale != "kaiming":
            parts.append(f"scale={scale}")
        defaults = _covariance_defaults()
        for key in ("sigma", "tau", "eps"):
            value = _str(init.get(key))
            if value is not None and value != defaults.get(key):
                parts.append(f"{key}={value}")
    name_filter = _str(init.get("name_filter"))
    if name_filter:
        parts.append(f"filter={name_filter}")
    return method + (" " + ", ".join(parts) if parts else "")


def _covariance_defaults() -> dict[str, str]:
    try:
        from neural_echos import covariance
    except Exception:  # noqa: BLE001  (labels then show every covariance option)
        return {}
    values = {"sigma": getattr(covariance, "DEFAULT_SIGMA", None), "tau": getattr(covariance, "DEFAULT_TAU", None),
              "eps": getattr(covariance, "DEFAULT_EPS", None)}
    return {key: _str(list(value) if isinstance(value, tuple) else value) for key, value in values.items() if value is not None}


def _float(value: Any, default: float) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _str(value: Any) -> str | None:
    """Settings as logged: None and the strings "None"/"null"/"" all mean unset."""
    if value is None:
        return None
    if isinstance(value, float):
        return f"{value:g}"
    text = str(value)
    return None if text in ("None", "null", "") else text


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_fmt_value(v) for v in value) + "]"
    return str(value)


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
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=_LenientLoader)  # noqa: S506  (a SafeLoader subclass)
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
                raise ReportError(f"{str(path)!r} is a file, not a log directory (give logs/ or logs/<name>/<version>/)")
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
            f"logs/<name>/version_0/ holding {EVENT_PREFIX}* files (train with `python run.py fit ...` first)"
        )
    return sorted(found)


def _init_from_config(section: Any) -> dict[str, Any]:
    """The ``init:`` section of config.yaml in the ``init/*`` form the callback logs."""
    if not isinstance(section, dict) or "method" not in section:
        return {}
    method = section["method"]
    if isinstance(method, dict):  # {class_path, init_args}: the method's options are its init_args
        from neural_echos.init import method_name

        section = {**section, **(method.get("init_args") or {})}
        method = method_name(str(method.get("class_path"))) or str(method.get("class_path"))
    out: dict[str, Any] = {"method": method or "none"}
    if method == "dog":
        low, high = (section.get("gamma_range") or [DOG_DEFAULTS["gamma_low"], DOG_DEFAULTS["gamma_high"]])[:2]
        out.update(gamma_low=low, gamma_high=high)
    for key in ("on_center_prob", "dog_share", "scale", "radius", "name_filter", "sigma", "tau", "eps", "seed"):
        if key in section:
            out[key] = section[key]
    return out


def read_run(run_dir: Path) -> Run:
    """Everything the report needs from one run directory (``skip_reason`` set when unusable)."""
    run = Run(path=run_dir)
    try:
        scalars, run.corrupt_records = _read_scalars(run_dir)
    except OSError as err:
        run.skip_reason = f"cannot read the event files: {type(err).__name__}: {err}"
        return run
    try:
        hparams = _load_yaml(_find_beside(run_dir, "hparams.yaml"))
        config = _load_yaml(_find_beside(run_dir, "config.yaml")) or {}
    except (OSError, yaml.YAMLError) as err:
        run.skip_reason = f"unreadable hparams.yaml/config.yaml: {err}"
        return run
    if not scalars and not (hparams or {}).get("model_name"):
        # nothing logged, not even the model: a run that failed at its start
        run.empty, run.skip_reason = True, "no scalar and no model logged (a run that failed at its start)"
        return run
    if hparams is None:
        run.skip_reason = "no hparams.yaml (not a Lightning TensorBoardLogger run?)"
        return run
    if not hparams.get("model_name"):
        run.skip_reason = "hparams.yaml has no model_name (not an ImageClassifier run)"
        return run
    run.model_name = str(hparams["model_name"])
    run.model_kwargs = dict(hparams.get("model_kwargs") or {})
    run.hparams = {k: v for k, v in hparams.items() if not str(k).startswith("init/")}
    run.init = {str(k)[len("init/"):]: v for k, v in hparams.items() if str(k).startswith("init/")}
    if not run.init.get("method"):
        run.init = _init_from_config(config.get("init"))
    if not run.init.get("method"):
        run.init = {"method": "unknown"}
    if str(run.init["method"]).startswith("none"):  # logged as "none (model default)"
        run.init["method"] = "none"
    seed = config.get("seed_everything")
    if isinstance(seed, bool) or not isinstance(seed, int):
        seed = run.init.get("seed")
    try:
        run.seed = None if seed is None or isinstance(seed, bool) else int(seed)
    except (TypeError, ValueError):
        run.seed = None
    trainer = config.get("trainer") if isinstance(config.get("trainer"), dict) else {}
    run.max_epochs = trainer.get("max_epochs")

    run.last_wall_time = max((wall for events in scalars.values() for wall, _, _ in events), default=0.0)
    if not scalars.get(ACC_TAG):
        run.skip_reason = f"no {ACC_TAG} scalar (crashed or stopped before the first validation?)"
        return run

    step_to_epoch: dict[int, int] = {}
    last_step_of_epoch: dict[int, int] = {}
    for _, step, value in scalars.get(EPOCH_TAG, []):
        epoch = int(round(value))
        step_to_epoch[step] = max(epoch, step_to_epoch.get(step, epoch))
        last_step_of_epoch[epoch] = max(step, last_step_of_epoch.get(epoch, step))
    per_epoch: dict[int, float] = {}
    acc_events = sorted(scalars[ACC_TAG], key=lambda event: event[1])
    for index, (_, step, value) in enumerate(acc_events):
        epoch = step_to_epoch.get(step, index if not step_to_epoch else _epoch_before(step, last_step_of_epoch))
        per_epoch[epoch] = value  # several validations in one epoch: the last one
    run.acc = sorted(per_epoch.items())
    run.final = acc_events[-1][2]
    run.best_epoch, run.best = max(run.acc, key=lambda item: (item[1], -item[0]))
    run.steps_per_epoch = _steps_per_epoch(last_step_of_epoch)
    for name, tag in PROPORTION_TAGS.items():
        if scalars.get(tag):
            run.proportions[name] = sorted(((step, value) for _, step, value in scalars[tag]))
    return run


def _epoch_before(step: int, last_step_of_epoch: dict[int, int]) -> int:
    """The epoch of a step Lightning logged no ``epoch`` for: the first whose end is not before it."""
    for epoch in sorted(last_step_of_epoch):
        if last_step_of_epoch[epoch] >= step:
            return epoch
    return max(last_step_of_epoch) + 1


def _steps_per_epoch(last_step_of_epoch: dict[int, int]) -> float | None:
    """Optimizer steps per epoch from where Lightning logged each epoch's end (step = steps - 1)."""
    epochs = sorted(last_step_of_epoch)
    complete = epochs[:-1] if len(epochs) > 2 else epochs  # the last epoch may be cut short
    diffs = [last_step_of_epoch[b] - last_step_of_epoch[a] for a, b in zip(complete, complete[1:]) if b == a + 1]
    if diffs:
        return float(statistics.median(diffs))
    if epochs and epochs[0] == 0 and last_step_of_epoch[0] >= 0:
        return float(last_step_of_epoch[0] + 1)
    return None


def _read_scalars(run_dir: Path) -> tuple[dict[str, list[tuple[float, int, float]]], int]:
    """``tag -> [(wall_time, step, value)]`` of every events file in ``run_dir`` (in name order,
    i.e. creation order), and the number of corrupt records skipped.

    Written here rather than with TensorBoard's EventAccumulator because that one stops reading
    a file at its first corrupt record, so one flipped byte dropped the rest of a run. It reads
    the same scalars (``simple_value``, as Lightning's TensorBoardLogger writes them) in the
    same order; TFRecord framing: length (8 bytes), its masked CRC-32C, data, the data's CRC.
    """
    from tensorboard.compat.proto import event_pb2

    scalars: dict[str, list[tuple[float, int, float]]] = defaultdict(list)
    corrupt = 0
    for path in sorted(p for p in run_dir.iterdir() if p.name.startswith(EVENT_PREFIX) and p.is_file()):
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
                    scalars[value.tag].append((event.wall_time, int(event.step), float(value.simple_value)))
    return dict(scalars), corrupt


def _tfrecords(data: bytes) -> tuple[list[bytes], int]:
    """The records of a TFRecord file whose checksums hold, and how many were corrupt.

    A record whose data fails its CRC is skipped; a length that fails its CRC is searched past,
    byte by byte, to the next valid header. A truncated last record (a killed writer) ends the
    file without counting as corrupt.
    """
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    records: list[bytes] = []
    corrupt, pos, lost_sync = 0, 0, False
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        (length_crc,) = struct.unpack_from("<I", data, pos + 8)
        if masked_crc32c(data[pos : pos + 8]) != length_crc:
            corrupt += not lost_sync
            lost_sync, pos = True, pos + 1
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


# --------------------------------------------------------------------------------------------
# the report


def report(logdirs: list[str | os.PathLike], out: str | os.PathLike, baseline: str = BASELINE) -> dict[str, Any]:
    """Read every run below ``logdirs``, write results.csv/.md, runs.csv and PNG plots to ``out``.

    Returns ``{"groups": [...], "runs": [...], "skipped": [...], "notes": [...], "files": [...]}``:
    groups as the rows of results.csv (unrounded floats, in %), runs as runs.csv.
    Raises :class:`ReportError` for a missing path, no runs, or no usable run.
    """
    if isinstance(logdirs, (str, os.PathLike)):
        logdirs = [logdirs]
    if not logdirs:
        raise ReportError("no log directory given")
    runs = [read_run(path) for path in find_run_dirs(list(logdirs))]
    # folders of runs that failed at their start hold no scalar: they are not runs to list
    empty = [run for run in runs if run.empty]
    runs = [run for run in runs if not run.empty]
    used = [run for run in runs if run.skip_reason is None]
    if not used:
        reasons = "; ".join(f"{_rel(run.path)}: {run.skip_reason}" for run in runs)
        left_out = f"; {len(empty)} folders with no scalar logged left out" if empty else ""
        raise ReportError(f"no usable run among {len(runs)} found ({reasons}{left_out})")
    used = _drop_superseded(used)
    used = [run for run in used if run.skip_reason is None]
    skipped = [run for run in runs if run.skip_reason is not None]

    by_group: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in used:
        by_group[run.group].append(run)
    groups = [_summarise(runs_) for runs_ in by_group.values()]
    _add_deltas(groups, baseline)
    groups.sort(key=lambda g: (g["model"], METHOD_ORDER.get(g["init_method"], 2), g["init"] != g["init_method"], g["init"]))
    notes = _notes(used, by_group)
    for run in runs:
        if run.corrupt_records:
            notes.append(f"{_rel(run.path)}: {run.corrupt_records} corrupt event records skipped (failed their checksum)")
    if empty:
        notes.append(f"left out {len(empty)} folders with no scalar logged (runs that failed at their start): "
                     + ", ".join(_rel(run.path) for run in empty))

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "results.csv", out / "runs.csv", out / "results.md"]
    _write_csv(files[0], CSV_FIELDS, [_csv_row(g) for g in groups])
    run_rows = [_run_row(run) for run in sorted(runs, key=lambda r: (r.skip_reason is not None, str(r.path)))]
    _write_csv(files[1], RUN_FIELDS, run_rows)
    plots, plot_notes = _plot(used, out)
    notes += plot_notes
    files += [path for path, _ in plots]
    (out / "results.md").write_text(_markdown(groups, skipped, notes, plots, logdirs, baseline, len(used)), encoding="utf-8")
    return {
        "groups": groups,
        "runs": run_rows,
        "skipped": [{"run": str(run.path), "reason": run.skip_reason} for run in skipped],
        "notes": notes,
        "files": [str(path) for path in files],
    }


def _drop_superseded(runs: list[Run]) -> list[Run]:
    """Keep the newest run of each (group, seed); mark the older ones skipped."""
    newest: dict[tuple, Run] = {}
    for run in runs:
        if run.seed is None:
            continue
        key = (run.group, run.seed)
        if key not in newest or run.last_wall_time > newest[key].last_wall_time:
            newest[key] = run
    for run in runs:
        if run.seed is not None and newest[(run.group, run.seed)] is not run:
            run.skip_reason = f"superseded by the newer run {_rel(newest[(run.group, run.seed)].path)} (same model, init and seed {run.seed})"
    return runs


def _mean_std(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _summarise(runs: list[Run]) -> dict[str, Any]:
    runs = sorted(runs, key=lambda r: (r.seed is None, r.seed if r.seed is not None else 0, str(r.path)))
    first = runs[0]
    best_mean, best_std = _mean_std([100 * r.best for r in runs])
    final_mean, final_std = _mean_std([100 * r.final for r in runs])
    epochs = sorted({len(r.acc) for r in runs})
    group: dict[str, Any] = {
        "model": first.model_label,
        "init": first.init_label,
        "init_method": str(first.init.get("method")),
        "model_name": first.model_name,
        "model_kwargs": json.dumps(first.model_kwargs, sort_keys=True),
        "n": len(runs),
        "seeds": " ".join("?" if r.seed is None else str(r.seed) for r in runs),
        "best_acc1_mean": best_mean,
        "best_acc1_std": best_std,
        "final_acc1_mean": final_mean,
        "final_acc1_std": final_std,
        "epochs": str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}-{epochs[-1]}",
        "runs": [str(r.path) for r in runs],
    }
    for name in PROPORTION_TAGS:
        values = [r.proportions[name][-1][1] for r in runs if r.proportions.get(name)]
        key = "final_" + name.replace("-", "_")
        group[key] = statistics.fmean(values) if len(values) == len(runs) else None
    return group


def _add_deltas(groups: list[dict[str, Any]], baseline: str) -> None:
    bases = {g["model"]: g for g in groups if g["init"] == baseline}
    for group in groups:
        base = bases.get(group["model"])
        group["baseline"] = baseline if base is not None else "n/a"
        for kind in ("best", "final"):
            group[f"delta_{kind}"] = group[f"{kind}_acc1_mean"] - base[f"{kind}_acc1_mean"] if base is not None else None


def _notes(runs: list[Run], by_group: dict[tuple[str, str], list[Run]]) -> list[str]:
    notes = []
    by_model: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_model[run.model_label].append(run)
    for model, model_runs in sorted(by_model.items()):
        settings = [{**{k: v for k, v in r.hparams.items() if k not in IGNORED_HPARAMS}, "trainer.max_epochs": r.max_epochs} for r in model_runs]
        keys = sorted({key for s in settings for key in s}, key=str)
        differing = []
        for key in keys:
            values = {json.dumps(s.get(key), sort_keys=True, default=str) for s in settings}
            if len(values) > 1:
                differing.append(f"{key} ({', '.join(sorted(values))})")
        if differing:
            notes.append(f"{model}: the runs differ in more than the init, so the deltas mix effects: {'; '.join(differing)}")
    for (model, init), group_runs in sorted(by_group.items()):
        lengths = {len(r.acc) for r in group_runs}
        if len(lengths) > 1:
            short = [f"{_rel(r.path)} ({len(r.acc)})" for r in group_runs if len(r.acc) < max(lengths)]
            notes.append(f"{model} / {init}: runs with fewer validated epochs than the others (unfinished?): {', '.join(short)}")
        unknown = [_rel(r.path) for r in group_runs if r.seed is None]
        if unknown:
            notes.append(f"{model} / {init}: seed unknown (no config.yaml seed_everything, no init/seed) for {', '.join(unknown)}")
    return notes


def _round(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{round(value, digits) + 0.0:.{digits}f}"  # + 0.0: no "-0.0000"


def _csv_row(group: dict[str, Any]) -> dict[str, Any]:
    row = {key: group.get(key, "") for key in CSV_FIELDS}
    for key in ("best_acc1_mean", "best_acc1_std", "final_acc1_mean", "final_acc1_std", "final_on_center", "final_off_center", "final_other"):
        row[key] = _round(group.get(key))
    for key in ("delta_best", "delta_final"):
        row[key] = "n/a" if group[key] is None else _round(group[key])
    return row


def _run_row(run: Run) -> dict[str, Any]:
    ok = run.skip_reason is None
    return {
        "run": str(run.path),
        "status": "used" if ok else "skipped",
        "reason": run.skip_reason or "",
        "model": run.model_label if run.model_name else "",
        "init": run.init_label if run.init else "",
        "seed": "" if run.seed is None else run.seed,
        "best_acc1": _round(100 * run.best) if run.acc else "",
        "best_epoch": "" if run.best_epoch is None else run.best_epoch,
        "final_acc1": _round(100 * run.final) if run.acc else "",
        "epochs": len(run.acc) if run.acc else "",
    }


def _write_csv(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _rel(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------
# plots


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "model"


def _band(series: list[list[tuple[float, float]]]) -> tuple[list[float], list[float], list[float], list[float]]:
    """Mean, min and max over runs at every x any run has (runs missing an x are left out there)."""
    values: dict[float, list[float]] = defaultdict(list)
    for points in series:
        for x, y in points:
            values[round(x, 6)].append(y)
    xs = sorted(values)
    return xs, [statistics.fmean(values[x]) for x in xs], [min(values[x]) for x in xs], [max(values[x]) for x in xs]


def _plot(runs: list[Run], out: Path) -> tuple[list[tuple[Path, str]], list[str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    plots: list[tuple[Path, str]] = []
    notes: list[str] = []
    by_model: dict[str, dict[str, list[Run]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        by_model[run.model_label][run.init_label].append(run)
    used_slugs: set[str] = set()
    for model in sorted(by_model):
        inits = by_model[model]
        order = sorted(inits, key=lambda label: (METHOD_ORDER.get(inits[label][0].init.get("method"), 2), label))
        slug = _slug(model)
        while slug in used_slugs:
            slug += "_"
        used_slugs.add(slug)

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for label in order:
            xs, mean, low, high = _band([[(epoch + 1, 100 * acc) for epoch, acc in r.acc] for r in inits[label]])
            (line,) = ax.plot(xs, mean, marker="o" if len(xs) < 30 else None, ms=3, label=f"{label} (n={len(inits[label])})")
            if len(inits[label]) > 1:
                ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set(xlabel="epochs trained", ylabel="val top-1 (%)", title=f"{model}\nmean over seeds, band: min-max")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"val_acc1_{slug}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        plots.append((path, f"{model}: val top-1 per epoch"))

        model_runs = [r for label in order for r in inits[label]]
        with_props = [r for r in model_runs if r.proportions]
        if not with_props:
            notes.append(
                f"{model}: no kernel cluster proportions logged ({', '.join(PROPORTION_TAGS.values())}); "
                "cluster plot skipped"
            )
            continue
        by_epoch = all(r.steps_per_epoch for r in with_props)
        fig, axes = plt.subplots(1, len(PROPORTION_TAGS), figsize=(13, 4), sharey=True)
        for ax, name in zip(axes, PROPORTION_TAGS):
            for index, label in enumerate(order):
                series = [
                    [(step / r.steps_per_epoch if by_epoch else step, value) for step, value in r.proportions.get(name, [])]
                    for r in inits[label] if r.proportions.get(name)
                ]
                if not series:
                    continue
                xs, mean, low, high = _band(series)
                color = f"C{index % 10}"
                ax.plot(xs, mean, color=color, marker="o" if len(xs) < 30 else None, ms=3, label=f"{label} (n={len(series)})")
                if len(series) > 1:
                    ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0)
            ax.set(title=name, xlabel="epochs trained (global step / steps per epoch)" if by_epoch else "global step")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("share of depthwise kernels")
        axes[0].legend(fontsize=8)
        fig.suptitle(f"{model}: kernel clusters, mean over seeds, band: min-max")
        fig.tight_layout()
        path = out / f"kernel_clusters_{slug}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        plots.append((path, f"{model}: kernel cluster proportions"))
        missing = [_rel(r.path) for r in model_runs if not r.proportions]
        if missing:
            notes.append(f"{model}: runs without cluster proportions, left out of that plot: {', '.join(missing)}")
    return plots, notes


# --------------------------------------------------------------------------------------------
# markdown and CLI


def _pm(mean: float, std: float | None) -> str:
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def _delta(group: dict[str, Any], kind: str, baseline: str) -> str:
    if group[f"delta_{kind}"] is None:
        return "n/a"
    if group["init"] == baseline:
        return "(baseline)"
    return f"{group[f'delta_{kind}']:+.2f}"


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _markdown(groups, skipped, notes, plots, logdirs, baseline, n_used) -> str:
    lines = [
        "# Neural Echos: results",
        "",
        f"{n_used} runs from {', '.join(f'`{d}`' for d in logdirs)}. Top-1 on the validation set "
        f"(`{ACC_TAG}`) in %, mean ± sample std over seeds; best = highest over epochs, final = last "
        f"validation. Δ = difference of means against `{baseline}` init of the same model, "
        "in percentage points.",
        "",
        "| model | init | n | seeds | best | Δ best | final | Δ final | epochs |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for g in groups:
        lines.append(
            f"| {_md_cell(g['model'])} | {_md_cell(g['init'])} | {g['n']} | {g['seeds']} | "
            f"{_pm(g['best_acc1_mean'], g['best_acc1_std'])} | {_delta(g, 'best', baseline)} | "
            f"{_pm(g['final_acc1_mean'], g['final_acc1_std'])} | {_delta(g, 'final', baseline)} | {g['epochs']} |"
        )
    with_props = [g for g in groups if g.get("final_on_center") is not None]
    if with_props:
        lines += ["", "Final kernel clusters (share of depthwise kernels, mean over seeds):", "",
                  "| model | init | on-center | off-center | other |", "|---|---|---:|---:|---:|"]
        for g in with_props:
            lines.append(
                f"| {_md_cell(g['model'])} | {_md_cell(g['init'])} | {g['final_on_center']:.3f} | "
                f"{g['final_off_center']:.3f} | {g['final_other']:.3f} |"
            )
    if plots:
        lines += ["", "## Plots", ""]
        for path, title in plots:
            lines += [f"![{title}]({path.name})", ""]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {_md_cell(note)}" for note in notes]
    if skipped:
        lines += ["", "## Skipped runs", "", "| run | reason |", "|---|---|"]
        lines += [f"| `{_rel(run.path)}` | {_md_cell(run.skip_reason)} |" for run in skipped]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        prog="run.py report",
        description="Tabulate and plot val top-1 (best/final, mean ± std over seeds, delta vs Kaiming) "
        "and kernel cluster proportions per (model, init) from TensorBoard logs.",
    )
    parser.add_argument("logdirs", nargs="+", metavar="LOGDIR", help="run directories or folders above them (e.g. logs/)")
    parser.add_argument("--out", default="report_out", help="output folder (default: report_out)")
    parser.add_argument(
        "--baseline", default=BASELINE,
        help=f"init label the deltas are taken against (default: {BASELINE}; e.g. 'none' for the model's own init)",
    )
    args = parser.parse_args(argv)
    try:
        result = report(args.logdirs, args.out, baseline=args.baseline)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    model_width = max(len(g["model"]) for g in result["groups"])
    init_width = max(len(g["init"]) for g in result["groups"])
    for g in result["groups"]:
        print(
            f"{g['model']:<{model_width}}  {g['init']:<{init_width}}  n={g['n']}  "
            f"best {_pm(g['best_acc1_mean'], g['best_acc1_std']):>14} Δ {_delta(g, 'best', args.baseline).strip('()'):<8}  "
            f"final {_pm(g['final_acc1_mean'], g['final_acc1_std']):>14} Δ {_delta(g, 'final', args.baseline).strip('()')}"
        )
    if result["skipped"]:
        print(f"{len(result['skipped'])} run(s) skipped: see {Path(args.out) / 'results.md'}")
    print(f"wrote {', '.join(result['files'])}")
    return result


if __name__ == "__main__":
    main()
