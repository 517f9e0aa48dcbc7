"""The command-line applications built on the kernel maths of :mod:`neural_echos`.

* :mod:`neural_echos.tools.analyze`: ``run.py analyze`` and ``run.py survey``: classify the kernels of
  checkpoints and timm models (fresh, pretrained or ours), with chance shares, into files.
* :mod:`neural_echos.tools.report`: ``run.py report``: compare training runs from their TensorBoard logs.

They read files, build models and write tables and pictures; :mod:`neural_echos` imports nothing
from here.
"""
