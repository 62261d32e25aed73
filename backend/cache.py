"""Where the project keeps what it caches: one root, a folder per kind under it (downloaded weights:
backend/weights/download.py; converted OpenVINO encoders: backend/model/openvino_cache.py; a person's
own models: backend/weights/person_models.py). A module of its own, below both the model and the
weights, so neither needs the other to find it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$RS2SAM2_CACHE`, else `$XDG_CACHE_HOME/rs2sam2`, else `~/.cache/rs2sam2`."""
    if os.environ.get("RS2SAM2_CACHE"):
        return Path(os.environ["RS2SAM2_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rs2sam2"
