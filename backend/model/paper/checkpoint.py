"""A paper model in the project's own single-file checkpoint: the ModelConfig, the tokenizer's
sentencepiece model (base64, in the header) and the weights, so `--checkpoint FILE` works everywhere."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from backend.errors import UserError
from backend.model.paper.build import build_paper_model
from backend.model.paper.folder import assign_weights, check_keys
from backend.model.paper.model import PaperRS2SAM2
from backend.model.paper.safetensors_stream import read_header, read_tensor, write_file
from backend.model.paper.tokenizer import PaperTokenizer
from backend.model.presets import ModelConfig

TOKENIZER_FIELD = "tokenizer_sentencepiece_base64"


def save_paper_checkpoint(
    path: Path, model: PaperRS2SAM2, fmt: str, metadata: dict[str, Any] | None = None
) -> Path:
    if model.tokenizer is None:
        raise UserError("This paper model has no tokenizer to save with it.")
    header = {
        "format": fmt,
        "config": model.config.to_json(),
        "metadata": json.dumps(metadata or {}, default=str),
        TOKENIZER_FIELD: base64.b64encode(model.tokenizer.model_bytes).decode("ascii"),
    }
    return write_file(path, model.state_dict(), header)


def load_paper_checkpoint(
    path: Path, config: ModelConfig, header: dict[str, str], device: str = "cpu"
) -> PaperRS2SAM2:
    """Build empty, check every key and shape, read the tensors into place, attach the tokenizer."""
    try:
        model_bytes = base64.b64decode(header[TOKENIZER_FIELD], validate=True)
    except (KeyError, binascii.Error):
        raise UserError(f"The checkpoint {str(path)!r} lacks its tokenizer.") from None
    entries, _ = read_header(path, "model checkpoint")
    model = build_paper_model(config, empty=True)
    expected = model.state_dict()
    found = {key: (entry.shape, entry.dtype) for key, entry in entries.items()}
    check_keys(found, expected, f"the model checkpoint {str(path)!r}")
    with open(path, "rb") as handle:
        state = {key: read_tensor(handle, entry) for key, entry in entries.items() if key in expected}
    assign_weights(model, state)
    model.tokenizer = PaperTokenizer(model_bytes, max_tokens=config.text_context_length)
    return model.to(device).eval()
