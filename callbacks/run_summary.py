"""The closing lines of a run: where it went, what it reached, and what to run next."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from neural_echos import logged_names as names


def _command(name: str) -> str:
    """``name`` as the user can type it: the one beside this interpreter, relative when that is
    below the working directory (``.venv/bin/python`` after ``make quickstart``), else the bare name."""
    beside = Path(sys.executable).parent / name
    try:
        return str(beside.relative_to(Path.cwd())) if beside.is_file() else name
    except ValueError:  # an interpreter elsewhere: the user's PATH decides
        return name


def run_folder_of(trainer: pl.Trainer) -> Path | None:
    """``<save_dir>/<name>/<version>`` of the first logger (where ``checkpoints/`` and ``config.yaml`` go)."""
    if not trainer.loggers or getattr(trainer.loggers[0], "save_dir", None) is None:
        return None
    logger = trainer.loggers[0]
    version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
    return Path(logger.save_dir) / str(logger.name or "") / version


def last_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The ``last.ckpt`` of the run (rewritten at every epoch end), if written."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor is None and callback.last_model_path:
            path = Path(callback.last_model_path)
            return path if path.is_file() else None
        if isinstance(callback, ModelCheckpoint) and callback.dirpath and callback.monitor is None:
            path = Path(callback.dirpath) / "last.ckpt"
            return path if path.is_file() else None
    return None


def resume_command(trainer: pl.Trainer) -> str | None:
    """``python run.py fit --config <run>/config.yaml --ckpt_path <run>/checkpoints/last.ckpt``, or
    None when the run has no last.ckpt yet."""
    checkpoint, folder = last_checkpoint(trainer), run_folder_of(trainer)
    if checkpoint is None:
        return None
    config = folder / "config.yaml" if folder is not None else None
    config = ["--config", str(config)] if config is not None and config.is_file() else []
    return shlex.join([_command("python"), "run.py", "fit", *config, "--ckpt_path", str(checkpoint)])


def summary_lines(trainer: pl.Trainer, stage: str) -> list[str]:
    """The closing summary of a ``fit``, ``validate`` or ``test`` (see :class:`RunSummary`)."""
    folder = run_folder_of(trainer)
    lines = [
        f"{stage} done: {trainer.current_epoch} epoch(s) trained, {trainer.global_step} steps"
        if stage == "fit"
        else f"{stage} done"
    ]
    lines.append(f"run folder: {folder if folder is not None else '(no logger: nothing written)'}")
    acc = trainer.callback_metrics.get(names.ACC)
    best = next(
        (
            cb
            for cb in trainer.checkpoint_callbacks  # validate/test: the checkpoint they read instead
            if isinstance(cb, ModelCheckpoint) and cb.monitor == names.ACC and stage == "fit"
        ),
        None,
    )
    parts = []
    if best is not None and best.best_model_score is not None and best.best_model_path:
        parts.append(f"best {100 * float(best.best_model_score):.2f} % ({Path(best.best_model_path).name})")
    if acc is not None:
        parts.append(f"last {100 * float(acc):.2f} %")
    if parts:
        lines.append(f"{names.ACC}: {', '.join(parts)}")
    from callbacks.kernel_snapshot import KernelSnapshot

    snapshot = next((cb for cb in trainer.callbacks if isinstance(cb, KernelSnapshot)), None)
    if snapshot is not None and snapshot.last_shares:
        shares = ", ".join(
            f"{name} {100 * share:.1f} % (chance {100 * chance:.1f} %)"
            for name, (share, chance) in snapshot.last_shares.items()
        )
        lines.append(f"kernels at the last snapshot: {shares}")
    lines.append("next:")
    if folder is not None:
        lines.append(
            f"  TensorBoard: {_command('tensorboard')} --logdir {shlex.quote(str(trainer.loggers[0].save_dir))} "
            "(or make tensorboard; docs/tensorboard.md)"
        )
    checkpoint = last_checkpoint(trainer)
    if best is not None and best.best_model_path:
        checkpoint = Path(best.best_model_path)
    elif stage != "fit" and trainer.ckpt_path:  # validate/test: the checkpoint they read
        checkpoint = Path(trainer.ckpt_path)
    if checkpoint is not None and checkpoint.is_file():
        analyze = shlex.join([_command("python"), "run.py", "analyze", "--checkpoint", str(checkpoint)])
        lines.append(f"  analyze the kernels: {analyze}")
    resume = resume_command(trainer)
    if stage == "fit" and resume is not None:
        lines.append(
            f"  train on (raise --trainer.max_epochs): {resume} --trainer.max_epochs "
            f"{max(trainer.current_epoch, 1) * 2}"
        )
    return lines


class RunSummary(Callback):
    """Print a few closing lines at the end of ``fit``, ``validate`` and ``test`` (rank zero only):
    the run folder, the best and the last ``val/acc1``, the kernel shares of the last snapshot,
    each with its chance share, and the commands that open TensorBoard, analyze the checkpoint
    and train on from ``last.ckpt``."""

    def __init__(self) -> None:
        self.finished: str | None = None  # the stage that ended normally, printed at teardown

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finished = "fit"

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self.finished = "validate"

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.finished = "test"

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # at teardown, after the progress bar (listed before this callback) has drawn its last line
        if self.finished is not None:
            stage, self.finished = self.finished, None
            self._print(trainer, stage)

    @staticmethod
    def _print(trainer: pl.Trainer, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        from rich.console import Console

        console = Console(file=sys.stdout, highlight=False, soft_wrap=True)  # soft wrap: commands stay whole
        lines = summary_lines(trainer, stage)
        console.print(f"[bold]{lines[0]}[/bold]")
        for line in lines[1:]:
            console.print(line, markup=False)
