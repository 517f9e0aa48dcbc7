"""A DataModule whose training set is empty after setup, with no error of its own: it reaches
the CLI's generic check (tests/neural_echos/cli/test_app.py)."""

from datamodules.cifar10 import CIFAR10DataModule, InMemoryImages


class EmptyTrainingSet(CIFAR10DataModule):
    def setup(self, stage=None):
        super().setup(stage)
        self.train_set = InMemoryImages(self.train_set.images[:0], self.train_set.labels[:0])
