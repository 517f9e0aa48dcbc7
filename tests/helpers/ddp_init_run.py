"""Run by the callback tests: a 2-process CPU DDP (gloo) fit with DoG init, kernel snapshots
and a TensorBoard logger.

Each rank first draws from its global RNG a different number of times, so only the
initialiser's own seed can make the ranks agree. Each rank saves its depthwise weights when
training starts (after the init) and when it ends.

    python ddp_init_run.py CIFAR_ROOT OUT_DIR [freeze]

With ``freeze`` the init freezes the depthwise weights (``init.freeze``), and each rank also
writes whether its other weights moved (``trained_rank<r>``).
"""

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from callbacks import DepthwiseInit, KernelSnapshot
from datamodules import CIFAR10DataModule
from lightning_modules import ImageClassifier
from neural_echos.depthwise import find_depthwise_convs
from neural_echos.init.dog import DoGInit


class SaveWeights(Callback):
    def __init__(self, out: Path):
        self.out = out

    def setup(self, trainer, pl_module, stage):
        torch.rand(1 + trainer.global_rank * 7)  # ranks' global RNG streams diverge before the init

    def _save(self, trainer, pl_module, when):
        weights = {n: c.weight.detach().clone() for n, c in find_depthwise_convs(pl_module.model)}
        torch.save(weights, self.out / f"{when}_rank{trainer.global_rank}.pt")

    def on_train_start(self, trainer, pl_module):
        self._save(trainer, pl_module, "start")
        self.head = pl_module.model.head.fc.weight.detach().clone()

    def on_train_end(self, trainer, pl_module):
        self._save(trainer, pl_module, "end")
        moved = not torch.equal(self.head, pl_module.model.head.fc.weight.detach())
        (self.out / f"trained_rank{trainer.global_rank}").write_text(str(moved))


if __name__ == "__main__":
    root, out = sys.argv[1], Path(sys.argv[2])
    freeze = sys.argv[3:] == ["freeze"]
    module = ImageClassifier(num_classes=10, image_size=32)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=2,
        limit_train_batches=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=TensorBoardLogger(out / "logs", name="ddp"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[DepthwiseInit(DoGInit(), seed=5, freeze=freeze), KernelSnapshot(), SaveWeights(out)],
    )
    trainer.fit(module, datamodule=CIFAR10DataModule(root=root, batch_size=8))
