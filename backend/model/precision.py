"""Mixed precision for the model's forward passes, decided in one place for inference and training."""

from __future__ import annotations

import contextlib

import torch


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA GPUs (the reference trains in bf16); full fp32 on the CPU, where bf16
    autocast is slower than fp32 without native bf16 kernels (docs/benchmarks.md)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
