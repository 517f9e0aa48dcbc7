"""Run folders: the rules that keep runs apart, ``--ckpt_path last``, the lock and the clean-up
of a run that failed before it trained.

Runs and resumes (README "Reliability" lists what is guaranteed and the tests that show it):

- A run folder (``<save_dir>/<name>/<version>/`` of the TensorBoard or CSV logger) that already
  holds anything is never trained into by a fresh ``fit``: a fixed ``--trainer.logger.init_args.version``
  that holds a run refuses to start unless ``--ckpt_path`` is one of that run's checkpoints (or
  SLURM requeues it from Lightning's ``hpc_ckpt_N.ckpt``, kept in the run folder: under SLURM that
  folder is the trainer's ``default_root_dir``). A lock file (``.lock``) refuses a second
  process writing to the same folder at the same time.
- ``config.yaml`` of a run is written once, by the process that started it; a resume writes
  ``config.resume-N.yaml`` and validate/test/predict in that folder ``config.<subcommand>-N.yaml``.
- With no fixed logger version, a ``--ckpt_path`` file inside one of the logger's run folders
  fixes the version to that folder (a resume continues its run there; validate/test/predict log
  beside it).
- ``--ckpt_path last`` is the newest ``last*.ckpt`` of the run folder the logger settings name (a
  fixed version); none there is an error. ``--ckpt_path last-if-any`` resumes from it when it
  exists and starts the run otherwise (``scripts/sweep.sh --resume``).
- A resume continues the checkpoint's run as it was trained: a setting given on the command
  line or in a config (a value other than the argument's default) that differs from the
  checkpoint's hyper-parameters (model, data, seed) is an error listing the differences;
  settings left at their defaults take the checkpoint's values, so the seed and therefore the
  data order (EpochShuffle draws from (seed, epoch)) are the checkpoint's. Settings the
  checkpoint does not record (trainer.*, snapshot.*) follow the command line. The init section
  (``init.*``, recorded by ``DepthwiseInit`` in every checkpoint) must match the checkpoint's:
  a resume under another init method would file the run under that method.
- A fit that fails before its first training step removes the run folder it created (it holds
  nothing but the logger's empty files), so a fixed version can be started again.
"""

from __future__ import annotations

import fcntl
import shutil
import sys
from pathlib import Path

from jsonargparse import Namespace
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch import Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from neural_echos.errors import ConfigError, ResumeError

LAST_IF_ANY = "last-if-any"
LOCK_NAME = ".lock"


def folder_from_config(config: Namespace) -> Path | None:
    """The run folder the logger settings of a parsed config name, when they name a fixed one.

    Raises:
        ConfigError: the logger's version is not fixed, or the logger is not one whose folder
            layout is known (TensorBoardLogger, CSVLogger).
    """
    trainer = config.get("trainer") or Namespace()
    if trainer.get("logger") is False:
        return Path(trainer.get("default_root_dir") or ".")  # checkpoints/ straight below it
    found = _logger_layout(config)
    if found is None:
        raise ConfigError(
            "--ckpt_path last needs a TensorBoardLogger or CSVLogger with a fixed version to find the run; "
            "pass the checkpoint file instead"
        )
    init_args, runs = found
    version = init_args.get("version")
    if version is None:
        raise ConfigError(
            "--ckpt_path last resumes the run of a fixed logger version, but --trainer.logger.init_args.version is "
            "not set (a new run would get a new version_N folder, with no checkpoint in it). Add "
            "--trainer.logger.init_args.version VERSION of the run to resume, or pass its checkpoint file"
        )
    return runs / (version if isinstance(version, str) else f"version_{version}")


def _logger_layout(config: Namespace) -> tuple[Namespace, Path] | None:
    """The first logger's ``init_args`` and the folder its runs go in (``<save_dir>/<name>``), for
    the loggers whose layout is known (TensorBoardLogger, CSVLogger); None for any other."""
    trainer = config.get("trainer") or Namespace()
    logger = trainer.get("logger")
    if isinstance(logger, list) and logger:
        logger = logger[0]
    if not (
        isinstance(logger, Namespace)
        and str(logger.get("class_path", "")).endswith(("TensorBoardLogger", "CSVLogger"))
    ):
        return None
    init_args = logger.get("init_args") or Namespace()
    save_dir = init_args.get("save_dir") or trainer.get("default_root_dir") or "."
    return init_args, Path(save_dir) / str(init_args.get("name", "lightning_logs") or "")


