"""`PaperRS2SAM2`: the reference RS2-SAM 2 (rongfu-dsb/RS2-SAM2, `EvfSamModel`), module for module.

Attribute names are the reference's, so `state_dict()` keys are the published checkpoints' keys (less
SAM 2's video-memory modules, which the image model never runs; the loader drops them by name):

- `visual_model`: SAM 2's image parts (`SAM2ImageParts`) with `PaperHiera` as trunk and the post-encoder
  fusion as `sam_mask_decoder.vlfusion_module`;
- `mm_extractor.beit3`: the BEiT-3 union encoder;
- `text_hidden_fcs` (sparse prompt from V_cls), `text_feat_linear` (T), `vmtoken`, `mask_linear` and
  `mask_product` (mask prompt generator), `text2one_linear` (the boundary-loss weight), `meo_linear`
  (never used by the reference's forward; kept so the keys match).

Output logits are `2z − 1` for the decoder's logit z: the reference scores a pixel by the two-class logits
[1 − z, z], whose softmax is σ(2z − 1) — so σ(logits) is the probability the reference was trained with
(its loss is a cross-entropy on those two logits) and σ(logits) > 0.5 is exactly its argmax mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from backend.model.network_output import RS2SAM2Output, bounded_boundary_weight
from backend.model.paper.adapters import CrossAttention
from backend.model.paper.beit3 import Beit3Extractor
from backend.model.paper.tokenizer import PaperTokenizer, attention_mask
from backend.model.presets import ModelConfig
from backend.model.sam2_loading import SAM2ImageParts
from backend.model.text import TextTokens


class PaperRS2SAM2(nn.Module):
    def __init__(self, config: ModelConfig, visual_model: SAM2ImageParts, mm_extractor: Beit3Extractor):
        super().__init__()
        self.config = config
        self.visual_model = visual_model
        self.mm_extractor = mm_extractor
        width, prompt_dim = config.beit3_width, visual_model.hidden_dim
        self.text_hidden_fcs = nn.ModuleList(
            [nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, prompt_dim))]
        )
        self.text_feat_linear = nn.Linear(width, prompt_dim)
        self.mask_linear = nn.Linear(width, width)
        self.mask_product = nn.Linear(width, 1)
        self.vmtoken = CrossAttention(width, config.mpg_heads, mode="gate")
        self.meo_linear = nn.Linear(width, prompt_dim)
        self.text2one_linear = nn.Linear(prompt_dim, 1)
        self.tokenizer: PaperTokenizer | None = None  # comes with the weights (the published model file)
        # Set by the `openvino` precision mode: a compiled image encoder used without gradients.
        self.encoder_runtime = None

    # ---- inputs -------------------------------------------------------------------------------
    def tokenize(self, phrases: Sequence[str]) -> TextTokens:
        if self.tokenizer is None:
            raise RuntimeError("this paper model has no tokenizer; load it with its weights")
        return self.tokenizer(phrases)

    @property
    def device(self) -> torch.device:
        return self.text_feat_linear.weight.device

    def low_precision_parts(self) -> list[nn.Module]:
        """The parts that hold nearly all the weights and compute, run in bf16/int8 by those precision
        modes (backend/model/precision.py): SAM 2's image encoder with its adapters, and BEiT-3."""
        return [self.visual_model.image_encoder, self.mm_extractor]

    # ---- parts of the forward -----------------------------------------------------------------
    def mask_prompt_logits(self, cls: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """V_cls (B,1,D), V (B,g,g,D) → pseudo-mask logits (B,1,g,g) (the reference applies σ to them)."""
        batch, grid_h, grid_w, width = patches.shape
        token = self.vmtoken(cls, patches.reshape(batch, grid_h * grid_w, width))
        token = self.mask_linear(token)[:, :, None]  # (B,1,1,D)
        return self.mask_product(patches * token).permute(0, 3, 1, 2)

    def encode_image(
        self, images: torch.Tensor, text: torch.Tensor, text_padding: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """SAM 2's image encoder with the text threaded through the trunk → embedding, high-res features;
        with the `openvino` precision mode, the same graph compiled by OpenVINO (`encoder_runtime`)."""
        if self.encoder_runtime is not None and not torch.is_grad_enabled():
            return self.encoder_runtime(images, text, text_padding)
        return self.encode_image_with_text_in_torch(images, text, text_padding)

    def encode_image_with_text_in_torch(
        self, images: torch.Tensor, text: torch.Tensor, text_padding: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The torch graph of `encode_image` (what the OpenVINO conversion exports)."""
        encoder = self.visual_model.image_encoder
        features, _ = encoder.neck(encoder.trunk(images, text, text_padding))
        if encoder.scalp > 0:
            features = features[: -encoder.scalp]
        fpn = list(features)
        decoder = self.visual_model.sam_mask_decoder
        if self.visual_model.use_high_res_features_in_sam:
            fpn[0], fpn[1] = decoder.conv_s0(fpn[0]), decoder.conv_s1(fpn[1])
        embedding = fpn[-1]
        if self.visual_model.directly_add_no_mem_embed:
            embedding = embedding + self.visual_model.no_mem_embed.reshape(1, -1, 1, 1)
        return embedding, fpn[:-1]

    def decode(
        self,
        embedding: torch.Tensor,
        high_res: list[torch.Tensor],
        text: torch.Tensor,
        text_padding: torch.Tensor | None,
        sparse: torch.Tensor,
        pseudo_logits: torch.Tensor,
    ) -> torch.Tensor:
        """Post-encoder fusion, dense + sparse prompts, SAM 2's decoder → z (B,1,4h,4w), mask token 0."""
        prompt_encoder, decoder = self.visual_model.sam_prompt_encoder, self.visual_model.sam_mask_decoder
        position = prompt_encoder.get_dense_pe()
        batch, dim, height, width = embedding.shape
        flat = embedding.flatten(2).transpose(1, 2)
        flat = decoder.vlfusion_module(flat, text, text_padding, position.flatten(2).transpose(1, 2))
        embedding = flat.transpose(1, 2).reshape(batch, dim, height, width)
        prompt = torch.sigmoid(pseudo_logits)
        if tuple(prompt.shape[-2:]) != tuple(prompt_encoder.mask_input_size):
            prompt = F.interpolate(
                prompt.float(),
                size=prompt_encoder.mask_input_size,
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        dense = prompt_encoder.mask_downscaling(prompt)
        masks = decoder.predict_masks(
            image_embeddings=embedding,
            image_pe=position,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=high_res,
        )[0]
        return masks[:, :1]

    # ---- forward ------------------------------------------------------------------------------
    def forward(
        self, sam_images: torch.Tensor, union_images: torch.Tensor, text: TextTokens | Sequence[str]
    ) -> RS2SAM2Output:
        """Images (B or 1, 3, S, S) / (B or 1, 3, U, U) and B phrases → RS2SAM2Output (logits = 2z − 1)."""
        tokens = text if isinstance(text, TextTokens) else self.tokenize(text)
        tokens = tokens.to(self.device)
        batch = len(tokens)
        for images in (sam_images, union_images):
            if images.shape[0] not in (1, batch):
                raise ValueError(
                    f"{images.shape[0]} images for {batch} phrases: give one image, or one per phrase"
                )
        if union_images.shape[0] == 1 and batch > 1:
            union_images = union_images.expand(batch, -1, -1, -1)
        # One SAM image for several phrases stays one until the first Hiera block (PaperHiera.forward).
        union = self.mm_extractor(union_images, tokens.ids, attention_mask(tokens))
        pseudo_logits = self.mask_prompt_logits(union.cls, union.patches)
        sparse = self.text_hidden_fcs[0](union.cls)
        text_states = self.text_feat_linear(union.text)
        # Only true padding is masked in the fusions (the reference, one phrase at a time, has none).
        padding = None if bool(tokens.valid.all()) else ~tokens.valid
        embedding, high_res = self.encode_image(sam_images, text_states, padding)
        z = self.decode(embedding, high_res, text_states, padding, sparse, pseudo_logits)
        low_res = 2.0 * z - 1.0
        full = F.interpolate(low_res, size=sam_images.shape[-2:], mode="bilinear", align_corners=False)
        boundary_logit = self.text2one_linear(text_states[:, 0]).squeeze(-1)
        return RS2SAM2Output(
            logits=full,
            low_res_logits=low_res,
            pseudo_mask_logits=pseudo_logits,
            boundary_logit=boundary_logit,
            boundary_weight=bounded_boundary_weight(self.config, boundary_logit),
        )

    # ---- what trains (the reference's rules) ------------------------------------------------------
    # Names the reference trains at its higher rate (its `lr_bifit_names` that occur in this tree):
    # the adapters, the fusion modules and the mask prompt generator. Everything else that trains
    # (BEiT-3, SAM 2's prompt encoder and decoder, the heads) takes the lower rate.
    NEW_MODULE_KEYWORDS = (
        "MLP_Adapter",
        "Space_Adapter",
        "vlfusion_module",
        "vmtoken",
        "mask_linear",
        "mask_product",
    )

    def apply_freezing(self) -> None:
        """SAM 2's image encoder is frozen except the adapters in its blocks; its prompt encoder and
        decoder train (the reference's rules). BEiT-3 trains only when `config.freeze_clip` is False
        (`unfreeze_union_encoder`): the reference fine-tunes it, which on a CPU costs most of a step.
        Parts outside the data flow never train."""
        for param in self.parameters():
            param.requires_grad_(True)
        frozen = [*self.visual_model.unused_parameters(), *self.meo_linear.parameters()]
        for name, param in self.visual_model.image_encoder.named_parameters():
            if "MLP_Adapter" not in name and "Space_Adapter" not in name:
                frozen.append(param)
        if self.config.freeze_clip is not False:
            frozen += list(self.mm_extractor.parameters())
        for param in frozen:
            param.requires_grad_(False)

    def unfreeze_union_encoder(self) -> None:
        self.config = self.config.replace(freeze_clip=False)
        self.apply_freezing()

    def freeze_encoders(self) -> None:
        """SAM 2's image encoder (but its adapters) and BEiT-3 stay as they are: the freezing rules with
        BEiT-3 frozen, whatever the configuration says."""
        self.config = self.config.replace(freeze_clip=True)
        self.apply_freezing()

    def param_groups(self, lr_new: float, lr_rest: float, weight_decay: float = 0.01) -> list[dict]:
        new, rest = [], []
        for name, param in self.named_parameters():
            if param.requires_grad:
                (new if any(key in name for key in self.NEW_MODULE_KEYWORDS) else rest).append(param)
        groups = [
            {"params": new, "lr": lr_new, "weight_decay": weight_decay, "name": "new"},
            {"params": rest, "lr": lr_rest, "weight_decay": weight_decay, "name": "rest"},
        ]
        return [group for group in groups if group["params"]]

    def parameter_counts(self) -> dict[str, int]:
        def count(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters())

        adapters = sum(
            count(block.MLP_Adapter) + count(block.Space_Adapter)
            for block in self.visual_model.image_encoder.trunk.blocks
        )
        return {
            "total": count(self),
            "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad),
            "adapters": adapters,
            "sam": count(self.visual_model) - adapters,
            "beit3": count(self.mm_extractor),
        }
