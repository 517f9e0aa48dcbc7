"""Run by tests/neural_echos/cli/test_atomic_checkpoint_io.py: `run.py fit` that meets a fault while it
rewrites ``last.ckpt`` at the end of a given epoch (a real fault: no cleanup code of ours runs).

    python checkpoint_fault_run.py MODE EPOCH ARGS...    (ARGS go to run.py)

MODE:
  kill-mid-write       the kernel kills the process (SIGXFSZ) once the checkpoint being written
                       passes half the size of the current last.ckpt (RLIMIT_FSIZE).
  full-disk            the same limit with SIGXFSZ ignored (Python's default), so the write fails
                       with EFBIG part-way, as with ENOSPC on a full disk.
  kill-before-replace  SIGKILL the moment the finished file is about to be renamed onto last.ckpt
                       (the os.rename audit event of os.replace, or of shutil.move).
  none                 no fault.
The limit is set when the training epoch EPOCH starts (the events file stays far below it);
best-*.ckpt is not written in these runs (--checkpoint.save_top_k 0) so last.ckpt is the only
checkpoint that epoch writes.
"""

import os
import resource
import signal
import sys
from pathlib import Path

from lightning.pytorch.callbacks import Callback

import run
from neural_echos import cli


class Fault(Callback):
    def __init__(self, mode: str, epoch: int):
        self.mode, self.epoch = mode, epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch != self.epoch:
            return
        last = Path(trainer.log_dir) / "checkpoints" / "last.ckpt"
        if self.mode in ("kill-mid-write", "full-disk"):
            if self.mode == "kill-mid-write":
                signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            limit = last.stat().st_size // 2
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        elif self.mode == "kill-before-replace":

            def hook(event, args):
                if event == "os.rename" and Path(str(args[1])).name == "last.ckpt":
                    os.kill(os.getpid(), signal.SIGKILL)

            sys.addaudithook(hook)


if __name__ == "__main__":
    mode, epoch, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if mode != "none":
        original = cli.NeuralEchosCLI.instantiate_trainer

        def with_fault(self, **kwargs):
            trainer = original(self, **kwargs)
            trainer.callbacks.append(Fault(mode, epoch))
            return trainer

        cli.NeuralEchosCLI.instantiate_trainer = with_fault
    run.main(args)
