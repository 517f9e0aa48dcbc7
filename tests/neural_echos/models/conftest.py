"""Fixtures of the model tests: the official HorNet layout helpers (tests/neural_echos/models/official_hornet.py),
loaded by path because the test folders are not packages."""

import importlib.util
from pathlib import Path

import pytest

import neural_echos.models  # noqa: F401  (registers our models with timm)


def _load_official():
    path = Path(__file__).with_name("official_hornet.py")
    spec = importlib.util.spec_from_file_location("official_hornet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def official():
    """Official-layout state dicts and checkpoints, and a reference forward of the official model."""
    return _load_official()
