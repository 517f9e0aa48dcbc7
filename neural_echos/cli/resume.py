"""Reading ``--ckpt_path`` and reconciling the command line with the checkpoint's settings
(the rules are in :mod:`neural_echos.cli.run_folders`'s docstring)."""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from jsonargparse import Namespace

from neural_echos.checkpoints import Reader, load_lightning_checkpoint
from neural_echos.errors import ResumeError, one_line
from neural_echos.init import method_name

SEED_DEFAULT = 42
# hyper-parameters a resume may change freely (where the data lies and how it is read)
FREE_DATA_KEYS = {"root", "download", "num_workers"}
# filled in from the DataModule (link_arguments below), compared there
LINKED_MODEL_KEYS = {"num_classes", "image_size"}
INTERNAL_KEYS = {"_instantiator", "_class_path"}


CKPT_PATH = Reader(
    what="--ckpt_path",
    error=ResumeError,
    accepts="a .ckpt file written by run.py fit",
    missing_hint="pass a .ckpt written by run.py fit (logs/<name>/<version>/checkpoints/last.ckpt), or 'last' with "
    "the run's --trainer.logger.init_args.version",
    empty_hint="Pass another checkpoint of that run (e.g. a best-*.ckpt beside it)",
    zip_only=True,
    trust_hint="pass --weights_only false",
    state_dicts=False,
)


def load_checkpoint_for(subcommand: str, path: str, weights_only: bool = True) -> dict:
    """Read ``--ckpt_path`` (memory-mapped: tensors stay on disk) and check it can serve ``subcommand``
    (:func:`neural_echos.checkpoints.load_lightning_checkpoint`, the checks every checkpoint reader shares).

    Raises:
        ResumeError: missing, a folder, unreadable, not a Lightning checkpoint, or (for fit)
            without the optimizer and loop states.
    """
    return load_lightning_checkpoint(path, CKPT_PATH, for_fit=subcommand == "fit", weights_only=weights_only)


def reconcile_with_checkpoint(
    cli: Any, subcommand: str, config: Namespace, checkpoint: dict, path: str
) -> list[str]:
    """Take unset settings from the checkpoint; refuse set ones that differ (module docstring).

    Returns notes on what was taken from the checkpoint. Raises :class:`ResumeError` listing
    every conflict.
    """
    conflicts: list[str] = []
    adopted: list[str] = []
    hparams = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if k not in INTERNAL_KEYS}
    model_config = config.get("model")
    if hparams and isinstance(model_config, Namespace):
        defaults = _signature_defaults(cli.model_class)
        for key, saved in hparams.items():
            if key in LINKED_MODEL_KEYS or key not in model_config:
                continue
            given = model_config.get(key)
            if _same(given, saved):
                continue
            if key in defaults and _same(given, defaults[key]):
                adopted.append(f"model.{key}")  # LightningCLI then sets it from the checkpoint
            else:
                conflicts.append(f"model.{key} {_show(given)} (given) vs {_show(saved)} (checkpoint)")
    if subcommand == "fit":
        conflicts += _reconcile_data(config, checkpoint, adopted, path)
        conflicts += _reconcile_seed(config, checkpoint, adopted)
        conflicts += _reconcile_init(config, checkpoint)
    if conflicts:
        run_config = Path(path).resolve().parent.parent / "config.yaml"
        own = f", e.g. resume with the run's own --config {run_config}" if run_config.is_file() else ""
        raise ResumeError(
            f"--ckpt_path {path!r}: these settings differ from the run the checkpoint continues: "
            f"{'; '.join(conflicts)}. "
            f"A resume continues the run as it was trained: drop them or give the checkpoint's values{own}; to train "
            "with other settings, start a new run without --ckpt_path"
        )
    return [f"{', '.join(adopted)}"] if adopted else []


def _loaded_datamodule(class_path: str) -> Any:
    """The LightningDataModule class ``class_path`` names if its module is this project's
    ``datamodules`` package or already imported; ``None`` otherwise. Imports nothing else."""
    import datamodules  # noqa: F401  (ours: CIFAR10DataModule, ImageNetDataModule)

    module_name, _, name = class_path.rpartition(".")
    module = sys.modules.get(module_name)
    cls = getattr(module, name, None) if module is not None else None
    return cls if isinstance(cls, type) and issubclass(cls, pl.LightningDataModule) else None


