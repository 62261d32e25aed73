"""Deterministic weights chosen by key name, for comparing two implementations of one module tree.

Both sides (this project's paper model and, once, the reference implementation in a scratch environment;
see data/README.md) fill every tensor of their state dict from a generator seeded by the key's CRC-32,
so equal key names and shapes get equal values whatever order the modules were built in.
"""

from __future__ import annotations

import zlib

import torch
from torch import nn

NORM_CLASSES = ("LayerNorm", "LayerNorm2d")


def norm_keys(model: nn.Module) -> set[str]:
    """State-dict keys that belong to a normalisation layer (matched by class name on both sides)."""
    keys = set()
    for name, module in model.named_modules():
        if type(module).__name__ in NORM_CLASSES:
            prefix = f"{name}." if name else ""
            keys.update(prefix + key for key, _ in module.named_parameters(recurse=False))
    return keys


def key_value(key: str, shape: tuple[int, ...], is_norm: bool) -> torch.Tensor:
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    if is_norm:
        return (1.0 + 0.1 * noise) if key.endswith("weight") else 0.1 * noise
    if len(shape) >= 2:
        fan_in = max(1, int(torch.tensor(shape[1:]).prod()))
        return noise / fan_in**0.5
    return 0.1 * noise


@torch.no_grad()
def fill_deterministic(model: nn.Module) -> None:
    """Overwrite every parameter and persistent buffer of `model` with its key's deterministic value."""
    norms = norm_keys(model)
    for key, tensor in model.state_dict(keep_vars=True).items():
        if not tensor.is_floating_point():
            continue
        tensor.copy_(key_value(key, tuple(tensor.shape), key in norms).to(tensor.dtype))


def seeded_inputs(image_size: int, union_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised-looking image tensors for SAM 2 (1,3,S,S) and the union encoder (1,3,U,U)."""
    generator = torch.Generator().manual_seed(2401)
    sam = torch.randn((1, 3, image_size, image_size), generator=generator)
    union = torch.randn((1, 3, union_size, union_size), generator=generator)
    return sam, union
