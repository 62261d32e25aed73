"""The resumable training state: weights, optimizer, scheduler, RNG and data position, in one file
written atomically (temp file, then os.replace), read back with `weights_only=True`."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from backend.errors import UserError

STATE_FILE = "last_state.pt"


@dataclass
class Progress:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    micro_batch: int = 0  # micro-batches of `epoch` already consumed
    best_score: float = float("-inf")  # val mIoU + oIoU of best.safetensors
    best_step: int = -1


def save_state(path: Path, model, optimizer, scheduler, progress: Progress, config_json: str) -> None:
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "progress": vars(progress).copy(),
        "config": config_json,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_state(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"there is no training state to resume in {path.parent} ({path.name} is missing)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a damaged file
        raise UserError(
            f"the training state {path} is unreadable ({str(exc).splitlines()[0][:100]})"
        ) from exc


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