def _reconcile_data(config: Namespace, checkpoint: dict, adopted: list[str], path: str = "") -> list[str]:
    saved = dict(checkpoint.get("datamodule_hyper_parameters") or {})
    saved_class = saved.pop("_class_path", None)
    saved = {k: v for k, v in saved.items() if k not in INTERNAL_KEYS}
    if not saved_class:
        return []
    data = config.get("data")
    if data is None:  # no data config given: the checkpoint's DataModule, as it was
        if _loaded_datamodule(str(saved_class)) is None:  # a name from the file is never imported
            raise ResumeError(
                f"--ckpt_path {path!r} names the DataModule {str(saved_class)[:200]!r}, which is not one of this "
                "project's (datamodules.*) nor already loaded, and a module named in a checkpoint is never imported: "
                f"if you trust it, pass --data {str(saved_class)[:200]} with its settings yourself"
            )
        config.data = Namespace(class_path=saved_class, init_args=Namespace(**saved))
        adopted.append("data")
        return []
    if not isinstance(data, Namespace) or "class_path" not in data:
        return []
    if data.class_path != saved_class:
        return [f"data {data.class_path} (given) vs {saved_class} (checkpoint)"]
    init_args = data.get("init_args") or Namespace()
    defaults = _signature_defaults(_import(saved_class))
    conflicts = []
    for key, value in saved.items():
        if key not in init_args or _same(init_args.get(key), value):
            continue
        if key in defaults and _same(init_args.get(key), defaults[key]):
            init_args[key] = value
            adopted.append(f"data.{key}")
        elif key not in FREE_DATA_KEYS:
            conflicts.append(f"data.{key} {_show(init_args.get(key))} (given) vs {_show(value)} (checkpoint)")
    return conflicts


def _reconcile_seed(config: Namespace, checkpoint: dict, adopted: list[str]) -> list[str]:
    callbacks = checkpoint.get("callbacks") or {}
    state = next((v for k, v in callbacks.items() if str(k).startswith("RNGStateCheckpoint")), None)
    saved = state.get("seed") if isinstance(state, dict) else None
    if saved is None:
        return []  # a checkpoint from before the seed was stored
    given = config.get("seed_everything")
    if given is False or _same(given, saved):
        return []
    if given is True or _same(given, SEED_DEFAULT):
        config.seed_everything = int(saved)
        adopted.append(f"seed_everything {int(saved)}")
        return []
    return [f"seed_everything {given} (given) vs {saved} (checkpoint)"]


def _reconcile_init(config: Namespace, checkpoint: dict) -> list[str]:
    """The init section against the checkpoint's record (``DepthwiseInit.state_dict``): a resume that
    names another init method, other settings, filter, seed or freeze would relabel the run (its logs and
    ``report`` would file it under the other method), so every difference is a conflict."""
    from callbacks.depthwise_init import init_record

    callbacks = checkpoint.get("callbacks") or {}
    saved = next((v for k, v in callbacks.items() if str(k).startswith("DepthwiseInit")), None)
    if not isinstance(saved, dict) or "method" not in saved:
        return []  # a checkpoint from before the init was recorded
    init = config.get("init") or Namespace()
    method = init.get("method")
    instance = None
    if isinstance(method, Namespace) and method.get("class_path"):
        cls = _import(str(method.class_path))
        try:
            instance = cls(**_plain(method.get("init_args") or Namespace()))
        except Exception:  # noqa: BLE001  (then only the method's name is compared)
            given_name = method_name(str(method.class_path)) or str(method.class_path)
            return (
                []
                if given_name == saved["method"]
                else [f"init.method {given_name} (given) vs {saved['method']} (checkpoint)"]
            )
    given = init_record(instance, init.get("name_filter"), init.get("seed"), bool(init.get("freeze")))
    conflicts = []
    if given["method"] != saved["method"]:
        conflicts.append(f"init.method {given['method']} (given) vs {saved['method']} (checkpoint)")
    else:
        for key in sorted(set(given["settings"]) | set(saved.get("settings") or {})):
            a, b = given["settings"].get(key), (saved.get("settings") or {}).get(key)
            if not _same(a, b):
                conflicts.append(f"init.method.{key} {_show(a)} (given) vs {_show(b)} (checkpoint)")
    if given["freeze"] != bool(saved.get("freeze", False)):  # checkpoints from before freeze: trained
        conflicts.append(f"init.freeze {given['freeze']} (given) vs {bool(saved.get('freeze'))} (checkpoint)")
    for key in ("name_filter", "seed"):
        if not _same(given[key], saved.get(key)):
            conflicts.append(
                f"init.{key} {_show(given[key])} (given) vs {_show(saved.get(key))} (checkpoint)"
            )
    return conflicts


def _signature_defaults(cls: Any) -> dict[str, Any]:
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    return {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}


def _import(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, Namespace):
        value = value.as_dict()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal as plain values; None and an empty dict count as the same (model_kwargs)."""
    a, b = _plain(a), _plain(b)
    return (a in (None, {}) and b in (None, {})) or a == b


def _show(value: Any) -> str:
    return one_line(repr(_plain(value)), 80)
