"""Turning a /segment or /jobs form into a queued-ready `SegmentRequest`, checked before it queues."""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from pathlib import Path

from fastapi import UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from backend.engine.segment import SegmentRun, clean_phrases
from backend.model.api import PhraseSegmenter
from backend.service.config import ServiceConfig
from backend.service.jobs import SegmentRequest
from backend.service.schemas import SegmentParams
from backend.service.security import ServiceError, resolve_allowed_path

# Uploads are GeoTIFF only: other GDAL formats (VRT, …) could point at files on the server.
UPLOAD_DRIVERS = ("GTiff",)


def validation_message(exc: ValidationError | RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "__root__"))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))


def safe_name(filename: str | None) -> str:
    name = Path(filename or "").name
    return re.sub(r"[^\w.\- ]+", "_", name)[:120] or "upload.tif"


class RequestParser:
    """Parses forms for one server: its allowed roots, its upload folder and its model."""

    def __init__(self, config: ServiceConfig, model: PhraseSegmenter, upload_dir: Path):
        self.config = config
        self.model = model
        self.upload_dir = upload_dir

    async def parse(self, raster: UploadFile | None, path: str | None, params: str) -> SegmentRequest:
        try:
            parsed = SegmentParams.model_validate_json(params)
        except ValidationError as exc:
            raise ServiceError(422, "bad_params", f"params: {validation_message(exc)}") from None
        phrases = clean_phrases(parsed.phrases)
        options = parsed.to_options()
        if (raster is None) == (not path):
            raise ServiceError(
                400, "bad_request", "send either a raster file or a server-side path, not both or neither"
            )
        if path:
            real = resolve_allowed_path(path, self.config.allowed_roots)
            request = SegmentRequest(real, real.name, phrases, options)
        else:
            request = await self._save_upload(
                raster, phrases, dataclasses.replace(options, drivers=UPLOAD_DRIVERS)
            )
        try:  # the same checks the run does (raster, CRS, bbox, bands, tiling), before queueing
            await run_in_threadpool(self._check, request)
        except BaseException:
            request.cleanup()
            raise
        return request

    async def _save_upload(self, raster: UploadFile, phrases: list[str], options) -> SegmentRequest:
        name = safe_name(raster.filename)
        handle = tempfile.NamedTemporaryFile(
            dir=self.upload_dir, suffix=Path(name).suffix or ".tif", delete=False
        )
        saved = Path(handle.name)
        with handle:
            await run_in_threadpool(shutil.copyfileobj, raster.file, handle, 1 << 20)
        request = SegmentRequest(saved, name, phrases, options, cleanup=lambda: saved.unlink(missing_ok=True))
        if saved.stat().st_size == 0:
            request.cleanup()
            raise ServiceError(400, "not_a_raster", "the uploaded raster is empty")
        return request

    def _check(self, request: SegmentRequest) -> None:
        with SegmentRun(request.raster, request.phrases, self.model, request.options, name=request.name):
            pass
