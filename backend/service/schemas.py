"""Request and response bodies of the HTTP API (docs/service-api.md), for validation and OpenAPI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.engine.options import SERVICE_DEFAULT_KEEP, AreaOfInterest, SegmentOptions


class SegmentParams(BaseModel):
    """The `params` JSON string of /segment and /jobs."""

    model_config = ConfigDict(extra="forbid")

    phrases: list[str] = Field(..., description="what to look for; at least one, none blank")
    bbox: tuple[float, float, float, float] | None = Field(None, description="minx, miny, maxx, maxy")
    bbox_crs: str | None = Field(None, description="CRS of bbox; default the raster's")
    threshold: float = 0.5
    simplify: float | None = None
    min_area: float | None = None
    gsd: float | None = None
    keep: Literal["best", "all"] = SERVICE_DEFAULT_KEEP
    tile_size: int | None = None
    overlap: int | None = None
    bands: list[int] | None = None

    def to_options(self) -> SegmentOptions:
        return SegmentOptions(
            threshold=self.threshold,
            keep=self.keep,
            simplify=self.simplify,
            min_area=self.min_area,
            tile_size=self.tile_size,
            overlap=self.overlap,
            gsd=self.gsd,
            bands=tuple(self.bands) if self.bands is not None else None,
            area=AreaOfInterest(self.bbox, self.bbox_crs) if self.bbox is not None else None,
        )


class ModelInfo(BaseModel):
    id: str
    preset: str | None
    input_size: int
    device: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    model: ModelInfo
    busy: bool
    allow_paths: bool
    max_upload_mb: float


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Progress(BaseModel):
    done: int
    total: int


JobState = Literal["queued", "running", "done", "failed", "cancelled"]


class JobCreated(BaseModel):
    job_id: str
    status: JobState


class JobStatus(BaseModel):
    job_id: str
    status: JobState
    progress: Progress
    error: ErrorDetail | None


class FeatureCollection(BaseModel):
    """GeoJSON in the raster's CRS (`crs`, `crs_wkt`), with run statistics."""

    model_config = ConfigDict(extra="allow")

    type: Literal["FeatureCollection"]
    crs: dict[str, Any] | None
    crs_wkt: str | None
    features: list[dict[str, Any]]
    stats: dict[str, Any]
