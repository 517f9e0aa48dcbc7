"""The run's saved config: written once, never overwritten (a resume or another subcommand gets
its own numbered file)."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import SaveConfigCallback

from neural_echos.cli.run_folders import hpc_resume_path
from neural_echos.errors import ResumeError


class RunConfig(SaveConfigCallback):
    """Save the run's config without ever overwriting one (LightningCLI's callback, rank zero).

    ``config.yaml`` is created exclusively (``open(..., "x")``), so two processes cannot both
    write it; a resume writes ``config.resume-N.yaml``, validate/test/predict in a folder that
    holds a run ``config.<subcommand>-N.yaml``. Without a logger nothing is saved (there is no
    run folder; Lightning would write config.yaml into the working directory).
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        log_dir = trainer.log_dir if trainer.loggers else None  # a collective call: on every rank
        if trainer.is_global_zero and log_dir is not None:
            folder = Path(log_dir)
            folder.mkdir(parents=True, exist_ok=True)
            resuming = self.config.get("ckpt_path") is not None or hpc_resume_path(trainer) is not None
            text = self.parser.dump(self.config, skip_none=False)
            stage = str(getattr(stage, "value", stage))  # a TrainerFn: "fit", "validate", ...
            name = self.config_filename
            if (folder / name).exists() and (stage != "fit" or resuming):
                kind = "resume" if stage == "fit" else stage
                n = 1
                while (folder / f"config.{kind}-{n}.yaml").exists():
                    n += 1
                name = f"config.{kind}-{n}.yaml"
            try:
                with open(folder / name, "x", encoding="utf-8") as f:
                    f.write(text)
            except FileExistsError:
                raise ResumeError(
                    f"{str(folder / name)!r} was written by another process that started the same run folder at the "
                    "same moment; this run stops so as not to mix into it. Choose another "
                    "--trainer.logger.init_args.version (or leave it unset for a new version_N)"
                ) from None
            self.save_config(trainer, pl_module, stage)
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)
