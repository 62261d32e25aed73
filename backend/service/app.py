"""The HTTP API of docs/service-api.md on FastAPI: a thin layer over the engine and the job worker."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from backend import __version__
from backend.engine.segment import SegmentRun, clean_phrases
from backend.errors import UserError
from backend.model.api import PhraseSegmenter
from backend.service.config import ServiceConfig
from backend.service.jobs import Job, JobManager, SegmentRequest, error_for
from backend.service.schemas import (
    ErrorBody,
    FeatureCollection,
    Health,
    JobCreated,
    JobStatus,
    ModelInfo,
    Progress,
    SegmentParams,
)
from backend.service.security import (
    BearerTokenMiddleware,
    BodySizeLimitMiddleware,
    ServiceError,
    resolve_allowed_path,
)

log = logging.getLogger("rs2sam2.service")
API_PREFIX = "/api/v1"
UPLOAD_DRIVERS = ("GTiff",)
DISCONNECT_POLL_S = 0.05  # how often a waiting /segment checks its job and its client
ERRORS = {status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 422, 500, 503)}
PARAMS_HELP = (
    "JSON: phrases, bbox, bbox_crs, threshold, simplify, min_area, gsd, keep, tile_size, overlap, bands"
)


def error_response(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def _validation_message(exc: ValidationError | RequestValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "__root__"))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))


def _safe_name(filename: str | None) -> str:
    name = Path(filename or "").name
    return re.sub(r"[^\w.\- ]+", "_", name)[:120] or "upload.tif"


def create_app(config: ServiceConfig, model: PhraseSegmenter, device: str) -> FastAPI:
    manager = JobManager(model)
    upload_dir = Path(tempfile.mkdtemp(prefix="rs2sam2-uploads-"))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        manager.start()
        try:
            yield
        finally:
            manager.stop()
            shutil.rmtree(upload_dir, ignore_errors=True)

    app = FastAPI(
        title="RS2-SAM 2 backend",
        version=__version__,
        description="Referring segmentation of georeferenced rasters: phrases in, GeoJSON polygons out.",
        lifespan=lifespan,
    )
    app.state.jobs = manager
    router = APIRouter(prefix=API_PREFIX)

    # -- errors: always {"error": {"code", "message"}} --------------------------------------------
    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError):
        return error_response(exc.status, exc.code, str(exc))

    @app.exception_handler(UserError)
    async def _user_error(_request: Request, exc: UserError):
        error = error_for(exc)
        return error_response(error.status, error.code, error.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        return error_response(422, "bad_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _server_fault(_request: Request, exc: Exception):
        log.exception("unexpected server fault")
        return error_response(500, "internal", f"the server failed on this request ({type(exc).__name__})")

    # -- request parsing ----------------------------------------------------------------------------
    async def parse_request(raster: UploadFile | None, path: str | None, params: str) -> SegmentRequest:
        try:
            parsed = SegmentParams.model_validate_json(params)
        except ValidationError as exc:
            raise ServiceError(422, "bad_params", f"params: {_validation_message(exc)}") from None
        phrases = clean_phrases(parsed.phrases)
        options = parsed.to_options()
        if (raster is None) == (not path):
            raise ServiceError(
                400, "bad_request", "send either a raster file or a server-side path, not both or neither"
            )
        if path:
            real = resolve_allowed_path(path, config.allowed_roots)
            request = SegmentRequest(real, real.name, phrases, options)
        else:
            name = _safe_name(raster.filename)
            handle = tempfile.NamedTemporaryFile(
                dir=upload_dir, suffix=Path(name).suffix or ".tif", delete=False
            )
            saved = Path(handle.name)
            with handle:
                await run_in_threadpool(shutil.copyfileobj, raster.file, handle, 1 << 20)
            # Uploads are GeoTIFF only: other GDAL formats (VRT, …) could point at files on the server.
            options = dataclasses.replace(options, drivers=UPLOAD_DRIVERS)
            request = SegmentRequest(
                saved, name, phrases, options, cleanup=lambda: saved.unlink(missing_ok=True)
            )
            if saved.stat().st_size == 0:
                request.cleanup()
                raise ServiceError(400, "not_a_raster", "the uploaded raster is empty")
        try:  # the same checks the run does (raster, CRS, bbox, bands, tiling), before queueing
            await run_in_threadpool(_check_request, request, model)
        except BaseException:
            request.cleanup()
            raise
        return request

    def job_status(job: Job) -> JobStatus:
        error = {"code": job.error.code, "message": job.error.message} if job.error else None
        return JobStatus(
            job_id=job.id, status=job.status, progress=Progress(done=job.done, total=job.total), error=error
        )

    def find_job(job_id: str) -> Job:
        job = manager.get(job_id)
        if job is None:
            raise ServiceError(404, "unknown_job", f"there is no job {job_id!r} on this server")
        return job

    def finished_answer(job: Job) -> JSONResponse:
        if job.status == "done" and job.result is not None:
            return JSONResponse(job.result)
        if job.status == "failed" and job.error is not None:
            return error_response(job.error.status, job.error.code, job.error.message)
        if job.status == "cancelled":
            return error_response(409, "cancelled", "the job was cancelled")
        return error_response(409, "not_done", f"the job is {job.status}; ask again when it is done")

    # -- endpoints ----------------------------------------------------------------------------------
    @router.get("/health", response_model=Health, responses=ERRORS)
    async def health() -> Health:
        """Status, version and model; answers at once, even while a segmentation runs."""
        return Health(
            version=__version__,
            model=ModelInfo(
                id=model.model_id, preset=config.preset, input_size=model.input_size, device=device
            ),
            busy=manager.busy,
            allow_paths=bool(config.allowed_roots),
            max_upload_mb=config.max_upload_mb,
        )

    @router.post("/segment", responses={200: {"model": FeatureCollection}, **ERRORS})
    async def segment_now(
        request: Request,
        params: str = Form(..., description=PARAMS_HELP),
        raster: UploadFile | None = File(None, description="GeoTIFF bytes"),
        path: str | None = Form(None, description="a server-side path under the allowed roots"),
    ):
        """Segment and wait: the FeatureCollection in the raster's CRS."""
        job = manager.submit(await parse_request(raster, path, params))
        while not job.finished.is_set():
            if await request.is_disconnected():
                manager.cancel(job)  # nobody is waiting: free the worker for the next client
                log.info("client left; job %s cancelled", job.id)
                break
            await asyncio.sleep(DISCONNECT_POLL_S)
        return finished_answer(job)

    @router.post("/jobs", status_code=202, response_model=JobCreated, responses=ERRORS)
    async def start_job(
        params: str = Form(..., description=PARAMS_HELP),
        raster: UploadFile | None = File(None, description="GeoTIFF bytes"),
        path: str | None = Form(None, description="a server-side path under the allowed roots"),
    ) -> JobCreated:
        """Start a segmentation job; poll it, fetch its result, or cancel it."""
        job = manager.submit(await parse_request(raster, path, params))
        return JobCreated(job_id=job.id, status="queued")

    @router.get("/jobs/{job_id}", response_model=JobStatus, responses=ERRORS)
    async def get_job(job_id: str) -> JobStatus:
        """Status and progress (tiles done / total)."""
        return job_status(find_job(job_id))

    @router.get("/jobs/{job_id}/result", responses={200: {"model": FeatureCollection}, **ERRORS})
    async def get_result(job_id: str):
        """The FeatureCollection when done; 409 while not; the job's error when it failed."""
        return finished_answer(find_job(job_id))

    @router.delete("/jobs/{job_id}", response_model=JobCreated, responses=ERRORS)
    async def cancel_job(job_id: str):
        """Cancel a job; a running job stops before its next tile."""
        job = find_job(job_id)
        if job.status in ("done", "failed"):
            return error_response(409, "already_finished", f"the job has already finished ({job.status})")
        manager.cancel(job)
        return JobCreated(job_id=job.id, status="cancelled")

    app.include_router(router)
    # Middleware: the last added runs first, so the token is checked before any body is read.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=config.max_body_bytes)
    if config.token:
        app.add_middleware(BearerTokenMiddleware, token=config.token)
    return app


def _check_request(request: SegmentRequest, model: PhraseSegmenter) -> None:
    with SegmentRun(request.raster, request.phrases, model, request.options, name=request.name):
        pass
