"""Turning a /segment or /jobs form into a queue-ready `SegmentRequest`, checked before it queues.

Every check the run itself makes (phrases, options, tiling, raster, CRS, bbox, bands, pixels …) runs
here first, through the engine's own `SegmentRun` with this server's limits: a bad request is answered
at once with its 4xx and never takes a place in the queue.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import tempfile
from pathlib import Path

from fastapi import Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from backend.engine.confine import FILE_DRIVERS
from backend.engine.segment import SegmentRun, clean_phrases
from backend.model.api import PhraseSegmenter
from backend.service.config import ServiceConfig
from backend.service.jobs import SegmentRequest
from backend.service.schemas import SegmentParams
from backend.service.security import ServiceError, resolve_allowed_path

# Uploads are GeoTIFF only: other GDAL formats (VRT, …) could point at files on the server.
UPLOAD_DRIVERS = ("GTiff",)
FORM_FIELDS = ("params", "raster", "path")


def validation_message(exc: ValidationError | RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "__root__"))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))


def safe_name(filename: str | None) -> str:
    name = Path(filename or "").name
    return re.sub(r"[^\w.\- ]+", "_", name)[:120] or "upload.tif"


async def check_form_fields(request: Request) -> None:
    """Each field of the form at most once, and no other field (FastAPI would quietly pick one)."""
    form = await request.form()  # the form FastAPI already parsed (cached on the request)
    for name in {key for key, _ in form.multi_items()}:
        if name not in FORM_FIELDS:
            raise ServiceError(
                422,
                "bad_request",
                f"the form has an unknown field {name[:40]!r}; send params, and raster or path",
            )
        if len(form.getlist(name)) > 1:
            raise ServiceError(422, "bad_request", f"the form has the field {name!r} more than once")


class RequestParser:
    """Parses forms for one server: its allowed roots, its upload folder, its model and its limits."""

    def __init__(self, config: ServiceConfig, model: PhraseSegmenter, upload_dir: Path):
        self.config = config
        self.model = model
        self.upload_dir = upload_dir

    async def parse(
        self, raster: UploadFile | None, path: str | None, params: str, client: str = ""
    ) -> SegmentRequest:
        try:
            parsed = SegmentParams.model_validate_json(params)
        except ValidationError as exc:
            raise ServiceError(422, "bad_params", f"params: {validation_message(exc)}") from None
        phrases = clean_phrases(parsed.phrases, self.config.limits)
        options = dataclasses.replace(parsed.to_options(), limits=self.config.limits)
        if (raster is None) == (not path):
            raise ServiceError(
                400, "bad_request", "send either a raster file or a server-side path, not both or neither"
            )
        if path:
            real = resolve_allowed_path(path, self.config.allowed_roots)
            roots = tuple(root.resolve() for root in self.config.allowed_roots)
            options = dataclasses.replace(options, drivers=FILE_DRIVERS, confine_to=roots)
            request = SegmentRequest(real, real.name, phrases, options, client=client)
        else:
            options = dataclasses.replace(
                options, drivers=UPLOAD_DRIVERS, confine_to=(self.upload_dir.resolve(),)
            )
            request = await self._save_upload(raster, phrases, options, client)
        try:  # the same checks the run does (raster, CRS, bbox, bands, tiling, pixels), before queueing
            await run_in_threadpool(self._check, request)
        except BaseException:
            request.cleanup()
            raise
        return request

    async def _save_upload(
        self, raster: UploadFile, phrases: list[str], options, client: str
    ) -> SegmentRequest:
        name = safe_name(raster.filename)
        handle = tempfile.NamedTemporaryFile(
            dir=self.upload_dir, suffix=Path(name).suffix or ".tif", delete=False
        )
        saved = Path(handle.name)
        request = SegmentRequest(
            saved, name, phrases, options, cleanup=lambda: saved.unlink(missing_ok=True), client=client
        )
        try:
            with handle:
                await run_in_threadpool(shutil.copyfileobj, raster.file, handle, 1 << 20)
        except BaseException:
            request.cleanup()
            raise
        if saved.stat().st_size == 0:
            request.cleanup()
            raise ServiceError(400, "not_a_raster", "the uploaded raster is empty")
        return request

    def _check(self, request: SegmentRequest) -> None:
        with SegmentRun(request.raster, request.phrases, self.model, request.options, name=request.name):
            pass
