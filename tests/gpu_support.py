"""Device-parametrised tests: the CPU always, CUDA where there is a GPU.

A test that takes the `device` fixture (imported into tests/model/conftest.py and
tests/engine/conftest.py) runs once per device: `cpu`, and `cuda`, which carries the `gpu` marker and
is skipped with a reason on a machine without a CUDA GPU. `pytest -m gpu` selects the CUDA side alone
(what `make device-check` runs on a GPU machine); `pytest -m "not gpu"` the rest. Tests that only make
sense on a GPU carry `gpu_only()`'s marks.

torch is imported only when a fixture runs, so importing this module costs nothing (the plugin's tests
import no torch).
"""

from __future__ import annotations

import contextlib

import pytest

NO_CUDA = "no CUDA GPU here (torch.cuda.is_available() is False); runs on a GPU machine: make device-check"
DEVICES = [pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.gpu)]


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - the project's environment always has torch
        return False
    return torch.cuda.is_available()


def skip_without_cuda(device: str) -> None:
    if str(device).startswith("cuda") and not cuda_available():
        pytest.skip(NO_CUDA)


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """ "cpu", then "cuda" (marked `gpu`; skipped with the reason when there is no CUDA GPU)."""
    skip_without_cuda(request.param)
    return request.param


def gpu_only() -> list:
    """The marks of a test that only means something on a GPU (precisions only CUDA runs, a real CUDA
    out-of-memory): `pytestmark = gpu_only()` or `@pytest.mark.parametrize(..., marks=gpu_only())`."""
    return [pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason=NO_CUDA)]


@contextlib.contextmanager
def strict_fp32():
    """Plain IEEE fp32 on CUDA for the duration: no TF32 in convolutions (cuDNN's default allows it) nor
    in matrix products (torch's default already refuses it there). Restored afterwards."""
    import torch

    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def iou(a, b) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0
