"""Building the open_clip CLIP of a preset and loading its weights (hub tag or local file)."""

from __future__ import annotations

from pathlib import Path

import open_clip
from open_clip.model import CLIP

from backend.errors import UserError
from backend.model.presets import ModelConfig, clip_model_config
from backend.model.weights_io import check_state_dict, read_state_file


def build_clip(config: ModelConfig) -> CLIP:
    """CLIP towers with random weights, then `config.clip_pretrained` applied when set."""
    if config.clip_pretrained and not _is_path(config.clip_pretrained):
        _check_tag(config.clip_model, config.clip_pretrained)  # before paying for building the towers
    if config.clip_model_config is not None:
        model = CLIP(**clip_model_config(config))
    else:
        model = open_clip.create_model(config.clip_model, pretrained=None)
    if not isinstance(model, CLIP):
        raise UserError(f"open_clip model {config.clip_model!r} is not a plain CLIP; pick a ViT CLIP model.")
    if config.clip_pretrained:
        load_clip_weights(model, config.clip_model, config.clip_pretrained)
    return model


def load_clip_weights(model: CLIP, model_name: str, pretrained: str) -> None:
    """`pretrained` is a local weights file (safetensors / torch.save) or an open_clip tag from the hub."""
    if _is_path(pretrained):
        load_clip_file(model, pretrained)
        return
    _check_tag(model_name, pretrained)
    try:
        # open_clip resolves the tag on the model hub (HF) and caches the file.
        hub_model = open_clip.create_model(model_name, pretrained=pretrained)
    except Exception as exc:  # network, hub or cache failures all mean: no weights here
        raise UserError(
            f"Could not fetch CLIP weights {model_name}/{pretrained} ({type(exc).__name__}); "
            "without internet pass a local weights file instead."
        ) from None
    model.load_state_dict(hub_model.state_dict())


def _check_tag(model_name: str, tag: str) -> None:
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if tag not in tags:
        raise UserError(
            f"{tag!r} is neither a weights file nor an open_clip tag of {model_name} "
            f"(tags: {', '.join(tags) or 'none'})."
        )


def load_clip_file(model: CLIP, path: str | Path) -> None:
    state = read_state_file(path, "CLIP weights")
    # open_clip training checkpoints wrap the weights in "state_dict", possibly with a DDP prefix.
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    check_state_dict(model, state, "CLIP weights", path)
    model.load_state_dict(state)


def _is_path(value: str) -> bool:
    return (
        Path(value).suffix in (".pt", ".pth", ".bin", ".safetensors") or Path(value).exists() or "/" in value
    )
