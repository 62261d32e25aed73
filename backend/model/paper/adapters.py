"""The reference's adapters and cross-attention fusions, under the reference's attribute names.

- `CrossAttention(mode="add")`: tgt + MHA(q = tgt, kv = memory) (the fusions inside the Hiera adapters);
- `CrossAttention(mode="gate")`: tgt ⊙ MHA(q = tgt + query_pos, kv = memory) (the post-encoder fusion in
  the mask decoder and the class-token attention of the mask prompt generator);
- `BottleneckAdapter` (`MLP_Adapter`): up(GELU(down(x))), no skip;
- `CrossModalAdapter` (`Space_Adapter`): the bidirectional vision ↔ text fusion on a block's attention
  output, returning the visual term and the updated text state (docs/method.md, step 4).

The reference attends to every text position; here padding positions are masked as keys, which changes
nothing for one phrase without padding (the reference's batch) and keeps a phrase's result independent of
the longer phrases batched with it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, mode: str):
        super().__init__()
        if mode not in ("add", "gate"):
            raise ValueError(f"unknown fusion mode {mode!r}")
        self.mode = mode
        self.multihead_attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(
        self,
        target: torch.Tensor,
        memory: torch.Tensor,
        memory_padding: torch.Tensor | None = None,
        query_position: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """target (B,N,C), memory (B,M,C), memory_padding (B,M) True on padding → (B,N,C)."""
        query = target if query_position is None else target + query_position
        attended = self.multihead_attn(
            query, memory, memory, key_padding_mask=memory_padding, need_weights=False
        )[0]
        return target + attended if self.mode == "add" else target * attended


def adapter_width(dim: int, ratio: int) -> int:
    """h = int(C · 1/ratio): the reference's int(C · 0.25) for ratio 4."""
    return int(dim / ratio)


class BottleneckAdapter(nn.Module):
    def __init__(self, dim: int, ratio: int):
        super().__init__()
        hidden = adapter_width(dim, ratio)
        self.D_fc1 = nn.Linear(dim, hidden)
        self.D_fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.D_fc2(F.gelu(self.D_fc1(x)))


class CrossModalAdapter(nn.Module):
    def __init__(self, dim: int, text_dim: int, ratio: int, heads: int, alpha: float):
        super().__init__()
        hidden = adapter_width(dim, ratio)
        self.alpha = alpha
        self.D_fc1 = nn.Linear(dim, hidden)
        self.D_fc2 = nn.Linear(hidden, dim)
        self.vlfusion_module = CrossAttention(hidden, heads, mode="add")  # vision ← text
        self.lvfusion_module = CrossAttention(hidden, heads, mode="add")  # text ← vision
        self.text_in_linear = nn.Linear(text_dim, hidden)
        self.text_out_linear = nn.Linear(hidden, text_dim)

    def forward(
        self, x: torch.Tensor, text: torch.Tensor, text_padding: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B,H,W,C) attention output on the full grid, text (B,L,d) → (x + visual term, next text)."""
        batch, height, width, _ = x.shape
        vision = F.gelu(self.D_fc1(x)).reshape(batch, height * width, -1)
        text_hidden = self.text_in_linear(text)
        vision = self.vlfusion_module(vision, text_hidden, text_padding)
        text_hidden = self.lvfusion_module(text_hidden, vision)
        text = (1.0 - self.alpha) * text + self.alpha * self.text_out_linear(text_hidden)
        return x + self.D_fc2(vision.reshape(batch, height, width, -1)), text
