"""Small seeded fixtures shared by the model tests (all on the `test` preset, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.model.factory import build_model
from backend.model.presets import get_preset
from tests.gpu_support import device  # noqa: F401 - the device-parametrised fixture


@pytest.fixture
def test_config():
    return get_preset("test")


@pytest.fixture
def test_model():
    torch.manual_seed(0)
    return build_model("test")


@pytest.fixture
def batch_inputs(test_config):
    """Two random images in model input form (SAM side, CLIP side), seeded."""
    generator = torch.Generator().manual_seed(3)
    sam = torch.randn(2, 3, test_config.image_size, test_config.image_size, generator=generator)
    clip = torch.randn(2, 3, test_config.clip_image_size, test_config.clip_image_size, generator=generator)
    return sam, clip


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
