"""The assembled RS2-SAM 2 network of the project's family (docs/method.md, "Data flow")."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from backend.model.network_output import RS2SAM2Output, bounded_boundary_weight
from backend.model.presets import ModelConfig
from backend.model.project.bhf import TextState, attach_adapters, make_adapters
from backend.model.project.mask_prompt import MaskPromptGenerator, TextGate, pseudo_mask_to_prompt
from backend.model.project.tokenizer import tokenize
from backend.model.project.union_encoder import UnionEncoder
from backend.model.sam2_loading import SAM2ImageParts
from backend.model.text import TextTokens


class RS2SAM2(nn.Module):
    def __init__(self, config: ModelConfig, union: UnionEncoder, sam: SAM2ImageParts):
        super().__init__()
        self.config = config
        self.union = union
        self.sam = sam
        width, prompt_dim = config.union_width, sam.hidden_dim
        self.text_proj = nn.Linear(width, prompt_dim)  # T = Linear(T_u)
        self.sparse_proj = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, prompt_dim))
        self.boundary_head = nn.Linear(prompt_dim, 1)
        self.adapters = make_adapters(
            sam.image_encoder.trunk,
            prompt_dim,
            config.bhf_ratio,
            config.bhf_heads,
            config.bhf_text_alpha,
            config.mlp_adapter_scale,
        )
        self.text_gate = TextGate(prompt_dim, config.post_bhf_heads)
        self.mpg = MaskPromptGenerator(width, config.mpg_heads)
        self._text_state = TextState()
        self._hooks = attach_adapters(sam.image_encoder.trunk, self.adapters, self._text_state)
        # Set by the `openvino` precision mode (backend/model/project/predictor.py): a compiled image encoder
        # used for inference (no gradients) instead of the torch one.
        self.encoder_runtime = None

    # ---- inputs -------------------------------------------------------------------------------
    def tokenize(self, phrases: Sequence[str]) -> TextTokens:
        return tokenize(phrases, self.config.text_context_length)

    @property
    def device(self) -> torch.device:
        return self.text_proj.weight.device

    def low_precision_parts(self) -> list[nn.Module]:
        """The parts that hold nearly all the weights and compute, run in bf16/int8 by those precision
        modes (backend/model/precision.py): SAM 2's image encoder, its adapters and the union encoder."""
        return [self.sam.image_encoder, self.adapters, self.union]

    # ---- forward ------------------------------------------------------------------------------
    def forward(
        self,
        sam_images: torch.Tensor,
        clip_images: torch.Tensor | None,
        text: TextTokens | Sequence[str],
        clip_image_tokens: torch.Tensor | None = None,
    ) -> RS2SAM2Output:
        """Images (B or 1, 3, S, S) / (B or 1, 3, C, C) and B phrases → RS2SAM2Output.

        A batch of one image is broadcast over the phrases; `clip_image_tokens` (from
        `union.encode_image`) may replace `clip_images` when cached.
        """
        tokens = text if isinstance(text, TextTokens) else self.tokenize(text)
        tokens = tokens.to(self.device)
        batch = len(tokens)
        for images in (sam_images, clip_images if clip_images is not None else clip_image_tokens):
            if images.shape[0] not in (1, batch):
                raise ValueError(
                    f"{images.shape[0]} images for {batch} phrases: give one image, or one per phrase"
                )
        union = self.union(clip_images, tokens, image_tokens=clip_image_tokens)
        padding = ~tokens.valid
        text0 = self.text_proj(union.text)  # (B, L, d)
        boundary_logit = self.boundary_head(text0[:, 0]).squeeze(-1)
        sparse = self.sparse_proj(union.cls)  # (B, 1, d)

        # One image for several phrases stays one image up to the first Hiera block, where the text enters
        # (bhf.py): SAM 2's patch embedding and positions run once and are shared by the phrases.
        embedding, high_res = self._encode_image_with_text(sam_images, text0, padding)
        position = self.sam.sam_prompt_encoder.get_dense_pe()
        embedding = self.text_gate(embedding, position, text0, padding)

        pseudo_logits = self.mpg(union.cls, union.patches)
        prompt_size = (embedding.shape[-2] * 4, embedding.shape[-1] * 4)
        dense = self.sam.sam_prompt_encoder.mask_downscaling(
            pseudo_mask_to_prompt(pseudo_logits, prompt_size)
        )

        masks = self.sam.sam_mask_decoder.predict_masks(
            image_embeddings=embedding,
            image_pe=position,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=high_res,
        )[0]
        low_res = masks[:, :1]  # single-mask output: mask token 0
        full = F.interpolate(low_res, size=sam_images.shape[-2:], mode="bilinear", align_corners=False)
        return RS2SAM2Output(
            logits=full,
            low_res_logits=low_res,
            pseudo_mask_logits=pseudo_logits,
            boundary_logit=boundary_logit,
            boundary_weight=self.boundary_weight(boundary_logit),
        )

    def boundary_weight(self, boundary_logit: torch.Tensor) -> torch.Tensor:
        return bounded_boundary_weight(self.config, boundary_logit)

    def _encode_image_with_text(
        self, sam_images: torch.Tensor, text0: torch.Tensor, padding: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """SAM 2's image encoder with the text threaded through every block's adapters (BHF); with the
        `openvino` precision mode, the same graph compiled by OpenVINO (`encoder_runtime`)."""
        if self.encoder_runtime is not None and not torch.is_grad_enabled():
            return self.encoder_runtime(sam_images, text0, padding)
        return self.encode_image_with_text_in_torch(sam_images, text0, padding)

    def encode_image_with_text_in_torch(
        self, sam_images: torch.Tensor, text0: torch.Tensor, padding: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The torch graph of `_encode_image_with_text` (what the OpenVINO conversion exports)."""
        self._text_state.text, self._text_state.padding = text0, padding
        try:
            return self.sam.encode_image(sam_images)
        finally:
            self._text_state.text, self._text_state.padding = None, None
            self._text_state.grids.clear()

    # ---- what trains --------------------------------------------------------------------------
    def apply_freezing(self) -> None:
        """Set requires_grad per the config: unused parts never train; backbones per freeze switches."""
        for param in self.parameters():
            param.requires_grad_(True)
        frozen = [*self.sam.unused_parameters(), *self.union.unused_clip_parameters()]
        if self.config.sam_backbone_frozen:
            frozen += self.sam.backbone_parameters()
        if self.config.clip_frozen:
            frozen += list(self.union.clip.parameters())
        for param in frozen:
            param.requires_grad_(False)

    # Trained at the lower rate with SAM 2 and the union encoder, as the reference does: its heads on the
    # union encoder's output (text projection, sparse prompt, boundary weight) are not in its list of
    # new modules at the higher rate, while the fusion modules and the MPG are.
    REST_PREFIXES = ("sam.", "union.clip.", "text_proj.", "sparse_proj.", "boundary_head.")

    def unfreeze_union_encoder(self) -> None:
        """Train the union encoder's pretrained towers too (at the lower rate), as the paper fine-tunes its
        whole union encoder; the other freezing rules hold."""
        self.config = self.config.replace(freeze_clip=False)
        self.apply_freezing()

    def freeze_encoders(self) -> None:
        """Keep SAM 2's image trunk and neck and the union encoder's towers as they are; the adapters,
        fusion, prompt generator, heads and mask decoder still train (fine-tuning on a few labels)."""
        for param in [*self.sam.backbone_parameters(), *self.union.clip.parameters()]:
            param.requires_grad_(False)

    def param_groups(self, lr_new: float, lr_rest: float, weight_decay: float = 0.01) -> list[dict]:
        """Two AdamW groups: modules new in RS2-SAM 2 at lr_new, everything else that trains at lr_rest."""
        new, rest = [], []
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            (rest if name.startswith(self.REST_PREFIXES) else new).append(param)
        groups = [
            {"params": new, "lr": lr_new, "weight_decay": weight_decay, "name": "new"},
            {"params": rest, "lr": lr_rest, "weight_decay": weight_decay, "name": "rest"},
        ]
        return [group for group in groups if group["params"]]

    def parameter_counts(self) -> dict[str, int]:
        params = list(self.parameters())
        return {
            "total": sum(p.numel() for p in params),
            "trainable": sum(p.numel() for p in params if p.requires_grad),
            "adapters": sum(p.numel() for p in self.adapters.parameters()),
            "sam": sum(p.numel() for p in self.sam.parameters()),
            "clip": sum(p.numel() for p in self.union.clip.parameters()),
        }
