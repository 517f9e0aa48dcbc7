"""neural-echos entry point (the CLI itself is in cli.py).

    python run.py fit --config configs/cifar10/convnext_atto.yaml
    python run.py fit --config configs/trainer/cpu.yaml --config configs/data/cifar10.yaml \
        --config configs/model/convnext_atto.yaml --trainer.max_epochs 5
    python run.py {fit,validate,test,predict} --help
    python run.py analyze --help
    python run.py survey --help
    python run.py report --help

fit/validate/test/predict are LightningCLI subcommands; ``analyze`` inspects the depthwise
kernels of a checkpoint or a timm model and ``survey`` compares several
(``neural_echos.analyze``); ``report`` tabulates
and plots the TensorBoard logs of several runs (``neural_echos.report``).
"""

from __future__ import annotations

import os
import sys

from neural_echos.errors import NeuralEchosError


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["analyze"]:
            from neural_echos.analyze import main as analyze_main

            analyze_main(args[1:])
            return
        if args[:1] == ["survey"]:
            from neural_echos.analyze import survey_main

            survey_main(args[1:])
            return
        if args[:1] == ["report"]:
            from neural_echos.report import main as report_main

            report_main(args[1:])
            return
        # imported here so that `analyze` and `report` start without loading Lightning
        from cli import TRAINER_DEFAULTS, NeuralEchosCLI
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
    except Exception as err:
        # jsonargparse wraps errors raised while it instantiates a subclass (the DataModule) in
        # its own ValueError, so the user's mistake may sit further down the cause chain
        cause = err
        while cause is not None and not isinstance(cause, NeuralEchosError):
            cause = cause.__cause__ or cause.__context__
        if cause is None or os.environ.get("NEURAL_ECHOS_TRACEBACK"):
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
