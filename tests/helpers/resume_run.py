"""Run by tests/callbacks/test_resume.py: `run.py fit` on a tiny synthetic CIFAR tree that
optionally SIGKILLs itself at a given global step (a real crash: no cleanup, no final save).

    python resume_run.py KILL_AT_STEP|none ARGS...    (ARGS go to run.py)
"""

import os
import signal
import sys

from lightning.pytorch.callbacks import Callback

import run
from neural_echos import cli


class KillAtStep(Callback):
    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    kill_at, args = sys.argv[1], sys.argv[2:]
    if kill_at != "none":
        original = cli.NeuralEchosCLI.instantiate_trainer

        def with_killer(self, **kwargs):
            trainer = original(self, **kwargs)
            trainer.callbacks.append(KillAtStep(int(kill_at)))
            return trainer

        cli.NeuralEchosCLI.instantiate_trainer = with_killer
    run.main(args)
