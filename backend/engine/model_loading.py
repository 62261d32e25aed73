"""Loading the model for an entry point: device checks and a clear error for every way it can fail."""

from __future__ import annotations

from pathlib import Path

from backend.errors import UserError
from backend.model.api import PhraseSegmenter


def resolve_device(device: str) -> str:
    """'auto' → cuda when available, else cpu; 'cuda' without a GPU is the user's mistake."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is available")
    if device != "cpu" and not device.startswith("cuda"):
        raise UserError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


def load_model(preset: str | None, checkpoint: str | None, device: str) -> PhraseSegmenter:
    """The model behind every entry point, via the model package's factory."""
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise UserError(f"no such checkpoint file: {checkpoint}")
    device = resolve_device(device)
    try:
        from backend.model.factory import load_predictor
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("backend.model"):
            raise UserError("the model package is not installed (backend.model.factory is missing)") from None
        raise
    return load_predictor(preset=preset, checkpoint=checkpoint, device=device)
