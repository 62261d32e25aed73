"""SAM 2's Hiera with the reference's two adapters in every block, as submodules of the blocks.

`PaperHiera` is sam2's `Hiera` (built from the package's own config through Hydra, `_target_` pointing
here); after sam2 has built its blocks, each is rebuilt as a `PaperBlock` with the same settings, so the
keys are sam2's plus `blocks.{i}.MLP_Adapter.…` and `blocks.{i}.Space_Adapter.…` — the published ones.

A `PaperBlock` runs sam2's block computation with the reference's two insertions: the cross-modal
adapter on the attention output (after the window un-partition, so on the full grid, before the residual)
and the bottleneck adapter beside the MLP (scaled, on the same normalised input). The text state threads
through the blocks; the last block's update is discarded.
"""

from __future__ import annotations

import torch
from sam2.modeling.backbones.hieradet import Hiera, MultiScaleBlock, do_pool
from sam2.modeling.backbones.utils import window_partition, window_unpartition
from sam2.modeling.sam2_utils import DropPath

from backend.model.paper.adapters import BottleneckAdapter, CrossModalAdapter


class PaperBlock(MultiScaleBlock):
    def __init__(
        self,
        *,
        dim: int,
        dim_out: int,
        num_heads: int,
        drop_path: float,
        q_stride: tuple[int, int] | None,
        window_size: int,
        text_dim: int,
        adapter_ratio: int,
        adapter_heads: int,
        text_alpha: float,
        mlp_adapter_scale: float,
    ):
        super().__init__(
            dim=dim,
            dim_out=dim_out,
            num_heads=num_heads,
            drop_path=drop_path,
            q_stride=q_stride,
            window_size=window_size,
        )
        self.mlp_adapter_scale = mlp_adapter_scale
        self.MLP_Adapter = BottleneckAdapter(dim_out, adapter_ratio)
        self.Space_Adapter = CrossModalAdapter(dim_out, text_dim, adapter_ratio, adapter_heads, text_alpha)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, text: torch.Tensor, text_padding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        shortcut = x  # (B, H, W, C)
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = do_pool(self.proj(x), self.pool)
        window_size = self.window_size
        if window_size > 0:
            height, width = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, window_size)
        x = self.attn(x)
        if self.q_stride:
            # The block pools its queries: grid and window shrink by the stride.
            window_size = self.window_size // self.q_stride[0]
            height, width = shortcut.shape[1:3]
            pad_hw = (height + (-height) % window_size, width + (-width) % window_size)
        if self.window_size > 0:
            x = window_unpartition(x, window_size, pad_hw, (height, width))
        x, text = self.Space_Adapter(x, text, text_padding)
        x = shortcut + self.drop_path(x)
        normed = self.norm2(x)
        x = x + self.drop_path(self.mlp(normed)) + self.mlp_adapter_scale * self.MLP_Adapter(normed)
        return x, text


def _drop_rate(module: torch.nn.Module) -> float:
    return float(module.drop_prob) if isinstance(module, DropPath) else 0.0


class PaperHiera(Hiera):
    def __init__(
        self,
        *,
        text_dim: int,
        adapter_ratio: int = 4,
        adapter_heads: int = 4,
        text_alpha: float = 0.2,
        mlp_adapter_scale: float = 0.5,
        **hiera_kwargs,
    ):
        super().__init__(**hiera_kwargs)
        self.blocks = torch.nn.ModuleList(
            PaperBlock(
                dim=block.dim,
                dim_out=block.dim_out,
                num_heads=block.attn.num_heads,
                drop_path=_drop_rate(block.drop_path),
                q_stride=block.q_stride,
                window_size=block.window_size,
                text_dim=text_dim,
                adapter_ratio=adapter_ratio,
                adapter_heads=adapter_heads,
                text_alpha=text_alpha,
                mlp_adapter_scale=mlp_adapter_scale,
            )
            for block in self.blocks
        )

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, text: torch.Tensor, text_padding: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        """images (B or 1,3,S,S), text (B,L,d) → the stage outputs (B,C,h,w), as sam2's Hiera returns them."""
        x = self.patch_embed(x)
        x = x + self._get_pos_embed(x.shape[1:3])
        if x.shape[0] == 1 and text.shape[0] > 1:
            # One image for several phrases: the patch embedding ran once; the text enters from here on.
            x = x.expand(text.shape[0], -1, -1, -1)
        outputs = []
        for index, block in enumerate(self.blocks):
            x, text = block(x, text, text_padding)
            if index == self.stage_ends[-1] or (index in self.stage_ends and self.return_interm_layers):
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
