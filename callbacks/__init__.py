"""Lightning callbacks, one job each.

* :class:`callbacks.depthwise_init.DepthwiseInit`: DoG / Kaiming / covariance initialisation
  of the depthwise convolutions at the start of a fresh ``fit``.
"""

from callbacks.depthwise_init import DepthwiseInit

__all__ = ["DepthwiseInit"]
