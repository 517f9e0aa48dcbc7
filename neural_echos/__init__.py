"""Kernel maths for the Neural Echos reproduction, with no Lightning in it.

- :mod:`neural_echos.depthwise`: find the depthwise convolutions of any ``nn.Module``.
- :mod:`neural_echos.dog`: vectorised Difference-of-Gaussians center-surround kernels.
"""

from neural_echos.depthwise import NoDepthwiseLayersError, find_depthwise_convs, is_depthwise
from neural_echos.dog import default_radius, dog_kernels

__all__ = [
    "NoDepthwiseLayersError",
    "default_radius",
    "dog_kernels",
    "find_depthwise_convs",
    "is_depthwise",
]
