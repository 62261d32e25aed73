"""Building RS2-SAM 2 models and predictors: the one entry point everything else uses."""

from __future__ import annotations

from pathlib import Path

import torch

from backend.errors import UserError
from backend.model.checkpoint import config_mismatch, read_checkpoint
from backend.model.clip_loading import build_clip
from backend.model.predictor import RS2SAM2Predictor
from backend.model.presets import ModelConfig, get_preset
from backend.model.rs2sam2 import RS2SAM2
from backend.model.sam2_loading import SAM2ImageParts, build_sam2_model
from backend.model.union_encoder import UnionEncoder
from backend.model.weights_io import check_state_dict

DEFAULT_PRESET = "test"


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" → CUDA when available, else CPU; "cuda" without CUDA is refused (never a silent fallback)."""
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                "Device 'cuda' was asked for but this torch sees no CUDA GPU; use --device cpu or auto."
            )
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise UserError(f"Unknown device {device!r}; use auto, cpu or cuda.")


def build_model(config: ModelConfig | str = DEFAULT_PRESET, device: str = "cpu") -> RS2SAM2:
    """A fresh RS2-SAM 2 (train mode) for a preset name or config, pretrained parts per the config."""
    if isinstance(config, str):
        config = get_preset(config)
    union = UnionEncoder(build_clip(config), config.union_width, config.union_layers, config.union_heads)
    sam = SAM2ImageParts(build_sam2_model(config))
    model = RS2SAM2(config, union, sam)
    model.apply_freezing()
    return model.to(resolve_device(device)).train()


def load_predictor(preset: str | None = None, checkpoint: str | Path | None = None, device: str = "auto"):
    """A PhraseSegmenter: an RS2-SAM 2 checkpoint (its own config), or a preset's fresh model.

    With both, the checkpoint must have been trained from that preset's architecture.
    """
    target = resolve_device(device)
    if checkpoint is not None:
        expected = get_preset(preset) if preset else None
        model, _ = load_checkpoint(checkpoint, device=str(target), expected=expected)
        model_id = Path(checkpoint).stem
    else:
        config = get_preset(preset or DEFAULT_PRESET)
        model = build_model(config, device=str(target)).eval()
        model_id = f"rs2sam2-{config.name}-untrained"
    return RS2SAM2Predictor(model, model_id=model_id)


def load_checkpoint(path: str | Path, device: str = "cpu", expected: ModelConfig | None = None):
    """Rebuild the model from the file's own config and load its weights (eval mode).

    `expected`: refuse a checkpoint whose architecture differs from that config.
    Pretrained-weight sources in the stored config are ignored: the file already holds every weight.
    """
    config, state, metadata = read_checkpoint(path)
    if expected is not None:
        differences = config_mismatch(expected, config)
        if differences:
            raise UserError(
                f"The checkpoint {str(path)!r} was made for preset {config.name!r}, not {expected.name!r} "
                f"({'; '.join(differences[:3])})."
            )
    config = config.replace(
        sam2_checkpoint=None,
        clip_pretrained=None,
        # Keep the freezing the model was trained with, now that no pretrained file is named.
        freeze_sam_backbone=config.sam_backbone_frozen,
        freeze_clip=config.clip_frozen,
    )
    model = build_model(config, device="cpu")
    check_state_dict(model, state, "model checkpoint", path)
    model.load_state_dict(state)
    return model.to(device).eval(), metadata