def adopt_run_folder_of(config: Namespace, ckpt_path: str, subcommand: str = "fit") -> None:
    """A checkpoint of a run folder (``<save_dir>/<name>/<version>/checkpoints/FILE.ckpt``, the folder
    holding the run's ``config.yaml``, ``hparams.yaml`` or event files) continues in that folder: with
    no fixed logger version the logger's name (and, outside its save_dir, the save_dir) and version
    become the folder's, whatever the recipe's run name or the init label, so a resume continues its
    run (``config.resume-N.yaml``, the same TensorBoard run) and a validate/test/predict of it logs
    beside it, instead of starting a new ``version_N``. A checkpoint anywhere else leaves the
    settings as they are (a new run).

    Raises:
        ResumeError: a fit whose fixed logger version names another, empty folder (a folder that
            holds a run is refused by :func:`check_run_folder`).
    """
    found = _logger_layout(config)
    if found is None:
        return
    init_args, runs = found
    ckpt = Path(ckpt_path).resolve()
    run = ckpt.parent.parent
    if ckpt.parent.name != "checkpoints" or not _holds_a_run(run):
        return
    version = init_args.get("version")
    if version is not None:
        named = runs / (version if isinstance(version, str) else f"version_{version}")
        if subcommand == "fit" and named.resolve() != run and not _holds_a_run(named):
            raise ResumeError(
                f"--ckpt_path {ckpt_path!r} belongs to run folder {str(run)!r}, but the logger settings name "
                f"{str(named)!r}: a resume continues in its checkpoint's run folder. Drop "
                "--trainer.logger.init_args.version (the checkpoint's folder is then used), or start a new run "
                "without --ckpt_path"
            )
        return
    if run.parent == runs.resolve():
        init_args.version = run.name
        return
    save_dir = Path(init_args.get("save_dir") or ".").resolve()
    if save_dir in run.parents:
        init_args.name = str(run.parent.relative_to(save_dir))
    else:
        init_args.save_dir, init_args.name = str(run.parent), ""
    init_args.version = run.name
    if rank_zero_only.rank == 0:
        print(
            f"--ckpt_path {ckpt_path}: continuing in the checkpoint's run folder {str(run)!r} "
            f"(not {str(runs)!r}, which the recipe names)",
            file=sys.stderr,
        )


def _holds_a_run(folder: Path) -> bool:
    """A run folder written by run.py fit: its config, Lightning's hparams.yaml or event files."""
    return (
        folder.is_dir()
        and any((folder / name).is_file() for name in ("config.yaml", "hparams.yaml"))
        or any(folder.glob("events.out.tfevents.*"))
    )


def find_last_checkpoint(config: Namespace, required: bool) -> str | None:
    """The newest ``last*.ckpt`` of the run folder the config names (as Lightning picks 'last').

    Raises:
        ResumeError: none there and ``required``.
    """
    folder = folder_from_config(config)
    checkpoints = folder / "checkpoints"
    candidates = [p for p in checkpoints.glob("last*.ckpt") if p.is_file()] if checkpoints.is_dir() else []
    if candidates:
        return str(max(candidates, key=lambda p: p.stat().st_mtime))
    if not required:
        return None
    others = sorted(p.name for p in checkpoints.glob("*.ckpt")) if checkpoints.is_dir() else []
    if others:
        hint = f"it holds {', '.join(others[:3])}: pass one of them as --ckpt_path {checkpoints}/FILE"
    elif folder.exists():
        hint = "the run there stopped before its first checkpoint: delete the folder to start it again"
    else:
        hint = (
            "that run does not exist: check --trainer.logger.init_args.name/version/save_dir, or drop "
            "--ckpt_path to start it"
        )
    raise ResumeError(f"--ckpt_path last: no last checkpoint in {str(checkpoints)!r}; {hint}")


def hpc_resume_path(trainer: Trainer) -> Path | None:
    """The ``hpc_ckpt_N.ckpt`` Lightning resumes from by itself when SLURM requeued the job."""
    if not SLURMEnvironment.detect():
        return None
    candidates = list(Path(str(trainer.default_root_dir)).glob("hpc_ckpt_*.ckpt"))
    numbered = [(int(p.stem.rsplit("_", 1)[1]), p) for p in candidates if p.stem.rsplit("_", 1)[1].isdigit()]
    return max(numbered)[1] if numbered else None


