"""Choosing and loading the model for an entry point, with a one-sentence error for every way it can fail.

Every command that runs a model (`segment`, `serve`, `evaluate`) offers the same choice, declared once
here: `--model NAME` (a model by name: the bundled demo, the paper's published models once cached, …;
`rs2sam2 weights list` shows them), `--preset NAME` (an untrained model of a preset) or `--checkpoint
FILE` (a trained checkpoint, or a published model folder), `--device`, `--precision` and `--threads`.
Device choice ("auto" → CUDA when present; "cuda" without a GPU refused), precision modes
(backend/model/precision.py) and checkpoint reading live in the model package; the thread count in
backend/engine/threads.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backend import process_gc
from backend.bundled import DEMO_CHECKPOINT
from backend.contract import PRECISIONS
from backend.engine.threads import ThreadChoice, apply_threads
from backend.errors import UserError
from backend.model.api import PhraseSegmenter

DEVICE_HELP = "auto (CUDA when there is a GPU, else the CPU), cpu or cuda[:N] (default: auto)"
PRECISION_HELP = (
    "auto (the paper's models: fp32, their reference's masks; the project's models: the fastest mode whose "
    "masks agree with fp32: openvino for models of 512 px and more on the CPU, else bf16 on CPUs with "
    "native bf16 and on GPUs, else fp32), fp32, bf16, int8 "
    "(CPU only) or openvino (CPU only: the image encoder in OpenVINO, converted on first use and cached) "
    "(default: auto)"
)
THREADS_HELP = "CPU threads for the model (default: the physical cores, or OMP_NUM_THREADS when it is set)"


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
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help=PRECISION_HELP)
    parser.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)


def default_checkpoint() -> Path | None:
    """The model an entry point uses when given no model: the bundled demo model (trained, works
    offline) when it is there; otherwise None (the model package's default preset)."""
    return DEMO_CHECKPOINT if DEMO_CHECKPOINT.is_file() else None


def load_model(
    preset: str | None,
    checkpoint: str | None,
    device: str,
    model: str | None = None,
    precision: str = "fp32",
) -> PhraseSegmenter:
    if model is not None:
        from backend.weights.models import load_named_predictor

        loaded = load_named_predictor(model, device=device, precision=precision)
    else:
        if preset is None and checkpoint is None and (bundled := default_checkpoint()) is not None:
            checkpoint = str(bundled)
        if checkpoint is not None and not Path(checkpoint).exists():
            raise UserError(f"no such checkpoint file or model folder: {checkpoint}")
        from backend.model.factory import load_predictor

        loaded = load_predictor(preset=preset, checkpoint=checkpoint, device=device, precision=precision)
    process_gc.end_start_up()  # the libraries and the model now live until the process ends
    return loaded


def threads_from_args(args: argparse.Namespace) -> ThreadChoice:
    """Set torch's CPU threads for this entry point (`program_start` is set by backend.cli.main when the
    process was started from the command line, not called in-process)."""
    return apply_threads(args.threads, bool(getattr(args, "program_start", False)))


def load_model_from_args(args: argparse.Namespace) -> tuple[PhraseSegmenter, ThreadChoice]:
    """The model the arguments ask for, with the CPU threads set for it (both for the first line)."""
    threads = threads_from_args(args)
    model = load_model(args.preset, args.checkpoint, args.device, model=args.model, precision=args.precision)
    return model, threads


def model_device(model: PhraseSegmenter, fallback: str = "cpu") -> str:
    """The device a model runs on, for reports (stand-ins have none)."""
    device = getattr(model, "device", None)
    return str(device) if device is not None else fallback


def model_precision(model: PhraseSegmenter) -> str:
    """The precision mode a model runs in ("fp32", "bf16", "int8"; "" for stand-ins that have none)."""
    precision = getattr(model, "precision", None)
    return str(getattr(precision, "name", precision or ""))


def runtime_line(model: PhraseSegmenter, threads: ThreadChoice) -> str:
    """What runs, for an entry point's first line: model, device, precision (and why), CPU threads."""
    precision = getattr(model, "precision", None)
    described = precision.describe() if hasattr(precision, "describe") else (precision or "fp32")
    return f"model {model.model_id} on {model_device(model)}, precision {described}, " f"{threads.describe()}"


def model_preset(model: PhraseSegmenter, requested: str | None = None) -> str | None:
    """The preset a model was built from (a checkpoint carries its own), for reports."""
    config = getattr(getattr(model, "model", None), "config", None)
    return getattr(config, "name", None) or requested
