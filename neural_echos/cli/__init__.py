"""``run.py fit|validate|test|predict``: the LightningCLI and the Lightning plumbing around it.

* :mod:`neural_echos.cli.app`: the CLI class, its sections, links and default callbacks; ``main``.
* :mod:`neural_echos.cli.parse_errors`: parser errors as one ``error:`` line.
* :mod:`neural_echos.cli.config_files`: ``--config`` files that extend a ``base:``.
* :mod:`neural_echos.cli.run_folders`: run folders, ``--ckpt_path last``, the lock.
* :mod:`neural_echos.cli.run_config`: the run's ``config.yaml``, never overwritten.
* :mod:`neural_echos.cli.resume`: reading ``--ckpt_path`` and reconciling settings with it.
* :mod:`neural_echos.cli.atomic_checkpoint_io`: checkpoints written in one step.

This sub-package (and :mod:`neural_echos.tools`) use Lightning; the kernel maths elsewhere in
:mod:`neural_echos` does not.
"""

from neural_echos.cli.app import NeuralEchosCLI, main

__all__ = ["NeuralEchosCLI", "main"]
