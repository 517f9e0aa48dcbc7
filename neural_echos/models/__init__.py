"""Our own model definitions, registered with timm's model registry on import.

``import models`` makes every architecture defined here available by name through
``timm.create_model`` / ``timm.list_models`` like timm's built-in models:

* :mod:`neural_echos.models.hornet`: HorNet (``hornet_tiny_7x7``, ``hornet_small_7x7``, ``hornet_tiny_gf``,
  ``hornet_small_gf``), not part of timm; ``pretrained=True`` loads the official ImageNet-1k weights.
* :mod:`neural_echos.models.convmixer`: ``convmixer`` with any dim/depth/kernel/patch (timm's ``ConvMixer``).
"""

from neural_echos.models import convmixer, hornet
from neural_echos.models.hornet import HorNet

__all__ = ["HorNet", "convmixer", "hornet"]
