"""Bidirectional hierarchical fusion (BHF): adapters attached to every Hiera block of SAM 2 at runtime.

The adapters are not submodules of SAM 2 (they live in `RS2SAM2.adapters`), so SAM 2's module names
and state-dict keys stay exactly those of the `sam2` package and official checkpoints load unchanged.
They act through forward hooks on each block's own modules:

- a pre-hook on the block records its input grid (to undo/redo the window partition) and gives one
  image shared by several phrases a copy per phrase (so the work before the first block is shared);
- a hook on `block.attn` adds the fusion output to the attention output A (before the residual),
  computed on the full H·W grid of each image, and advances the shared text state T_i → T_{i+1};
- a hook on `block.mlp` adds the parallel MLP adapter on the block's MLP input LN2(x).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from sam2.modeling.backbones.hieradet import Hiera, MultiScaleBlock
from sam2.modeling.backbones.utils import window_partition, window_unpartition
from torch import nn
from torch.utils.hooks import RemovableHandle

# Small (not zero) initial output projections: SAM 2's behaviour is nearly unchanged at the start,
# yet every adapter weight receives gradient from the first step.
_OUT_INIT_STD = 1e-3


@dataclass
class TextState:
    """The text carried from block to block during one image-encoder forward."""

    text: torch.Tensor | None = None  # T_i (B, L, prompt_dim)
    padding: torch.Tensor | None = None  # (B, L) bool, True on padding
    grids: dict[int, tuple[int, int]] = field(default_factory=dict)  # block index → input (H, W)

    @property
    def active(self) -> bool:
        return self.text is not None


class FusionAdapter(nn.Module):
    """Vision ↔ text cross-attention on a block's attention output (docs/method.md, step 4)."""

    def __init__(self, dim: int, text_dim: int, ratio: int, heads: int, alpha: float, updates_text: bool):
        super().__init__()
        hidden = max(dim // ratio, heads)
        self.alpha = alpha
        self.down = nn.Linear(dim, hidden)
        self.text_down = nn.Linear(text_dim, hidden)
        self.vision_from_text = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.up = nn.Linear(hidden, dim)
        nn.init.normal_(self.up.weight, std=_OUT_INIT_STD)
        nn.init.zeros_(self.up.bias)
        # The last block's text state is discarded, so it carries no text-update weights.
        self.updates_text = updates_text
        if updates_text:
            self.text_from_vision = nn.MultiheadAttention(hidden, heads, batch_first=True)
            self.text_up = nn.Linear(hidden, text_dim)

    def forward(self, attn_out: torch.Tensor, state: TextState) -> torch.Tensor:
        """attn_out (B, H, W, C) → the term added to it; updates `state.text` in place."""
        batch, height, width, _ = attn_out.shape
        z = F.gelu(self.down(attn_out)).reshape(batch, height * width, -1)
        text_q = self.text_down(state.text)
        z = (
            z
            + self.vision_from_text(z, text_q, text_q, key_padding_mask=state.padding, need_weights=False)[0]
        )
        if self.updates_text:
            text_new = text_q + self.text_from_vision(text_q, z, z, need_weights=False)[0]
            state.text = (1.0 - self.alpha) * state.text + self.alpha * self.text_up(text_new)
        return self.up(z).reshape(batch, height, width, -1)


class MLPAdapter(nn.Module):
    """Parallel bottleneck beside the block's MLP: scale · up(GELU(down(LN2(x))))."""

    def __init__(self, dim: int, ratio: int, scale: float):
        super().__init__()
        self.scale = scale
        self.down = nn.Linear(dim, max(dim // ratio, 1))
        self.up = nn.Linear(max(dim // ratio, 1), dim)
        nn.init.normal_(self.up.weight, std=_OUT_INIT_STD)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.up(F.gelu(self.down(x)))


class BlockAdapter(nn.Module):
    def __init__(self, fusion: FusionAdapter, mlp: MLPAdapter):
        super().__init__()
        self.fusion = fusion
        self.mlp = mlp


def make_adapters(
    trunk: Hiera, text_dim: int, ratio: int, heads: int, alpha: float, mlp_scale: float
) -> nn.ModuleList:
    """One BlockAdapter per Hiera block, sized to the block's output width."""
    blocks = list(trunk.blocks)
    return nn.ModuleList(
        BlockAdapter(
            FusionAdapter(block.dim_out, text_dim, ratio, heads, alpha, updates_text=index < len(blocks) - 1),
            MLPAdapter(block.dim_out, ratio, mlp_scale),
        )
        for index, block in enumerate(blocks)
    )


def attach_adapters(trunk: Hiera, adapters: nn.ModuleList, state: TextState) -> list[RemovableHandle]:
    """Hook the adapters into the trunk's blocks; returns the handles (call `.remove()` to detach)."""
    if len(adapters) != len(trunk.blocks):
        raise ValueError(f"{len(adapters)} adapters for {len(trunk.blocks)} Hiera blocks")
    handles: list[RemovableHandle] = []
    for index, (block, adapter) in enumerate(zip(trunk.blocks, adapters)):
        handles.append(block.register_forward_pre_hook(_RecordGrid(index, state)))
        handles.append(block.attn.register_forward_hook(_FuseAttention(index, block, adapter.fusion, state)))
        handles.append(block.mlp.register_forward_hook(_AddMLPAdapter(adapter.mlp, state)))
    return handles


# The hooks are small objects rather than closures so that `copy.deepcopy(model)` copies them with the
# model: a closure would be shared by the copy and keep acting on the original's adapters and text state.


@dataclass(eq=False)
class _RecordGrid:
    index: int
    state: TextState

    def __call__(self, block: nn.Module, args: tuple) -> tuple | None:
        state = self.state
        if not state.active:
            return None
        x = args[0]
        state.grids[self.index] = (x.shape[1], x.shape[2])
        phrases = state.text.shape[0]
        if x.shape[0] == 1 and phrases > 1:
            # One image for several phrases: everything before the first block (patch embedding,
            # positions) ran once; from here on the text differs, so each phrase gets its own copy.
            return (x.expand(phrases, -1, -1, -1), *args[1:])
        return None


@dataclass(eq=False)
class _FuseAttention:
    index: int
    block: MultiScaleBlock
    fusion: FusionAdapter
    state: TextState

    def __call__(self, attn: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        state, block = self.state, self.block
        if not state.active:
            return None  # plain SAM 2 (no text given)
        height, width = state.grids[self.index]
        window = block.window_size
        if block.q_stride:
            # The block pools queries: its output grid and window shrink by the stride.
            height, width = height // block.q_stride[0], width // block.q_stride[1]
            window = window // block.q_stride[0]
        if block.window_size <= 0:
            return output + self.fusion(output, state)
        padded = (height + (-height) % window, width + (-width) % window)
        full = window_unpartition(output, window, padded, (height, width))
        delta = self.fusion(full, state)
        return output + window_partition(delta, window)[0]


@dataclass(eq=False)
class _AddMLPAdapter:
    mlp_adapter: MLPAdapter
    state: TextState

    def __call__(self, mlp: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if not self.state.active:
            return None
        return output + self.mlp_adapter(args[0])
