"""Fixtures shared by the kernel-analysis tests."""

import pytest
import timm
import torch


@pytest.fixture(scope="module")
def atto():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return timm.create_model("convnext_atto", pretrained=False)
