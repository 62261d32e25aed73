"""Union encoder: CLIP's vision and text towers + trainable joint layers over [CLS; patches; text].

CLIP encodes image and text separately; the joint transformer layers on top give the multimodal
class token `V_cls`, the patch grid `V` and the text states `T_u` that the paper's BEiT-3 provides
(docs/method.md, step 2).
Text padding is masked in every attention (a phrase's result must not depend on its batch-mates).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from open_clip.model import CLIP
from torch import nn

from backend.model.text import TextTokens


@dataclass
class UnionOutput:
    cls: torch.Tensor  # V_cls (B, 1, D)
    patches: torch.Tensor  # V (B, g, g, D)
    text: torch.Tensor  # T_u (B, L, D)
    text_valid: torch.Tensor  # (B, L) bool


class UnionEncoder(nn.Module):
    def __init__(self, clip: CLIP, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.clip = clip
        vision_width = clip.visual.conv1.out_channels
        text_width = clip.token_embedding.embedding_dim
        self.vision_in = nn.Linear(vision_width, width)
        self.text_in = nn.Linear(text_width, width)
        self.modality = nn.Parameter(torch.zeros(2, width))  # learned [vision, text] embeddings
        nn.init.normal_(self.modality, std=0.02)
        layer = nn.TransformerEncoderLayer(
            width,
            heads,
            dim_feedforward=4 * width,
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # enable_nested_tensor=False: the same code path in training and inference.
        self.joint = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)

    def unused_clip_parameters(self) -> list[nn.Parameter]:
        """CLIP parts outside this data flow (contrastive projections, logit scale): never trained."""
        params = [self.clip.logit_scale]
        if self.clip.logit_bias is not None:
            params.append(self.clip.logit_bias)
        if isinstance(self.clip.visual.proj, nn.Parameter):
            params.append(self.clip.visual.proj)
        if isinstance(self.clip.text_projection, nn.Parameter):
            params.append(self.clip.text_projection)
        elif isinstance(self.clip.text_projection, nn.Module):
            params.extend(self.clip.text_projection.parameters())
        return params

    def encode_image(self, clip_images: torch.Tensor) -> torch.Tensor:
        """CLIP vision token states (B, 1 + g², vision_width), before the contrastive projection."""
        visual = self.clip.visual
        x = visual._embeds(clip_images)
        x = visual.transformer(x)
        return visual.ln_post(x)

    def encode_text(self, tokens: TextTokens) -> torch.Tensor:
        """CLIP text token states (B, L, text_width); causal, so trailing padding changes nothing."""
        length = tokens.ids.shape[1]
        x = self.clip.token_embedding(tokens.ids)
        x = x + self.clip.positional_embedding[:length]
        x = self.clip.transformer(x, attn_mask=self.clip.attn_mask[:length, :length])
        return self.clip.ln_final(x)

    def forward(
        self, clip_images: torch.Tensor | None, tokens: TextTokens, image_tokens: torch.Tensor | None = None
    ) -> UnionOutput:
        """`image_tokens` (from `encode_image`) may be given instead of images (cached per image).

        One image (batch 1) with B phrases is broadcast to the phrases.
        """
        if image_tokens is None:
            image_tokens = self.encode_image(clip_images)
        batch = len(tokens)
        if image_tokens.shape[0] == 1 and batch > 1:
            image_tokens = image_tokens.expand(batch, -1, -1)
        vision = self.vision_in(image_tokens) + self.modality[0]
        text = self.text_in(self.encode_text(tokens)) + self.modality[1]
        joint = torch.cat([vision, text], dim=1)
        vision_valid = torch.ones(batch, vision.shape[1], dtype=torch.bool, device=joint.device)
        padding = ~torch.cat([vision_valid, tokens.valid], dim=1)
        joint = self.norm(self.joint(joint, src_key_padding_mask=padding))
        n_vision = vision.shape[1]
        grid = int(round((n_vision - 1) ** 0.5))
        patches = joint[:, 1:n_vision].reshape(batch, grid, grid, -1)
        return UnionOutput(joint[:, :1], patches, joint[:, n_vision:], tokens.valid)
