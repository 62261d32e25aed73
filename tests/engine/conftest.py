"""Fixtures shared by the end-to-end tests: a real `test`-preset checkpoint, made once per session."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest


@contextlib.contextmanager
def one_torch_thread():
    """Run the real model on one torch thread, then restore the setting (it is process-wide).

    On the shared 2-core test machine two intra-op threads stall each other and run many times slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
