"""What the GPU check's measurements share (bench/gpu_measure.py, bench/gpu_ddp.py): whether a device
is a CUDA one, and waiting for its queued work."""

from __future__ import annotations

MIB = 1 << 20


def on_cuda(device: str) -> bool:
    return device.startswith("cuda")


def synchronise(device: str) -> None:
    """Wait for the device's queued kernels (a no-op on the CPU), so wall times measure the work."""
    import torch

    if on_cuda(device):
        torch.cuda.synchronize(device)
