"""One segmentation from start to answer, shared by the dock's task and the Processing algorithm.

Runs in a worker thread: it only uses the client and a `RasterPlan` captured on the main thread.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from qgis.core import QgsFeedback, QgsGeometry
from qgis.PyQt.QtCore import QCoreApplication

from ..contract import Health, is_loopback_url
from ..layers.raster_source import RasterPlan
from .client import PATH_NOT_REACHABLE_CODES, BackendClient, BackendError, RasterPayload, RunCancelled
from .request import AreaBox, SegmentOptions, build_params


def tr(message: str) -> str:
    return QCoreApplication.translate("Runner", message)


@dataclass(frozen=True)
class SegmentJob:
    phrases: list[str]
    options: SegmentOptions
    plan: RasterPlan
    send_mode: str = "auto"  # auto | path | upload (see settings.SEND_MODES)
    clip: QgsGeometry | None = None  # keep only what lies inside (raster CRS): the selected polygons


@dataclass
class SegmentOutcome:
    collection: dict  # the backend's FeatureCollection
    sent_as: str  # "path" or "upload"


def run_segmentation(
    client: BackendClient,
    job: SegmentJob,
    is_cancelled: Callable[[], bool],
    on_progress: Callable[[float], None],
    log: Callable[[str], None],
    export_feedback: QgsFeedback | None = None,
) -> SegmentOutcome:
    """Check the backend, send the raster (path or GeoTIFF), wait for the job, return the features.

    `export_feedback` lets a cancel stop the GeoTIFF export midway (QgsFeedback.cancel()).
    """
    health = client.health(timeout_s=10)
    if sends_path(job.plan.file_path, job.send_mode, health, client.base_url):
        bbox = None if job.plan.is_whole_layer else _box(job.plan)
        params = build_params(job.phrases, job.options, bbox)
        log(tr("Sending the path {} to {}").format(job.plan.file_path, client.base_url))
        try:
            collection = client.segment(
                RasterPayload(path=job.plan.file_path), params, is_cancelled, on_progress, on_wait=log
            )
            return SegmentOutcome(collection, "path")
        except RunCancelled:
            raise
        except BackendError as exc:
            # The backend may share this machine but not this folder (or not this file system at all,
            # from a container): whatever it says about the path, send the pixels instead.
            if job.send_mode != "auto" or exc.code not in PATH_NOT_REACHABLE_CODES:
                raise
            log(tr("The backend cannot read the file ({}); uploading the area instead.").format(exc.message))
    return _run_upload(client, job, health.max_upload_mb, is_cancelled, on_progress, log, export_feedback)


def sends_path(file_path: str | None, send_mode: str, health: Health, base_url: str) -> bool:
    """Whether a file travels as its path: asked for ("path"), or "auto" with a backend that reads
    paths and runs on this machine (loopback); else its bytes are uploaded."""
    return file_path is not None and (
        send_mode == "path" or (send_mode == "auto" and health.allow_paths and is_loopback_url(base_url))
    )


def _run_upload(
    client: BackendClient,
    job: SegmentJob,
    max_upload_mb: float,
    is_cancelled,
    on_progress,
    log,
    feedback: QgsFeedback | None,
) -> SegmentOutcome:
    fd, tmp_path = tempfile.mkstemp(prefix="rs2sam2-", suffix=".tif")
    os.close(fd)
    try:
        log(
            tr("Writing {} × {} pixels of “{}” as a GeoTIFF").format(
                job.plan.width_px, job.plan.height_px, job.plan.name
            )
        )
        job.plan.write_geotiff(tmp_path, feedback)
        if is_cancelled():
            raise RunCancelled()
        size_mb = os.path.getsize(tmp_path) / 1e6
        if max_upload_mb and size_mb > max_upload_mb:
            raise BackendError(
                tr(
                    "The area is {:.0f} MB, more than the backend accepts ({:.0f} MB); choose a "
                    "smaller area."
                ).format(size_mb, max_upload_mb),
                code="too_large",
            )
        # The GeoTIFF already covers just the requested area, so no bbox travels with it.
        params = build_params(job.phrases, job.options)
        upload_name = (
            f"{job.plan.name}.tif" if not job.plan.name.lower().endswith((".tif", ".tiff")) else job.plan.name
        )
        payload = RasterPayload(upload_file=tmp_path, upload_name=upload_name)
        collection = client.segment(payload, params, is_cancelled, on_progress, on_wait=log)
        return SegmentOutcome(collection, "upload")
    finally:
        os.unlink(tmp_path)


def _box(plan: RasterPlan) -> AreaBox:
    e = plan.extent
    return AreaBox(e.xMinimum(), e.yMinimum(), e.xMaximum(), e.yMaximum())
