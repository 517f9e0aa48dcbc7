"""neural-echos entry point (the CLI itself is in neural_echos/cli).

    python run.py fit --config configs/cifar10/convnext_atto.yaml
    python run.py fit --config configs/trainer/cpu.yaml --config configs/data/cifar10.yaml \
        --config configs/model/convnext_atto.yaml --trainer.max_epochs 5
    python run.py {fit,validate,test,predict} --help
    python run.py analyze --help
    python run.py survey --help
    python run.py report --help
    python run.py compare --help

fit/validate/test/predict are LightningCLI subcommands; ``analyze`` inspects the depthwise
kernels of a checkpoint or a timm model and ``survey`` compares several
(``neural_echos.tools.analyze``); ``report`` tabulates
and plots the TensorBoard logs of several runs (``neural_echos.tools.report``).

Every subcommand reports bad input the same way: one line ``error: ...`` saying what to do, and
exit status 2 (``neural_echos.errors``); ``NEURAL_ECHOS_TRACEBACK=1`` shows the traceback instead.
"""

from __future__ import annotations

import difflib
import sys

from neural_echos.errors import NeuralEchosError, exits_on_user_error

TRAINING = ("fit", "validate", "test", "predict")
SUBCOMMANDS = (*TRAINING, "analyze", "survey", "report", "compare")


@exits_on_user_error  # the one error exit of every subcommand (neural_echos.errors.report_and_exit)
def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    _check_subcommand(args)
    if args[0] == "analyze":
        from neural_echos.tools.analyze import main as analyze_main

        analyze_main(args[1:])
        return
    if args[0] == "survey":
        from neural_echos.tools.analyze import survey_main

        survey_main(args[1:])
        return
    if args[0] == "compare":
        from neural_echos.tools.compare import main as compare_main

        compare_main(args[1:])
        return
    if args[0] == "report":
        from neural_echos.tools.report import main as report_main

        report_main(args[1:])
        return
    # imported here so that `analyze` and `report` start without loading Lightning
    from neural_echos.cli import main as cli_main

    cli_main(argv)  # None: LightningCLI reads sys.argv


def _check_subcommand(args: list[str]) -> None:
    listing = f"choose one of {', '.join(SUBCOMMANDS)} (python run.py SUBCOMMAND --help for its options)"
    if not args:
        raise NeuralEchosError(f"no subcommand given: {listing}")
    first = args[0]
    if first.startswith("-"):
        return  # --help (whose description names analyze and report) or -c CONFIG before the subcommand
    if first not in SUBCOMMANDS:
        close = difflib.get_close_matches(first, SUBCOMMANDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise NeuralEchosError(f"unknown subcommand {first!r}{hint}: {listing}")


if __name__ == "__main__":
    main()
