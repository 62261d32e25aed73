"""Building RS2-SAM 2 models and predictors: the one entry point everything else uses."""

from __future__ import annotations

from pathlib import Path

import torch

from backend.errors import UserError
from backend.model.clip_loading import build_clip
from backend.model.presets import ModelConfig, get_preset
from backend.model.rs2sam2 import RS2SAM2
from backend.model.sam2_loading import SAM2ImageParts, build_sam2_model
from backend.model.union_encoder import UnionEncoder

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
    from backend.model.checkpoint import load_checkpoint
    from backend.model.predictor import RS2SAM2Predictor

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
