"""A callback for the multi-node tests: each rank saves its final weights to $NE_RANK_WEIGHTS_DIR."""

import os
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback


class SaveRankWeights(Callback):
    def on_train_end(self, trainer, pl_module):
        out = Path(os.environ["NE_RANK_WEIGHTS_DIR"])
        torch.save(
            {k: v.detach().cpu() for k, v in pl_module.state_dict().items()},
            out / f"rank{trainer.global_rank}.pt",
        )
