"""Building a `PaperRS2SAM2` from a ModelConfig: random weights, or empty (meta tensors) for loading."""

from __future__ import annotations

import contextlib

from sam2.build_sam import build_sam2

from backend.errors import UserError
from backend.model.paper.adapters import CrossAttention
from backend.model.paper.beit3 import Beit3Extractor
from backend.model.paper.model import PaperRS2SAM2
from backend.model.presets import ModelConfig
from backend.model.sam2_loading import SAM2ImageParts, sam2_overrides

HIERA_TARGET = "backend.model.paper.hiera.PaperHiera"

# SAM 2's modules for video (memory attention and encoder, object pointers): the published checkpoints
# carry them (the reference builds SAM 2's video predictor) but the image model never runs them.
SAM2_VIDEO_ONLY = (
    "memory_attention",
    "memory_encoder",
    "maskmem_tpos_enc",
    "no_mem_pos_enc",
    "no_obj_ptr",
    "mask_downsample",
    "obj_ptr_proj",
)


def paper_sam2_overrides(config: ModelConfig) -> list[str]:
    trunk = "++model.image_encoder.trunk"
    return [
        *sam2_overrides(config),
        f"{trunk}._target_={HIERA_TARGET}",
        f"{trunk}.text_dim=${{model.image_encoder.neck.d_model}}",
        f"{trunk}.adapter_ratio={config.bhf_ratio}",
        f"{trunk}.adapter_heads={config.bhf_heads}",
        f"{trunk}.text_alpha={config.bhf_text_alpha}",
        f"{trunk}.mlp_adapter_scale={config.mlp_adapter_scale}",
    ]


def _build_visual_model(config: ModelConfig, device: str) -> SAM2ImageParts:
    try:
        sam = build_sam2(
            config.sam2_config,
            ckpt_path=None,
            device=device,
            mode="eval",
            hydra_overrides_extra=paper_sam2_overrides(config),
            apply_postprocessing=False,  # the reference builds without the stability fallback
        )
    except Exception as exc:  # hydra's MissingConfigException, bad overrides …
        raise UserError(
            f"Cannot build SAM 2 from {config.sam2_config!r}: {str(exc).splitlines()[0]}"
        ) from None
    parts = SAM2ImageParts(sam)
    parts.sam_mask_decoder.add_module(
        "vlfusion_module", CrossAttention(parts.hidden_dim, config.post_bhf_heads, mode="gate")
    )
    return parts


def build_paper_model(config: ModelConfig, device: str = "cpu", empty: bool = False) -> PaperRS2SAM2:
    """The paper model (eval mode). `empty`: parameters on the meta device, to be loaded with `assign`.

    Parameters are never allocated twice for an empty build (accelerate's init_empty_weights puts each on
    the meta device as it is registered), so loading the weights afterwards holds one copy of them.
    """
    if config.family != "paper":
        raise ValueError(f"preset {config.name!r} is not a paper-family model")
    if config.text_context_length > config.beit3_text_positions - 2:
        raise UserError("text_context_length exceeds BEiT-3's positions (which start at 2).")
    if empty:
        from accelerate import init_empty_weights

        context = init_empty_weights(include_buffers=False)
    else:
        context = contextlib.nullcontext()
    with context:
        visual_model = _build_visual_model(config, "meta" if empty else "cpu")
        model = PaperRS2SAM2(config, visual_model, Beit3Extractor(config))
    model.apply_freezing()
    if not empty:
        model = model.to(device)
    return model.eval()


def is_video_only_key(key: str) -> bool:
    """Keys of SAM 2's video modules in a published checkpoint (accepted and dropped on load)."""
    parts = key.split(".")
    return len(parts) >= 2 and parts[0] == "visual_model" and parts[1] in SAM2_VIDEO_ONLY
