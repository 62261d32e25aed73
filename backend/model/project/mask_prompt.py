"""Mask prompt generator (MPG) and the post-encoder BHF gate (docs/method.md, steps 5 and 6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskPromptGenerator(nn.Module):
    """Union-encoder output → pseudo-mask logits on the CLIP patch grid.

    c = V_cls ⊙ MHA(q=V_cls, kv=V); c' = Linear(c); P = Linear(V ⊙ c') (logits; σ gives the pseudo-mask).
    """

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attend = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mix = nn.Linear(width, width)
        self.to_logit = nn.Linear(width, 1)

    def forward(self, cls: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """cls (B,1,D), patches (B,g,g,D) → pseudo-mask logits (B,1,g,g)."""
        batch, grid_h, grid_w, width = patches.shape
        flat = patches.reshape(batch, grid_h * grid_w, width)
        context = cls * self.attend(cls, flat, flat, need_weights=False)[0]
        logits = self.to_logit(flat * self.mix(context))
        return logits.reshape(batch, 1, grid_h, grid_w)


def pseudo_mask_to_prompt(pseudo_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """σ(P) resized (bilinear, antialiased) to SAM 2's mask-prompt size (4× the embedding grid).

    Resized in fp32 (torch's antialiased resize has no bf16 kernel on the CPU), returned in P's dtype."""
    prompt = F.interpolate(
        torch.sigmoid(pseudo_logits.float()), size=size, mode="bilinear", align_corners=False, antialias=True
    )
    return prompt.to(pseudo_logits.dtype)


class TextGate(nn.Module):
    """Post-encoder BHF: E' = E ⊙ MHA(q = E + PE, kv = T) — a multiplicative gate, no residual."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.attend = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(
        self, embedding: torch.Tensor, position: torch.Tensor, text: torch.Tensor, padding: torch.Tensor
    ) -> torch.Tensor:
        """embedding (B,d,h,w), position (1,d,h,w), text (B,L,d), padding (B,L) True on pads."""
        batch, dim, height, width = embedding.shape
        flat = embedding.flatten(2).transpose(1, 2)
        query = flat + position.flatten(2).transpose(1, 2)
        gate = self.attend(query, text, text, key_padding_mask=padding, need_weights=False)[0]
        return (flat * gate).transpose(1, 2).reshape(batch, dim, height, width)
