"""Fixtures shared by the end-to-end tests: a real `test`-preset checkpoint, made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gpu_support import device  # noqa: F401 - the device-parametrised fixture


@pytest.fixture(scope="session")
def test_checkpoint(tmp_path_factory) -> Path:
    """A seeded, untrained `test`-preset RS2-SAM 2 saved in the project's checkpoint format.

    Seeded weights make every process (CLI, torchrun ranks, this one) run the same model.
    """
    import torch

    from backend.model.checkpoint import save_checkpoint
    from backend.model.factory import build_model

    torch.manual_seed(0)
    model = build_model("test", device="cpu").eval()
    return save_checkpoint(tmp_path_factory.mktemp("model") / "rs2sam2-test-seed0.safetensors", model)
