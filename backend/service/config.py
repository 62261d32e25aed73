"""The service's settings, in one place: `rs2sam2 serve`'s flags (backend/service/cli.py) set them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from backend.contract import DEFAULT_HOST, DEFAULT_PORT
from backend.engine.limits import SERVICE_LIMITS, RunLimits

DEFAULT_MAX_UPLOAD_MB = 1024.0  # an area of interest as GeoTIFF; larger rasters go by server-side path
FINISHED_JOBS_KEPT = 200  # oldest finished jobs (and their results) are forgotten beyond this
# Jobs waiting or running at once: past them a request gets 429 with Retry-After, not a place in a
# queue that would take hours to reach. Per client (by address) so that one person's batch leaves room
# for the others on a shared GPU server; 8 lets the plugin's Processing batch and a panel run side by side.
DEFAULT_MAX_QUEUED_JOBS = 64
DEFAULT_MAX_JOBS_PER_CLIENT = 8
# A job running longer than this stops at its next tile and fails with `time_limit` (400). Half an hour
# covers a full-size view of the paper's model on a CPU; a GPU answers the same in seconds.
DEFAULT_JOB_TIME_LIMIT_S = 1800.0


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
    limits: RunLimits = SERVICE_LIMITS  # phrases, phrase length, tile size, pixels, gsd (the engine checks)
    max_queued_jobs: int = DEFAULT_MAX_QUEUED_JOBS
    max_jobs_per_client: int = DEFAULT_MAX_JOBS_PER_CLIENT
    job_time_limit_s: float = DEFAULT_JOB_TIME_LIMIT_S
    precision: str = "auto"  # backend/model/precision.py
    threads: int | None = None  # torch CPU threads; None: the default of backend/engine/threads.py

    @property
    def max_body_bytes(self) -> int:
        # The multipart envelope and params add a little to the raster itself.
        return int(self.max_upload_mb * 1024 * 1024) + 1024 * 1024
