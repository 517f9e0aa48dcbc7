"""LightningModules. Importing this package also registers our own models with timm."""

import neural_echos.models  # noqa: F401  (registers HorNet and the configurable ConvMixer with timm)
from lightning_modules.classifier import ImageClassifier, build_timm_model

__all__ = ["ImageClassifier", "build_timm_model"]
