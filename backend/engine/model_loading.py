"""Choosing and loading the model for an entry point, with a one-sentence error for every way it can fail.

Every command that runs a model (`segment`, `serve`, `evaluate`) offers the same choice, declared once
here: `--model NAME` (a model by name: the bundled demo, the paper's published models once cached, …;
`rs2sam2 weights list` shows them), `--preset NAME` (an untrained model of a preset) or `--checkpoint
FILE` (a trained checkpoint, or a published model folder), and `--device`. Device choice ("auto" → CUDA
when present; "cuda" without a GPU refused) and checkpoint reading live in the model package's factory.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backend.bundled import DEMO_CHECKPOINT
from backend.errors import UserError
from backend.model.api import PhraseSegmenter

DEVICE_HELP = "auto (CUDA when there is a GPU, else the CPU), cpu or cuda[:N] (default: auto)"


def add_model_arguments(
    parser: argparse.ArgumentParser, default_text: str = "the bundled demo model"
) -> None:
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--model",
        metavar="NAME",
        help="a model by name: demo, paper-rrsisd, paper-refsegrs … (rs2sam2 weights list; "
        f"default: {default_text})",
    )
    choice.add_argument("--preset", help="an untrained model of this preset (test, tiny, base, large, …)")
    choice.add_argument(
        "--checkpoint", help="a trained checkpoint (.safetensors) or a published model folder"
    )
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)


def default_checkpoint() -> Path | None:
    """The model an entry point uses when given no model: the bundled demo model (trained, works
    offline) when it is there; otherwise None (the model package's default preset)."""
    return DEMO_CHECKPOINT if DEMO_CHECKPOINT.is_file() else None


def load_model(
    preset: str | None, checkpoint: str | None, device: str, model: str | None = None
) -> PhraseSegmenter:
    if model is not None:
        from backend.weights.models import load_named_predictor

        return load_named_predictor(model, device=device)
    if preset is None and checkpoint is None and (bundled := default_checkpoint()) is not None:
        checkpoint = str(bundled)
    if checkpoint is not None and not Path(checkpoint).exists():
        raise UserError(f"no such checkpoint file or model folder: {checkpoint}")
    from backend.model.factory import load_predictor

    return load_predictor(preset=preset, checkpoint=checkpoint, device=device)


def load_model_from_args(args: argparse.Namespace) -> PhraseSegmenter:
    return load_model(args.preset, args.checkpoint, args.device, model=args.model)


def model_device(model: PhraseSegmenter, fallback: str = "cpu") -> str:
    """The device a model runs on, for reports (stand-ins have none)."""
    device = getattr(model, "device", None)
    return str(device) if device is not None else fallback


def model_preset(model: PhraseSegmenter, requested: str | None = None) -> str | None:
    """The preset a model was built from (a checkpoint carries its own), for reports."""
    config = getattr(getattr(model, "model", None), "config", None)
    return getattr(config, "name", None) or requested
