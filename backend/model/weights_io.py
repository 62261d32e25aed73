"""Reading weight files safely, with one-sentence errors instead of tracebacks from deep inside torch."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from backend.errors import UserError


def read_state_file(path: str | Path, what: str) -> dict:
    """Load a `.safetensors` file or a `torch.save` file (with `weights_only=True`, never executing code).

    `what` names the file in messages ("SAM 2 checkpoint", "CLIP weights").
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"The {what} {str(path)!r} does not exist.")
    if path.stat().st_size == 0:
        raise UserError(f"The {what} {str(path)!r} is empty.")
    if _looks_like_safetensors(path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise UserError(f"The {what} {str(path)!r} is corrupt or truncated ({_short(exc)}).") from None
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"The {what} {str(path)!r} is corrupt or truncated ({_short(exc)}).") from None
    except Exception as exc:  # pickle.UnpicklingError and friends: content outside weights_only
        raise UserError(f"The {what} {str(path)!r} cannot be read safely ({_short(exc)}).") from None
    if not isinstance(data, Mapping):
        raise UserError(f"The {what} {str(path)!r} does not hold a dictionary of weights.")
    return dict(data)


def _looks_like_safetensors(path: Path) -> bool:
    # safetensors files start with an 8-byte little-endian header length followed by '{'.
    with open(path, "rb") as handle:
        head = handle.read(9)
    return path.suffix == ".safetensors" or (len(head) == 9 and head[8:9] == b"{")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def describe_keys(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{shown}{more}"


def check_state_dict(
    model: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str, path: str | Path
) -> None:
    """Raise a UserError naming missing, unexpected and wrongly shaped keys (nothing is loaded)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(
        key
        for key in set(expected) & set(state)
        if not isinstance(state[key], torch.Tensor) or tuple(state[key].shape) != tuple(expected[key].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys {describe_keys(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {describe_keys(unexpected)}")
    if wrong_shape:
        shapes = [
            f"{key} {tuple(getattr(state[key], 'shape', ()))} vs {tuple(expected[key].shape)}"
            for key in wrong_shape
        ]
        problems.append(f"wrongly shaped keys {describe_keys(shapes)}")
    if problems:
        raise UserError(f"The {what} {str(path)!r} does not match this model: {'; '.join(problems)}.")
