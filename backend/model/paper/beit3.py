"""The BEiT-3 union encoder: torchscale's `BEiT3` (the library the reference imports), configured as the
reference configures BEiT-3 large, under the attribute `beit3` so the keys are `mm_extractor.beit3.…`.

It encodes the image (224² here) and the phrase jointly; its output sequence is [CLS; 14×14 patches; text].
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import nn

from backend.model.presets import ModelConfig


def _import_torchscale():
    # torchscale imports timm's old `timm.models.layers` path, which timm 1.x still serves with a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from torchscale.architecture.config import EncoderConfig
        from torchscale.model.BEiT3 import BEiT3
    return EncoderConfig, BEiT3


def beit3_args(config: ModelConfig):
    """torchscale's EncoderConfig with the reference's settings (lib/unilm/beit3/modeling_utils.py):
    multiway, no embedding LayerNorm, final LayerNorm, no output layer, no drop-path; sub-LN, eps 1e-5 and
    learned absolute positions starting at 2 are torchscale's defaults."""
    encoder_config, _ = _import_torchscale()
    return encoder_config(
        img_size=config.beit3_image_size,
        patch_size=config.beit3_patch_size,
        vocab_size=config.beit3_vocab,
        multiway=True,
        layernorm_embedding=False,
        normalize_output=True,
        no_output_layer=True,
        drop_path_rate=0.0,
        encoder_embed_dim=config.beit3_width,
        encoder_attention_heads=config.beit3_heads,
        encoder_ffn_embed_dim=config.beit3_ffn,
        encoder_layers=config.beit3_layers,
        max_source_positions=config.beit3_text_positions,
        checkpoint_activations=None,
    )


@dataclass
class Beit3Output:
    cls: torch.Tensor  # (B, 1, D) the multimodal class token V_cls
    patches: torch.Tensor  # (B, g, g, D) the patch tokens V
    text: torch.Tensor  # (B, L, D) the text tokens T_u


class Beit3Extractor(nn.Module):
    """`mm_extractor` of the reference: a holder whose only child is torchscale's BEiT3 as `beit3`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        _, beit3_class = _import_torchscale()
        self.beit3 = beit3_class(beit3_args(config))
        self.grid = config.beit3_image_size // config.beit3_patch_size

    def forward(self, images: torch.Tensor, ids: torch.Tensor, attention: torch.Tensor) -> Beit3Output:
        """images (B,3,U,U), ids (B,L), attention (B,L) bool (False = masked, as `ids == pad`)."""
        out = self.beit3(visual_tokens=images, textual_tokens=ids, text_padding_position=~attention)
        states = out["encoder_out"]
        n_vision = 1 + self.grid * self.grid
        batch, _, width = states.shape
        patches = states[:, 1:n_vision].reshape(batch, self.grid, self.grid, width)
        return Beit3Output(cls=states[:, :1], patches=patches, text=states[:, n_vision:])
