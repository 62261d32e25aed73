"""A downloaded file counts only once it loads through the same code that will use it."""

from __future__ import annotations

from pathlib import Path

from backend.errors import UserError
from backend.weights.registry import WeightFile


def verify_sam2_checkpoint(weight: WeightFile, path: Path) -> None:
    """Build the SAM 2 architecture the file is for and load the file into it, strictly."""
    import torch
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user-facing problem
        raise UserError(f"not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise UserError('not an official SAM 2 checkpoint (expected {"model": state_dict})')
    if not GlobalHydra.instance().is_initialized():
        initialize_config_module("sam2", version_base="1.2")
    config = compose(config_name=weight.architecture, overrides=list(weight.hydra_overrides))
    model = instantiate(config.model, _recursive_=True)
    try:
        result = model.load_state_dict(state["model"], strict=False)
    except RuntimeError as exc:  # shape mismatches
        mismatched = [
            line.split(":")[0].strip().removeprefix("size mismatch for ")  # torch indents these lines
            for line in str(exc).splitlines()
            if "size mismatch" in line
        ]
        raise UserError(
            f"does not match {weight.architecture}: {len(mismatched)} tensors have other shapes "
            f"(e.g. {', '.join(mismatched[:3])})"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise UserError(
            f"does not match {weight.architecture}: missing keys {result.missing_keys[:5]}, "
            f"unexpected keys {result.unexpected_keys[:5]}"
        )


def verify_clip_weights(weight: WeightFile, path: Path) -> None:
    """Load the file into open_clip's model of that name (open_clip reads safetensors and .bin)."""
    import open_clip

    try:
        open_clip.create_model(weight.architecture, pretrained=str(path), device="cpu")
    except Exception as exc:  # noqa: BLE001 - open_clip raises many types for a bad file
        raise UserError(
            f"does not load as open_clip {weight.architecture} ({type(exc).__name__}: {exc})"
        ) from None


def verify_weight_file(weight: WeightFile, path: Path) -> None:
    if weight.kind == "sam2":
        verify_sam2_checkpoint(weight, path)
    elif weight.kind == "clip":
        verify_clip_weights(weight, path)
    else:  # pragma: no cover - the registry only has these kinds
        raise UserError(f"unknown weight kind {weight.kind!r}")
