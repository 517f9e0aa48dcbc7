"""neural-echos entry point.

    python run.py fit --config configs/cifar10/convnext_atto.yaml
    python run.py fit --config configs/trainer/cpu.yaml --config configs/data/cifar10.yaml \
        --config configs/model/convnext_atto.yaml --trainer.max_epochs 5
    python run.py {fit,validate,test,predict} --help
    python run.py analyze --help

fit/validate/test/predict are LightningCLI subcommands; ``analyze`` inspects the depthwise
kernels of a checkpoint or a fresh timm model (see ``neural_echos.analyze``).
"""

from __future__ import annotations

import os
import sys

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichModelSummary, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from callbacks import DepthwiseInit
from neural_echos.errors import NeuralEchosError


class NeuralEchosCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # the DataModule knows the classes and the input size; the model takes them from it
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.image_size", "model.image_size", apply_on="instantiate")
        # always-on checkpointing (last and best by val top-1), configurable as `checkpoint.*`
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # depthwise initialisation (default: none, the model's own), chosen with `init.*`
        parser.add_lightning_class_args(DepthwiseInit, "init")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/acc1",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-epoch{epoch:03d}-acc{val/acc1:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )

    def instantiate_trainer(self, **kwargs) -> Trainer:
        # The default callbacks join whatever `trainer.callbacks` lists, each unless the trainer
        # setting it depends on is switched off (Lightning refuses e.g. a progress bar callback
        # with enable_progress_bar=false, or a learning-rate monitor without a logger).
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        defaults = []
        if config.get("logger") is not False:
            defaults.append(LearningRateMonitor(logging_interval="step"))
        if config.get("enable_progress_bar") is not False:
            defaults.append(RichProgressBar())
        if config.get("enable_model_summary") is not False:
            defaults.append(RichModelSummary(max_depth=2))
        sections = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        return self._instantiate_trainer(config, sections + defaults)


TRAINER_DEFAULTS = {
    "logger": {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "logs", "name": "default", "default_hp_metric": False}},
}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["analyze"]:
            from neural_echos.analyze import main as analyze_main

            analyze_main(args[1:])
            return
        from datamodules import CIFAR10DataModule  # noqa: F401  (importable by short class name)
        from lightning_modules import ImageClassifier

        NeuralEchosCLI(
            ImageClassifier,
            datamodule_class=None,
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            seed_everything_default=42,
            save_config_kwargs={"overwrite": True},
            args=argv,  # None: read sys.argv
        )
    except NeuralEchosError as err:
        if os.environ.get("NEURAL_ECHOS_TRACEBACK"):
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
