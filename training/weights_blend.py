"""Blending two sets of weights of one architecture: (1 − share)·a + share·b for every floating-point
tensor. A fine-tuned model blended with its start keeps part of what the start knew (weights of models
fine-tuned from one start lie in one basin, and points between them keep much of both); the demo model
is itself such a blend (scripts/make_demo_model.py)."""

from __future__ import annotations

from pathlib import Path

import torch


def blend_state(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], share: float
) -> dict[str, torch.Tensor]:
    """(1 − share)·a + share·b per floating-point tensor (others from `b`), on `b`'s devices."""
    if a.keys() != b.keys():
        raise ValueError("cannot blend weights of different architectures: their tensors differ")
    blended = {}
    for key, theirs in b.items():
        if not theirs.is_floating_point():
            blended[key] = theirs
            continue
        ours = a[key].to(theirs.device, torch.float32)
        mixed = (ours * (1 - share) + theirs.float() * share).to(theirs.dtype)
        # where both agree (frozen weights) the blend is that value, not its float rounding
        blended[key] = torch.where(ours == theirs.float(), theirs, mixed)
    return blended


def blend_files(first: Path, second: Path, share: float, out: Path) -> None:
    """`blend_state` of two safetensors files; the first's header (model configuration) is kept."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(first), "pt") as handle:
        metadata = handle.metadata()
    save_file(blend_state(load_file(str(first)), load_file(str(second)), share), str(out), metadata=metadata)
