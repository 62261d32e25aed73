"""Building SAM 2 from the `sam2` package's shipped configs and loading official checkpoints.

Official files (`sam2_hiera_*.pt`, `sam2.1_hiera_*.pt`) hold `{"model": state_dict}` for the whole
video model. We load them into the whole `SAM2Base` (so a file that does not match the config is
reported key by key) and keep only the image parts RS2-SAM 2 uses.
"""

from __future__ import annotations

from pathlib import Path

import torch
from sam2.build_sam import build_sam2
from sam2.modeling.sam2_base import SAM2Base
from torch import nn

from backend.errors import UserError
from backend.model.presets import ModelConfig
from backend.model.weights_io import check_state_dict, read_state_file


def sam2_overrides(config: ModelConfig) -> list[str]:
    if config.image_size % 32 != 0 or config.image_size < 64:
        raise UserError(
            f"Image size {config.image_size} must be a multiple of 32 and at least 64 (Hiera's stride)."
        )
    return [*config.sam2_overrides, f"++model.image_size={config.image_size}"]


def build_sam2_model(config: ModelConfig) -> SAM2Base:
    """The full SAM 2 model of the preset, random weights (then the official file if configured)."""
    try:
        model = build_sam2(
            config.sam2_config,
            ckpt_path=None,
            device="cpu",
            mode="eval",
            hydra_overrides_extra=sam2_overrides(config),
            apply_postprocessing=False,
        )
    except Exception as exc:  # hydra's MissingConfigException, bad overrides …
        raise UserError(
            f"Cannot build SAM 2 from {config.sam2_config!r}: {str(exc).splitlines()[0]}"
        ) from None
    if config.sam2_checkpoint:
        load_official_sam2(model, config.sam2_checkpoint)
    return model


def load_official_sam2(model: SAM2Base, path: str | Path) -> None:
    """Load an official `{"model": state_dict}` checkpoint, all keys required to match."""
    data = read_state_file(path, "SAM 2 checkpoint")
    if "model" not in data or not isinstance(data["model"], dict):
        raise UserError(
            f"The SAM 2 checkpoint {str(path)!r} is not in the official layout "
            "(a dict with a 'model' state dict)."
        )
    state = data["model"]
    check_state_dict(model, state, "SAM 2 checkpoint", path)
    model.load_state_dict(state)


class NoPositionEncoding(nn.Module):
    """Stands in for the FPN neck's sine position encodings, which only SAM 2's video memory reads.

    The neck computes one per level (at 1024 px a 256×256×256 map, repeated per image and cast), about a
    tenth of a `tiny` tile in bf16 (docs/benchmarks.md); the image model never uses them. Holds no
    weights, so the state dict is unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(())


class SAM2ImageParts(nn.Module):
    """The image-segmentation parts of a SAM2Base, under their original attribute names.

    State-dict keys are those of the official checkpoints (`image_encoder.trunk.blocks.0.attn.qkv.weight`
    …); the video memory modules are dropped, and with them the neck's position encodings.
    """

    def __init__(self, sam: SAM2Base):
        super().__init__()
        self.image_encoder = sam.image_encoder
        self.image_encoder.neck.position_encoding = NoPositionEncoding()
        self.sam_prompt_encoder = sam.sam_prompt_encoder
        self.sam_mask_decoder = sam.sam_mask_decoder
        self.no_mem_embed = sam.no_mem_embed
        self.use_high_res_features_in_sam = bool(sam.use_high_res_features_in_sam)
        self.directly_add_no_mem_embed = bool(sam.directly_add_no_mem_embed)
        self.hidden_dim = int(sam.hidden_dim)

    def unused_parameters(self) -> list[nn.Parameter]:
        """Parameters outside RS2-SAM 2's data flow: point/box prompts, IoU and object-score heads and the
        hypernetworks of masks 1–3 (single-mask output uses mask token 0). Never trained."""
        encoder, decoder = self.sam_prompt_encoder, self.sam_mask_decoder
        modules: list[nn.Module] = [
            encoder.pe_layer,
            *encoder.point_embeddings,
            encoder.not_a_point_embed,
            encoder.no_mask_embed,
            decoder.iou_prediction_head,
            *list(decoder.output_hypernetworks_mlps)[1:],
        ]
        if getattr(decoder, "pred_obj_scores", False) and hasattr(decoder, "pred_obj_score_head"):
            modules.append(decoder.pred_obj_score_head)
        return [param for module in modules for param in module.parameters()]

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Hiera trunk + FPN neck (+ the no-memory embedding added to their output)."""
        return [*self.image_encoder.parameters(), self.no_mem_embed]

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B,3,S,S) → image embedding (B, d, S/16, S/16) and high-res features
        [(B,d/8,S/4,.), (B,d/4,S/8,.)].

        The same steps as SAM2ImagePredictor.set_image, with grid sizes taken from the tensors.
        """
        out = self.image_encoder(images)
        fpn = list(out["backbone_fpn"])
        if self.use_high_res_features_in_sam:
            fpn[0] = self.sam_mask_decoder.conv_s0(fpn[0])
            fpn[1] = self.sam_mask_decoder.conv_s1(fpn[1])
        embedding = fpn[-1]
        if self.directly_add_no_mem_embed:
            embedding = embedding + self.no_mem_embed.reshape(1, -1, 1, 1)
        return embedding, fpn[:-1]