def slurm_root_dir(config: Namespace) -> str | None:
    """Under SLURM, the run folder of a fixed logger version, as the trainer's ``default_root_dir``.

    Lightning saves ``hpc_ckpt_N.ckpt`` there on SIGUSR1, and a fit started under SLURM resumes
    from the newest one there. By default it is the working directory, the submit directory every
    job from it shares, so a new job, another run, would resume from an earlier run's checkpoint.
    In the run folder it belongs to its run (a requeued job keeps its id, hence
    scripts/slurm.sbatch's version). None (Lightning's default) outside SLURM or without a fixed version.
    """
    if not SLURMEnvironment.detect() or (config.get("trainer") or Namespace()).get("logger") is False:
        return None
    try:
        return str(folder_from_config(config))
    except ConfigError:
        return None


def check_run_folder(folder: Path, ckpt_path: str | None, trainer: Trainer) -> None:
    """Refuse a fit that would write into a folder holding another run (module docstring).

    Raises:
        ResumeError: the folder holds a run and this fit is not resuming from one of its checkpoints.
    """
    entries = sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME) if folder.is_dir() else []
    if not entries:
        return
    if ckpt_path is None and hpc_resume_path(trainer) is not None:
        return  # a SLURM requeue: Lightning restores the run's hpc checkpoint
    if ckpt_path is not None:
        ckpt = Path(ckpt_path).resolve()
        if folder.resolve() in ckpt.parents or ckpt.name.startswith("hpc_ckpt_"):
            return
    checkpoints = sorted((folder / "checkpoints").glob("*.ckpt")) if (folder / "checkpoints").is_dir() else []
    holds = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
    if ckpt_path is not None:
        raise ResumeError(
            f"run folder {str(folder)!r} already holds a run ({holds}) and --ckpt_path {ckpt_path!r} is not one of its "
            "checkpoints: resuming another run into it would mix the two. Leave --trainer.logger.init_args.version "
            f"unset (a new version_N) or pass a checkpoint from {str(folder / 'checkpoints')!r}"
        )
    if checkpoints:
        what = "resume it with --ckpt_path last"
    else:
        what = (
            "it has no checkpoint to resume (it stopped before its first checkpoint): delete the folder to "
            "start it again"
        )
    raise ResumeError(
        f"run folder {str(folder)!r} already holds a run ({holds}); a new fit would mix into it. "
        f"{what[0].upper()}{what[1:]}, "
        "or choose another --trainer.logger.init_args.version (or leave it unset for a new version_N)"
    )


def check_checkpoint_dirs(trainer: Trainer, ckpt_path: str | None) -> None:
    """Without a logger (no run folder), a fit never writes over another run's checkpoints: every
    checkpoint folder (``dirpath``, by default ``<default_root_dir>/checkpoints``) must hold no
    ``.ckpt`` unless this fit resumes from one of them.

    Raises:
        ResumeError: a checkpoint folder holds checkpoints of another run.
    """
    resumed = Path(ckpt_path).resolve() if ckpt_path else None
    for callback in trainer.checkpoint_callbacks:
        dirpath = Path(callback.dirpath or Path(trainer.default_root_dir) / "checkpoints")
        found = (
            sorted(dirpath.glob("*.ckpt"), key=lambda p: (not p.name.startswith("last"), p.name))
            if dirpath.is_dir()
            else []
        )
        if found and (resumed is None or resumed.parent != dirpath.resolve()):
            raise ResumeError(
                f"the logger is off and {str(found[0])!r} already exists: this fit would overwrite that run's "
                f"checkpoints. Resume it with --ckpt_path {found[0]!s}, or give this run another folder "
                "(--trainer.default_root_dir DIR)"
            )


def lock_run_folder(folder: Path):
    """Hold an exclusive lock on ``folder/.lock`` for the life of this process (None where the
    file system has no locks).

    Raises:
        ResumeError: another process holds it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock = open(folder / LOCK_NAME, "a+")  # noqa: SIM115  (held open until the process ends)
    try:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ResumeError(
            f"another process is training into {str(folder)!r} right now; wait for it, or choose another "
            "--trainer.logger.init_args.version (or leave it unset for a new version_N)"
        ) from None
    except OSError:  # no locks on this file system (some network mounts)
        lock.close()
        return None
    return lock


def remove_failed_run_folder(folder: Path | None, lock, save_dir: Path | None = None) -> None:
    """Remove the folder a fit created when it failed before training a step and wrote no checkpoint,
    and the folders above it up to ``save_dir`` that this leaves empty (``<name>/<init method>``)."""
    if folder is None or not folder.is_dir() or any((folder / "checkpoints").glob("*.ckpt")):
        return
    if lock is not None:
        lock.close()
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        if save_dir is None or parent == save_dir or save_dir not in parent.parents:
            break
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break
    print(f"removed {str(folder)!r}: the run failed before its first training step", file=sys.stderr)
