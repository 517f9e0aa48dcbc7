"""Kernel maths for the Neural Echos reproduction, with no Lightning in it.

- :mod:`neural_echos.depthwise`: find the depthwise convolutions of any ``nn.Module``.
- :mod:`neural_echos.dog`: vectorised Difference-of-Gaussians center-surround kernels.
- :mod:`neural_echos.init`: the depthwise init methods (DoG, Kaiming, PyTorch's default,
  covariance), one class per file in a registry (:mod:`neural_echos.covariance`: Gaussian Sigma).
- :mod:`neural_echos.threads`: small CPU work on one thread.
- :mod:`neural_echos.collect`: depthwise kernels from a module or a checkpoint file.
- :mod:`neural_echos.classifiers`: on-center / off-center / other by k-means or templates
  (:mod:`neural_echos.templates`), each share with its chance share.
- :mod:`neural_echos.grids`: kernel pictures with their legend; :mod:`neural_echos.plots`:
  figures of class shares.

The command-line applications built on this (``analyze``, ``survey``, ``report``) are in the
top-level ``tools`` package; nothing here imports them.
"""

from neural_echos.classifiers import KernelClassifier, KernelReport, get_classifier
from neural_echos.collect import AnalysisError, LayerKernels, kernels_from_checkpoint, kernels_from_module
from neural_echos.depthwise import NoDepthwiseLayersError, find_depthwise_convs, is_depthwise
from neural_echos.dog import default_radius, dog_kernels
from neural_echos.init import InitSummary, LayerInit, initialize_depthwise

__all__ = [
    "AnalysisError",
    "InitSummary",
    "KernelClassifier",
    "KernelReport",
    "LayerInit",
    "LayerKernels",
    "NoDepthwiseLayersError",
    "default_radius",
    "dog_kernels",
    "find_depthwise_convs",
    "get_classifier",
    "initialize_depthwise",
    "is_depthwise",
    "kernels_from_checkpoint",
    "kernels_from_module",
]
