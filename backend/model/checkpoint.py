"""RS2-SAM 2 checkpoint files: one safetensors file carrying the ModelConfig (JSON header) and the
weights. Writing and reading only; `factory.load_checkpoint` rebuilds the model from one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from backend.errors import UserError
from backend.model.presets import ModelConfig

FORMAT = "rs2sam2-checkpoint/1"


def save_checkpoint(
    path: str | Path, model, metadata: dict[str, Any] | None = None, overwrite: bool = False
) -> Path:
    """Write `model` (an RS2SAM2) atomically: temp file in the same folder, then os.replace."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"{str(path)!r} already exists; choose another name or allow overwriting.")
    if not path.parent.is_dir():
        raise UserError(f"The folder {str(path.parent)!r} does not exist.")
    if model.config.family == "paper":  # streamed (no second copy of ~3.7 GB), tokenizer in the header
        from backend.model.paper.checkpoint import save_paper_checkpoint

        return save_paper_checkpoint(path, model, FORMAT, metadata)
    # Clones: safetensors refuses tensors that share storage.
    state = {key: value.detach().to("cpu").contiguous().clone() for key, value in model.state_dict().items()}
    header = {
        "format": FORMAT,
        "config": model.config.to_json(),
        "metadata": json.dumps(metadata or {}, default=str),
    }
    return write_safetensors(path, state, header)


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], header: dict[str, str]) -> Path:
    """Write a safetensors file atomically: a temp file in the same folder, then os.replace. A file
    that is replaced keeps its permissions (mkstemp's 0600 would hide a model others read)."""
    from safetensors.torch import save_file

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=header)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """(config, state_dict, metadata); every failure is a one-sentence UserError."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"The model checkpoint {str(path)!r} does not exist.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            state = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise UserError(
            f"The model checkpoint {str(path)!r} is corrupt or truncated, or not an RS2-SAM 2 checkpoint "
            f"({str(exc).splitlines()[0][:120]})."
        ) from None
    if header.get("format") != FORMAT or "config" not in header:
        raise UserError(
            f"{str(path)!r} is a safetensors file but not an RS2-SAM 2 checkpoint (no model configuration)."
        )
    try:
        config = ModelConfig.from_json(header["config"])
        metadata = json.loads(header.get("metadata", "{}"))
    except (ValueError, TypeError) as exc:
        raise UserError(f"The configuration inside {str(path)!r} is unreadable ({exc}).") from None
    return config, state, metadata


def check_expected(path: Path, config: ModelConfig, expected: ModelConfig | None) -> None:
    if expected is None:
        return
    differences = config_mismatch(expected, config)
    if differences:
        raise UserError(
            f"The checkpoint {str(path)!r} was made for preset {config.name!r}, not {expected.name!r} "
            f"({'; '.join(differences[:3])})."
        )


def load_paper_file(path: str | Path, device: str, expected: ModelConfig | None):
    """(model, metadata) when the file holds a paper-family model, else None (read by the header only)."""
    from backend.model.paper.safetensors_stream import read_header

    path = Path(path)
    if not path.is_file():
        raise UserError(f"The model checkpoint {str(path)!r} does not exist.")
    try:
        _, header = read_header(path, "model checkpoint")
    except UserError:
        return None  # read_checkpoint gives the project's message for a bad file
    if header.get("format") != FORMAT or "config" not in header:
        return None
    try:
        config = ModelConfig.from_json(header["config"])
        metadata = json.loads(header.get("metadata", "{}"))
    except (ValueError, TypeError) as exc:
        raise UserError(f"The configuration inside {str(path)!r} is unreadable ({exc}).") from None
    if config.family != "paper":
        return None
    check_expected(path, config, expected)
    from backend.model.paper.checkpoint import load_paper_checkpoint

    return load_paper_checkpoint(path, config, header, device=device), metadata


def config_mismatch(expected: ModelConfig, found: ModelConfig) -> list[str]:
    """Architecture fields that differ, as 'field: expected X, file has Y'."""
    want, have = expected.architecture(), found.architecture()
    return [
        f"{key}: expected {want[key]!r}, file has {have[key]!r}" for key in want if want[key] != have[key]
    ]


def read_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """The training metadata of a checkpoint file, read from its header alone ({} for a folder, a file
    without any, or one that is not readable: the full load reports those)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
        metadata = json.loads(header.get("metadata", "{}"))
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return {}
    return metadata if isinstance(metadata, dict) else {}
