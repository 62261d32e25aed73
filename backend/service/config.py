"""The service's settings, in one place."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 1024.0  # an area of interest as GeoTIFF; larger rasters go by server-side path
FINISHED_JOBS_KEPT = 200  # oldest finished jobs (and their results) are forgotten beyond this
TOKEN_ENV = "RS2SAM2_TOKEN"  # the bearer token may come from the environment instead of the command line


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServiceConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    allowed_roots: tuple[Path, ...] = field(default_factory=tuple)  # server-side paths only under these
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    preset: str | None = None
    checkpoint: str | None = None
    device: str = "auto"

    @property
    def max_body_bytes(self) -> int:
        # The multipart envelope and params add a little to the raster itself.
        return int(self.max_upload_mb * 1024 * 1024) + 1024 * 1024
