"""The service's settings, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rs2sam2_qgis.contract import DEFAULT_HOST, DEFAULT_PORT

DEFAULT_MAX_UPLOAD_MB = 1024.0  # an area of interest as GeoTIFF; larger rasters go by server-side path
FINISHED_JOBS_KEPT = 200  # oldest finished jobs (and their results) are forgotten beyond this


@dataclass(frozen=True)
class ServiceConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    allowed_roots: tuple[Path, ...] = field(default_factory=tuple)  # server-side paths only under these
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    model: str | None = None  # a model by name (backend.weights.models)
    preset: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    precision: str = "auto"  # backend/model/precision.py
    threads: int | None = None  # torch CPU threads; None: the default of backend/engine/threads.py

    @property
    def max_body_bytes(self) -> int:
        # The multipart envelope and params add a little to the raster itself.
        return int(self.max_upload_mb * 1024 * 1024) + 1024 * 1024
