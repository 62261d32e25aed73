"""Loading the model for an entry point, with a one-sentence error for every way it can fail.

Device choice ("auto" → CUDA when present; "cuda" without a GPU refused) and checkpoint reading live
in the model package's factory; this adds the checks an entry point wants before paying for imports.
"""

from __future__ import annotations

from pathlib import Path

from backend.bundled import DEMO_CHECKPOINT
from backend.errors import UserError
from backend.model.api import PhraseSegmenter


def default_checkpoint() -> Path | None:
    """The model an entry point uses when given neither a preset nor a checkpoint: the bundled demo
    model (trained, works offline) when it is there; otherwise None (the model package's default preset)."""
    return DEMO_CHECKPOINT if DEMO_CHECKPOINT.is_file() else None


def load_model(preset: str | None, checkpoint: str | None, device: str) -> PhraseSegmenter:
    if preset is None and checkpoint is None and (bundled := default_checkpoint()) is not None:
        checkpoint = str(bundled)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UserError(f"no such checkpoint file: {checkpoint}")
    from backend.model.factory import load_predictor

    return load_predictor(preset=preset, checkpoint=checkpoint, device=device)


def model_device(model: PhraseSegmenter, fallback: str = "cpu") -> str:
    """The device a model runs on, for reports (stand-ins have none)."""
    device = getattr(model, "device", None)
    return str(device) if device is not None else fallback


def model_preset(model: PhraseSegmenter, requested: str | None = None) -> str | None:
    """The preset a model was built from (a checkpoint carries its own), for reports."""
    config = getattr(getattr(model, "model", None), "config", None)
    return getattr(config, "name", None) or requested
